"""Viewer-ready companions of every Parametric Map a module made (dicom_out/viewer_images.py).

Which ones a route sends is its `viewer_images` list (node/settings.py Route): "grayscale" and
"colour". PNG previews are always written next to the outputs, never sent.
"""
from __future__ import annotations

import re

from dicom_out.viewer_images import colour_images, grayscale_images, preview_png
from node.process.modules import ModuleOutput
from node.process.modules.output_series import VIEWER_OFFSETS

PM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.30"


def _file_name(description: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", description).strip("_") or "map"


def add_viewer_outputs(output: ModuleOutput, kinds: list[str]) -> None:
    maps = [d for d in output.datasets if str(d.SOPClassUID) == PM_SOP_CLASS]
    for pm in maps:
        if "grayscale" in kinds:
            output.datasets += grayscale_images(pm, VIEWER_OFFSETS["grayscale"])
        if "colour" in kinds:
            output.datasets += colour_images(pm, VIEWER_OFFSETS["colour"])
        # the series number too: two maps of one job may share a description (ECV of two post-contrast series)
        output.previews[f"{pm.SeriesNumber}_{_file_name(str(pm.SeriesDescription))}.png"] = preview_png(pm)
