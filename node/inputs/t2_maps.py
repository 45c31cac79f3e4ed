"""T2 maps of a study (scanner inline, or cmr-node's own `_T2MAP_cmrnode`) as arrays in ms
(node.inputs.frames.Frame.values_ms: a Real World Value Mapping in ms or s first, else the rescaled values)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from node.errors import InputError
from node.inputs.frames import Frame
from node.inputs.kinds import T2_MAP, frames_of_kinds


@dataclass
class T2Slice:
    frame: Frame
    t2_ms: np.ndarray

    @property
    def dataset(self) -> Dataset:
        return self.frame.header

    @property
    def position_mm(self) -> float:
        return self.frame.position_mm

    @property
    def pixel_mm(self) -> float:
        return float(self.frame.pixel_mm[0])


def read_t2_maps(paths: list[str]) -> list[T2Slice]:
    """Every T2 map frame among the files with its geometry, in ms, by series and position."""
    slices = []
    for frame in frames_of_kinds(paths, [T2_MAP]):
        if not frame.has_geometry:
            raise InputError(f"instance {frame.sop_instance_uid}: a T2 map without geometry (position, "
                             "orientation, pixel spacing)")
        slices.append(T2Slice(frame=frame, t2_ms=frame.values_ms()))
    if not slices:
        raise InputError(f"no T2 map among the {len(paths)} input files")
    return sorted(slices, key=lambda s: (s.frame.series_uid, s.position_mm))
