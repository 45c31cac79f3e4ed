"""Float32 DICOM Parametric Maps (one quantity per object) built with highdicom.

Facts this relies on (../shared/notes/dicom-objects.md, measured): float32
pixel data is what dcmqi and OHIF read; a Frame Anatomy item in the shared
functional groups is needed for dciodvfy to report no error (Laterality 2C).
"""
from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
import numpy as np
from highdicom.sr import CodeContentItem, CodedConcept
from pydicom.dataset import Dataset

from dicom_out import codes
from dicom_out.descriptions import description_with_suffix
from dicom_out.sources import further_sources, source_arguments

MANUFACTURER = "cmr-node project"
MODEL_NAME = "cmr-node"


@dataclass(frozen=True)
class MapQuantity:
    lut_label: str                # <= 16 characters, e.g. "ECV"
    explanation: str              # <= 64 characters
    unit: CodedConcept            # UCUM
    quantity: CodedConcept        # what the pixel values are
    method: CodedConcept | None   # how they were obtained (Measurement Method item)
    window_center: float
    window_width: float


def _frame_anatomy_heart() -> Dataset:
    region = Dataset()
    region.CodeValue = codes.HEART.value
    region.CodingSchemeDesignator = codes.HEART.scheme_designator
    region.CodeMeaning = codes.HEART.meaning
    item = Dataset()
    item.FrameLaterality = "U"
    item.AnatomicRegionSequence = [region]
    return item


def _mapping(q: MapQuantity, values: np.ndarray) -> hd.pm.RealWorldValueMapping:
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        high = low + 1.0
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=q.lut_label, lut_explanation=q.explanation, unit=q.unit,
        value_range=(low, high), quantity_definition=q.quantity)
    if q.method is not None:
        mapping.QuantityDefinitionSequence.append(CodeContentItem(name=codes.MEASUREMENT_METHOD, value=q.method))
    return mapping


def build_parametric_map(values: np.ndarray, source_images: list, quantity: MapQuantity, *,
                         series_uid: str, sop_uid: str, series_number: int, series_description: str,
                         content_label: str, software_version: str,
                         further_source_images: list | None = None) -> hd.pm.ParametricMap:
    """values: (frames, rows, cols) or (rows, cols) float, frame i on source_images[i]'s plane (a Dataset
    or a source plane)."""
    values = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise ValueError("parametric map values must be finite (flag failed voxels instead of NaN)")
    sources, geometry = source_arguments(source_images)
    pm = hd.pm.ParametricMap(
        source_images=sources, pixel_array=values,
        series_instance_uid=series_uid, series_number=series_number, sop_instance_uid=sop_uid,
        instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME,
        software_versions=software_version, device_serial_number="0",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[_mapping(quantity, values)],
        # LINEAR_EXACT: windows narrower than 1 (fractions) are legal only with it, and float maps want it
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=quantity.window_center,
                                                         window_width=quantity.window_width,
                                                         voi_lut_function="LINEAR_EXACT")],
        content_label=content_label, content_description=quantity.explanation[:64],
        content_creator_name="cmr-node^", image_flavor="VOLUME",
        further_source_images=further_sources(further_source_images, sources),
        series_description=description_with_suffix(series_description, "", sources[0]), **geometry)
    pm.SharedFunctionalGroupsSequence[0].FrameAnatomySequence = [_frame_anatomy_heart()]
    if any(c is not None and c.scheme_designator == codes.PRIVATE_SCHEME
           for c in (quantity.quantity, quantity.method, quantity.unit)):
        codes.declare_private_scheme(pm)
    return pm
