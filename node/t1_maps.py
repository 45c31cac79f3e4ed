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

import re

import numpy as np
import pydicom
from pydicom.dataset import Dataset


POSITION_TOLERANCE_MM = 1.0   # slices of different series within this distance are the same slice
_PRE = re.compile(r"(?i)(pre|native|nativ)")
_POST = re.compile(r"(?i)post")


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


def _role(series: list[T1Slice]) -> str | None:
    description = series[0].series_description
    if _POST.search(description) or any(s.has_contrast_agent for s in series):
        return "post"
    if _PRE.search(description):
        return "pre"
    return None


def classify(groups: dict[str, list[T1Slice]]) -> tuple[list[T1Slice], list[list[T1Slice]], str]:
    """(native series, post-contrast series, how it was decided).

    In this order: Series Description ("pre"/"native" vs "post"), Contrast/Bolus
    Agent (0018,0010), acquisition time (earliest native, later ones post-contrast)."""
    roles = {uid: _role(series) for uid, series in groups.items()}
    by_time = sorted(groups.values(), key=lambda s: (s[0].acquired is None, s[0].acquired, s[0].series_number))
    pre = [groups[u] for u, r in roles.items() if r == "pre"]
    post = [groups[u] for u, r in roles.items() if r == "post"]
    how = "series description / contrast agent"
    if not pre:
        pre = [s for s in by_time if roles[s[0].series_uid] != "post"][:1]
        how = "acquisition time"
    if not post and pre:
        post = [s for s in by_time[by_time.index(pre[0]) + 1:] if roles[s[0].series_uid] != "pre"]
        how = "acquisition time"
    if not pre or not post:
        raise InputError(f"need a native and a post-contrast T1 map; found {len(groups)} T1 map series "
                         f"({len(pre)} native, {len(post)} post-contrast)")
    pre.sort(key=lambda s: (s[0].acquired is None, s[0].acquired))
    return pre[0], post, how
