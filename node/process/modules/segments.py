"""AHA segments of a module's LV regions: which segment each myocardial voxel is in, their SEG, and one
report group per segment (TID 1411, finding site the segment's code from PS3.16 CID 3717).

The slices are put in order from base to apex by the images' own geometry (analysis.geometry), split into
basal, mid and apical thirds, and each slice's segments run from the septum the RV marks
(analysis/aha_segments.py). A slice without a septum, or a series without an orientation, gets no segments
and a quality flag saying why; the other slices keep theirs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import node
from analysis.aha_segments import SEGMENT_NAMES, SeptumNotFound, find_septum, segment_labels, slice_levels
from analysis.geometry import anterior_to_septum, base_to_apex_sign
from dicom_out import codes
from dicom_out.report import Evaluation, Measure, RegionGroup, segmentation_method
from dicom_out.segmentation import Segment, build_segmentation
from dicom_out.uids import derived_uid
from node.inputs.roi import received_masks, roi_key
from node.process.modules.output_series import OutputSeries
from node.process.modules.reporting import LvRegions


# a received SEG's segments, by their coded type (SCT) or, failing that, their label
LV_MYOCARDIUM_LABEL = r"(?i)^(?!.*(\bRV\b|right)).*myocard"
RV_BLOOD_LABEL = r"(?i)^(?!.*(myocard|wall)).*(\bRV\b|right ventric)"


def received_rv(seg_files: list[str], frames: list) -> list[np.ndarray | None] | None:
    """Per slice frame (node.inputs.frames.Frame), the RV (blood pool, or its outline) the first received SEG
    with one draws on it (segment type Right ventricle, SCT 53085002, or a label like "RV blood pool"), None
    where it draws none; None when no SEG has an RV."""
    found, _ = received_masks(seg_files, codes.RIGHT_VENTRICLE.value, RV_BLOOD_LABEL, frames)
    return [found.get(roi_key(frame)) for frame in frames] if found else None


@dataclass
class AhaSegments:
    labels: np.ndarray          # (slices, rows, cols) uint8: AHA segment 1-16, 0 outside the myocardium
    levels: list[str]           # per slice: basal, mid or apical
    septum_deg: list[float | None]   # per slice: the mid-septum's image angle, None where none was found
    flags: list[str]

    def present(self) -> list[int]:
        return [int(n) for n in np.unique(self.labels) if n]

    def as_dict(self) -> dict:
        return {"levels": self.levels, "septum_deg": [None if a is None else round(a, 1) for a in self.septum_deg],
                "segments": self.present()}


def aha_segments(regions: LvRegions, bright_blood: list[np.ndarray], frames: list, pixel_mm: list[float],
                 rv_blood: list[np.ndarray | None] | None = None) -> AhaSegments:
    """Segments of the slices of one series. bright_blood: per slice, an image in which both ventricles' blood
    is bright (the relative R1 change); rv_blood: per slice, a received RV segmentation where there is one
    (it then marks the septum instead); frames: the slices' node.inputs.frames.Frame, for their geometry."""
    shape = (len(frames),) + regions.blood_pool[0].shape
    labels = np.zeros(shape, dtype=np.uint8)
    if any(f.orientation is None for f in frames):
        return AhaSegments(labels, ["unknown"] * len(frames), [None] * len(frames),
                           ["no Image Orientation (Patient): no AHA segments"])
    orientation = frames[0].orientation
    sign = base_to_apex_sign(orientation)
    order = sorted(range(len(frames)), key=lambda i: sign * frames[i].position_mm)
    levels = [""] * len(frames)
    for level, i in zip(slice_levels(len(frames)), order):
        levels[i] = level
    septa: list[float | None] = [None] * len(frames)
    flags = []
    rv_blood = rv_blood or [None] * len(frames)
    for i, (myocardium, bright, spacing, frame) in enumerate(zip(regions.myocardium, bright_blood, pixel_mm, frames)):
        if myocardium is None:
            continue
        try:
            septum = find_septum(myocardium, bright, spacing, rv_blood[i])
        except SeptumNotFound as exc:
            flags.append(f"no AHA segments on the slice at {frame.position_mm:.1f} mm: {exc}")
            continue
        septa[i] = septum.mid_deg
        labels[i] = segment_labels(myocardium, septum, levels[i], anterior_to_septum(orientation))
    return AhaSegments(labels, levels, septa, flags)


def segment_label(number: int) -> str:
    return f"AHA {number} {SEGMENT_NAMES[number]}"


def segments_seg(aha: AhaSegments, sources: list, uid_key: str, name: str, series: OutputSeries, index: int = 0):
    """A SEG with one segment per AHA segment present, in segment-number order, coded with CID 3717; its UIDs
    derive from uid_key (the job's, or the inputs') and name."""
    present = aha.present()
    return build_segmentation(
        np.stack([aha.labels == n for n in present], axis=-1), sources,
        [Segment(segment_label(n), codes.ANATOMICAL_STRUCTURE, codes.AHA_SEGMENTS[n]) for n in present],
        series_uid=derived_uid(uid_key, name, "aha-seg-series"), sop_uid=derived_uid(uid_key, name, "aha-seg"),
        series_number=series.number(index), series_description=series.describe(), software_version=node.__version__)


def segment_groups(aha: AhaSegments, seg, measures: Callable[[int, np.ndarray], tuple[list[Measure], list[Evaluation]]],
                   label_suffix: str = "") -> list[RegionGroup]:
    """One group per AHA segment present: its measures and evaluations (a function of the segment's number and
    (slices, rows, cols) mask), finding LV myocardium, finding site the segment."""
    groups = []
    for k, n in enumerate(aha.present(), start=1):
        values, evaluations = measures(n, aha.labels == n)
        groups.append(RegionGroup(f"{segment_label(n)}{label_suffix}", codes.LV_MYOCARDIUM,
                                  site=codes.AHA_SEGMENTS[n], category=codes.ANATOMICAL_STRUCTURE, segment=(seg, k),
                                  measures=values, evaluations=[segmentation_method(manual=False)] + evaluations))
    return groups
