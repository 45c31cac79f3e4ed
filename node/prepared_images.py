"""Reading raw prepared images of a series (MOLLI inversion recovery, T2 preparation), by slice position.

MOLLI inversion time per image, in this order: Inversion Time (0018,0082);
"TI 123" in Image Comments (0020,4000), as some MOLLI exports write it;
Trigger Time (0018,1060). T2-preparation duration: "T2prep 40 ms" in Image
Comments (vendor exports of T2-prep bSSFP maps), else Echo Time (0018,0081)
when it differs between the images. The values must be distinct per slice;
the source used is reported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from node.t1_maps import InputError

_TI_COMMENT = re.compile(r"(?i)\bTI\s*[:=]?\s*(\d+(?:\.\d+)?)")
_T2PREP_COMMENT = re.compile(r"(?i)T2\s*-?\s*prep\w*\s*[:=]?\s*(\d+(?:\.\d+)?)")
MAX_TIME_MS = 10000.0


def _from_comment(pattern: re.Pattern):
    def get(ds: Dataset):
        match = pattern.search(str(ds.get("ImageComments", "")))
        return match.group(1) if match else None
    return get


INVERSION_TIME_SOURCES = (
    ("Inversion Time (0018,0082)", lambda d: d.get("InversionTime")),
    ("Image Comments (0020,4000)", _from_comment(_TI_COMMENT)),
    ("Trigger Time (0018,1060)", lambda d: d.get("TriggerTime")),
)
T2PREP_TIME_SOURCES = (
    ("Image Comments (0020,4000)", _from_comment(_T2PREP_COMMENT)),
    ("Echo Time (0018,0081)", lambda d: d.get("EchoTime")),
)


@dataclass
class PreparedSlice:
    position_mm: float
    times_ms: np.ndarray           # (n,) inversion times or T2-preparation durations
    images: np.ndarray             # (n, rows, cols)
    datasets: list[Dataset]        # in the order of times_ms
    pixel_mm: float
    time_source: str


def _position(ds: Dataset) -> float:
    o = np.asarray(ds.ImageOrientationPatient, dtype=float)
    return float(np.dot(np.cross(o[:3], o[3:]), np.asarray(ds.ImagePositionPatient, dtype=float)))


def _preparation_times(datasets: list[Dataset], sources, allow_zero: bool) -> tuple[np.ndarray, str]:
    for name, get in sources:
        values = [get(d) for d in datasets]
        if all(v not in (None, "") for v in values):
            times = np.array([float(v) for v in values])
            low_ok = np.all(times >= 0) if allow_zero else np.all(times > 0)
            if len(set(times)) == len(times) and low_ok and np.all(times < MAX_TIME_MS):
                return times, name
    raise InputError("no usable preparation times: tried " + ", ".join(n for n, _ in sources)
                     + " (distinct per image, 0-10000 ms)")


def read_prepared_series(paths: list[str], sources=INVERSION_TIME_SOURCES, minimum_images: int = 5,
                         allow_zero: bool = False) -> list[PreparedSlice]:
    groups: dict[float, list[Dataset]] = {}
    for path in paths:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds or "ImageOrientationPatient" not in ds:
            raise InputError(f"instance {ds.get('SOPInstanceUID', '?')}: not a single-frame image with geometry")
        key = round(_position(ds), 0)
        groups.setdefault(key, []).append(ds)
    slices = []
    for position, datasets in sorted(groups.items()):
        ti, source = _preparation_times(datasets, sources, allow_zero)
        order = np.argsort(ti)
        datasets = [datasets[i] for i in order]
        if len(datasets) < minimum_images:
            raise InputError(f"slice at {position:.0f} mm has {len(datasets)} prepared images; "
                             f"at least {minimum_images} are needed")
        images = np.stack([d.pixel_array.astype(float) * float(d.get("RescaleSlope", 1) or 1)
                           + float(d.get("RescaleIntercept", 0) or 0) for d in datasets])
        slices.append(PreparedSlice(position_mm=position, times_ms=ti[order], images=images, datasets=datasets,
                                    pixel_mm=float(datasets[0].PixelSpacing[0]), time_source=source))
    return slices
