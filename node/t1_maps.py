"""Reading scanner T1 maps (single-frame MR images) into arrays in ms.

Value conventions handled:
- Siemens MyoMaps inline maps: pixel values are T1 in ms (Rescale Slope 1 or absent).
- Philips: a Real World Value Mapping (0040,9096) with unit ms takes precedence;
  otherwise Rescale Slope/Intercept (0028,1053/1052).
- GE and others: Rescale Slope/Intercept when present, else stored values.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pydicom
from pydicom.dataset import Dataset


class InputError(ValueError):
    """The inputs of a module are not usable; the message says why (no PHI)."""


@dataclass
class T1Slice:
    dataset: Dataset
    t1_ms: np.ndarray
    series_uid: str
    series_description: str
    series_number: int
    acquired: datetime | None
    position_mm: float          # along the slice normal
    has_contrast_agent: bool
    pixel_mm: float


def _real_world_scaling(ds: Dataset) -> tuple[float, float]:
    for item in ds.get("RealWorldValueMappingSequence", []):
        units = item.get("MeasurementUnitsCodeSequence", [])
        if units and units[0].get("CodeValue") == "ms":
            return float(item.get("RealWorldValueSlope", 1.0)), float(item.get("RealWorldValueIntercept", 0.0))
    return float(ds.get("RescaleSlope", 1.0) or 1.0), float(ds.get("RescaleIntercept", 0.0) or 0.0)


def _acquired(ds: Dataset) -> datetime | None:
    text = None
    if ds.get("AcquisitionDateTime"):
        text = str(ds.AcquisitionDateTime)
    elif ds.get("AcquisitionDate") and ds.get("AcquisitionTime"):
        text = f"{ds.AcquisitionDate}{ds.AcquisitionTime}"
    elif ds.get("SeriesDate") and ds.get("SeriesTime"):
        text = f"{ds.SeriesDate}{ds.SeriesTime}"
    if not text:
        return None
    text = text.split("+")[0].split("-")[0]
    for fmt in ("%Y%m%d%H%M%S.%f", "%Y%m%d%H%M%S", "%Y%m%d%H%M"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def _position_mm(ds: Dataset) -> float:
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    return float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float)))


def read_t1_slice(path: str) -> T1Slice:
    ds = pydicom.dcmread(path)
    where = f"instance {ds.get('SOPInstanceUID', '?')}"
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(f"{where}: multi-frame T1 maps are not supported yet")
    for keyword in ("PixelData", "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
        if keyword not in ds:
            raise InputError(f"{where}: missing {keyword}")
    slope, intercept = _real_world_scaling(ds)
    t1 = ds.pixel_array.astype(np.float64) * slope + intercept
    return T1Slice(dataset=ds, t1_ms=t1, series_uid=str(ds.SeriesInstanceUID),
                   series_description=str(ds.get("SeriesDescription", "")),
                   series_number=int(ds.get("SeriesNumber", 0) or 0), acquired=_acquired(ds),
                   position_mm=_position_mm(ds), has_contrast_agent=bool(ds.get("ContrastBolusAgent")),
                   pixel_mm=float(ds.PixelSpacing[0]))


def group_by_series(slices: list[T1Slice]) -> dict[str, list[T1Slice]]:
    groups: dict[str, list[T1Slice]] = {}
    for s in slices:
        groups.setdefault(s.series_uid, []).append(s)
    for members in groups.values():
        members.sort(key=lambda s: s.position_mm)
    return groups
