"""Reading raw inversion-recovery (MOLLI) images of a series, grouped by slice position.

Inversion time per image, in this order: Inversion Time (0018,0082); "TI 123"
in Image Comments (0020,4000), as some MOLLI exports write it; Trigger Time
(0018,1060) when it varies within the slice. The source used is reported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from node.t1_maps import InputError

_TI_COMMENT = re.compile(r"(?i)\bTI\s*[:=]?\s*(\d+(?:\.\d+)?)")
MAX_TI_MS = 10000.0


@dataclass
class InversionSlice:
    position_mm: float
    ti_ms: np.ndarray              # (n,)
    images: np.ndarray             # (n, rows, cols)
    datasets: list[Dataset]        # in the order of ti_ms
    pixel_mm: float
    ti_source: str


def _position(ds: Dataset) -> float:
    o = np.asarray(ds.ImageOrientationPatient, dtype=float)
    return float(np.dot(np.cross(o[:3], o[3:]), np.asarray(ds.ImagePositionPatient, dtype=float)))


def _inversion_times(datasets: list[Dataset]) -> tuple[np.ndarray, str]:
    sources = (
        ("Inversion Time (0018,0082)", lambda d: d.get("InversionTime")),
        ("Image Comments (0020,4000)", lambda d: (m.group(1) if (m := _TI_COMMENT.search(str(d.get("ImageComments", ""))))
                                                 else None)),
        ("Trigger Time (0018,1060)", lambda d: d.get("TriggerTime")),
    )
    for name, get in sources:
        values = [get(d) for d in datasets]
        if all(v not in (None, "") for v in values):
            ti = np.array([float(v) for v in values])
            if len(set(ti)) == len(ti) and np.all((ti > 0) & (ti < MAX_TI_MS)):
                return ti, name
    raise InputError("no usable inversion times (Inversion Time, 'TI' in Image Comments, or Trigger Time "
                     "distinct and between 0 and 10000 ms for every image)")


def read_inversion_series(paths: list[str], minimum_images: int = 5) -> list[InversionSlice]:
    groups: dict[float, list[Dataset]] = {}
    for path in paths:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds or "ImageOrientationPatient" not in ds:
            raise InputError(f"instance {ds.get('SOPInstanceUID', '?')}: not a single-frame image with geometry")
        key = round(_position(ds), 0)
        groups.setdefault(key, []).append(ds)
    slices = []
    for position, datasets in sorted(groups.items()):
        ti, source = _inversion_times(datasets)
        order = np.argsort(ti)
        datasets = [datasets[i] for i in order]
        if len(datasets) < minimum_images:
            raise InputError(f"slice at {position:.0f} mm has {len(datasets)} inversion images; "
                             f"at least {minimum_images} are needed")
        images = np.stack([d.pixel_array.astype(float) * float(d.get("RescaleSlope", 1) or 1)
                           + float(d.get("RescaleIntercept", 0) or 0) for d in datasets])
        slices.append(InversionSlice(position_mm=position, ti_ms=ti[order], images=images, datasets=datasets,
                                     pixel_mm=float(datasets[0].PixelSpacing[0]), ti_source=source))
    return slices
