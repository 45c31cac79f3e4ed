"""Reading raw prepared images (MOLLI, ShMOLLI, Look-Locker inversion recovery; T2 preparation) by slice.

Frames come from node/scanner: classic single-frame or enhanced multi-frame files, only the frames of
the kinds asked for (a Philips series that also holds the inline map gives its raw images only). The
preparation time of each image comes from the first source in node/inputs/timing.py that is distinct
and plausible for every image of the slice; the source used is reported.

For inversion recovery the acquisition order tells the scheme: a new inversion starts where the
inversion time drops (MOLLI 5(3)3: 5 then 3 images; ShMOLLI 5(1)1(1)1: 5, 1, 1). The Look-Locker
correction applies where an inversion is followed by more than one image (continuous readout).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from dicom_out.sources import instances
from analysis.geometry import group_by_slice
from node.inputs.frames import Frame
from node.inputs.kinds import T1_RAW, T2_RAW, frames_of_kinds
from node.inputs.frames import MAX_TIME_MS
from node.inputs.timing import INVERSION_TIME_SOURCES, T2PREP_TIME_SOURCES
from node.errors import InputError


@dataclass
class PreparedSlice:
    position_mm: float
    times_ms: np.ndarray           # (n,) inversion times or T2-preparation durations, ascending
    images: np.ndarray             # (n, rows, cols) in the order of times_ms
    frames: list[Frame]            # in the order of times_ms
    pixel_mm: float
    time_source: str
    inversion: np.ndarray          # (n,) which inversion (0, 1, ...) each image follows, in acquisition order

    @property
    def datasets(self) -> list[Dataset]:
        """The instances the images are in (one per image for single-frame files)."""
        return instances(self.frames)

    @property
    def group_sizes(self) -> list[int]:
        return np.bincount(self.inversion).tolist()

    @property
    def look_locker(self) -> bool:
        """More than one image after an inversion: a continuous readout, so T1* needs the correction."""
        return max(self.group_sizes) > 1

    @property
    def scheme(self) -> str:
        """MOLLI-style notation of the images per inversion, e.g. '5-1-1' (ShMOLLI) or '5-3' (MOLLI 5(3)3)."""
        return "-".join(str(n) for n in self.group_sizes)


def _preparation_times(frames: list[Frame], sources, allow_zero: bool) -> tuple[np.ndarray, str]:
    for name, get in sources:
        values = [get(f) for f in frames]
        if all(v is not None for v in values):
            times = np.array(values, dtype=float)
            low_ok = np.all(times >= 0) if allow_zero else np.all(times > 0)
            if len(set(times)) == len(times) and low_ok and np.all(times < MAX_TIME_MS):
                return times, name
    raise InputError("no usable preparation times: tried " + ", ".join(n for n, _ in sources)
                     + " (distinct per image, 0-10000 ms)")


def _acquisition_order(frames: list[Frame]) -> list[int]:
    """Indices of frames in the order they were acquired: acquisition time, then instance and frame number."""
    def key(k: int):
        f = frames[k]
        acquired = f.acquired
        return (acquired is None, acquired.timestamp() if acquired else 0.0,
                int(f.header.get("InstanceNumber", 0) or 0), f.number or 0)
    return sorted(range(len(frames)), key=key)


def _inversions(times: np.ndarray, frames: list[Frame]) -> np.ndarray:
    """Inversion index of every image. Within one inversion, images follow each other in acquisition order
    with the inversion time growing by the time between them (one heartbeat); a new inversion starts where
    the inversion time drops, or grows by something else than the time elapsed (ShMOLLI: TI 180 ms, then
    260 ms two beats later)."""
    order = _acquisition_order(frames)
    inversion = np.zeros(len(times), dtype=int)
    current = 0
    for previous, k in zip(order, order[1:]):
        step = times[k] - times[previous]
        a, b = frames[previous].acquired, frames[k].acquired
        elapsed = (b - a).total_seconds() * 1000.0 if a and b else 0.0
        if step <= 0 or (elapsed > 0 and abs(step - elapsed) > max(150.0, 0.25 * elapsed)):
            current += 1
        inversion[k] = current
    return inversion


def read_prepared_series(paths: list[str], sources=INVERSION_TIME_SOURCES, minimum_images: int = 5,
                         allow_zero: bool = False, kinds=(T1_RAW,)) -> list[PreparedSlice]:
    """The frames of the given kinds among paths, by slice, ordered by preparation time."""
    frames = frames_of_kinds(paths, kinds)
    if not frames:
        raise InputError(f"no {' or '.join(kinds)} images among the {len(paths)} input files")
    for f in frames:
        if not f.has_geometry:
            raise InputError(f"instance {f.sop_instance_uid}: an image without geometry (position, orientation, "
                             "pixel spacing)")
    slices = []
    for members in group_by_slice(frames, lambda f: f.position_mm):
        position = round(float(np.mean([f.position_mm for f in members])), 2)
        if len(members) < minimum_images:
            raise InputError(f"slice at {position:.0f} mm has {len(members)} prepared images; "
                             f"at least {minimum_images} are needed")
        times, source = _preparation_times(members, sources, allow_zero)
        inversion = _inversions(times, members)
        order = np.argsort(times)
        members = [members[i] for i in order]
        slices.append(PreparedSlice(position_mm=position, times_ms=times[order],
                                    images=np.stack([f.values() for f in members]), frames=members,
                                    pixel_mm=members[0].pixel_mm[0], time_source=source,
                                    inversion=inversion[order]))
    return slices


def read_t2_prepared_series(paths: list[str]) -> list[PreparedSlice]:
    return read_prepared_series(paths, T2PREP_TIME_SOURCES, minimum_images=3, allow_zero=True, kinds=(T2_RAW,))
