"""T2 segments module: a study's T2 maps (scanner inline, or cmr-node's own `_T2MAP_cmrnode`) and its native T1
maps -> T2 of the LV myocardium and of each AHA segment, with their SEGs and a report.

The myocardium has little contrast against its neighbours on a T2 map; on the native T1 map of the same
plane it has (SCMR plans T1 and T2 maps at the same short-axis positions, Messroghli et al., JCMR
2017;19:75). So the wall is found there, as the ECV module finds it without a post-contrast map
(analysis/myocardium.py), and carried onto the T2 map's grid through patient coordinates
(analysis/geometry.resample_onto); the same for the blood pool. A received SEG's LV myocardium, drawn on the
T2 map or on the native T1 map, replaces it, and its RV marks the septum; otherwise the septum is where blood
bright on the T2 map lies against the wall. A T2 slice with no native T1 map in its plane is left out
and the report says so (a quality finding). Nothing corrects a move between the two breath-holds: a reader
checks the SEG on the T2 map.
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
from scipy import ndimage

from analysis.blood_pool import find_blood_pool
from analysis.errors import AnalysisError
from analysis.geometry import resample_onto, same_plane
from analysis.myocardium import find_lv_myocardium, myocardium_from_mask
from analysis.quality import MISSING, Finding
from dicom_out import codes
from dicom_out.parametric_map import MANUFACTURER
from dicom_out.report import RegionGroup, median, segmentation_method, statistics, volume
from node.errors import InputError
from node.inputs.roi import received_masks, roi_key, segmentations_apart
from node.inputs.t1_maps import T1Slice, group_by_series, native_series, read_t1_maps
from node.inputs.t2_maps import T2Slice, read_t2_maps
from node.process.modules import ModuleInput, ModuleOutput
from node.process.modules.output_series import OUTPUT_SERIES
from node.process.modules.quality import QualityControl
from node.process.modules.reporting import LvRegions, add_report, lv_segmentation, voxel_ml
from node.process.modules.segments import (LV_MYOCARDIUM_LABEL, RV_BLOOD_LABEL, aha_segments, segment_groups,
                                           segments_seg)


def _plane(s: T1Slice | T2Slice) -> tuple:
    """(Image Position (Patient), Image Orientation (Patient), Pixel Spacing) of a map's frame."""
    return s.frame.position, s.frame.orientation, np.asarray(s.frame.pixel_mm)


def _partner(t2: T2Slice, natives: list[list[T1Slice]]) -> T1Slice | None:
    """The native T1 map in the T2 map's plane, from the earliest native acquisition that has one."""
    return next((s for series in natives for s in series
                 if same_plane(s.frame.orientation, s.frame.position, t2.frame.orientation, t2.frame.position)), None)


def _onto_t2(values: np.ndarray, source: T1Slice, t2: T2Slice, mask: bool = False) -> np.ndarray:
    moved = resample_onto(values.astype(float), _plane(source), _plane(t2), t2.t2_ms.shape, order=0 if mask else 1)
    return moved > 0.5 if mask else moved


def _drawn(found: dict[str, np.ndarray], t2: T2Slice, t1: T1Slice) -> np.ndarray | None:
    """A received mask on the T2 map, or on the native T1 map carried onto the T2 grid; None without one."""
    if (mask := found.get(roi_key(t2.frame))) is not None:
        return mask
    if (mask := found.get(roi_key(t1.frame))) is not None:
        return _onto_t2(mask, t1, t2, mask=True)
    return None


def _wall(t2: T2Slice, t1: T1Slice, t1_on_t2: np.ndarray, drawn: np.ndarray | None, pool: np.ndarray):
    """The LV myocardium on the T2 grid: the drawn one, else the one found on the native T1 map."""
    if drawn is not None:
        return myocardium_from_mask(drawn, t1_on_t2)
    found = _onto_t2(find_lv_myocardium(t1.t1_ms, pool, t1.pixel_mm).mask, t1, t2, mask=True)
    return myocardium_from_mask(_core(found), t1_on_t2)


def _core(mask: np.ndarray) -> np.ndarray:
    """The wall less its one-voxel edges, where that leaves at least half of it: a wall carried from another
    grid has blood in its endocardial edge, and blood's T2 is five times the myocardium's (SCMR: draw
    conservatively, away from blood and fat; Messroghli et al., JCMR 2017;19:75)."""
    core = ndimage.binary_erosion(mask)
    return core if core.sum() >= 0.5 * mask.sum() else mask


def _slice(t2: T2Slice, t1: T1Slice, drawn: np.ndarray | None, rv: dict, flags: list[str]):
    """(wall or None, blood pool, bright blood, RV) of one T2 slice, all on its grid; drawn: the received wall
    on the T2 grid, if any."""
    pool = np.zeros(t2.t2_ms.shape, dtype=bool)
    wall, t1_on_t2 = None, _onto_t2(t1.t1_ms, t1, t2)
    try:
        # native blood has the longest T1 of the heart; air (0 in a map) is no value
        pool_t1 = find_blood_pool(np.where(t1.t1_ms > 0, t1.t1_ms, np.nan), t1.pixel_mm)
        pool = _onto_t2(pool_t1, t1, t2, mask=True)
        wall = _wall(t2, t1, t1_on_t2, drawn, pool_t1)
    except AnalysisError as exc:     # no blood pool, no myocardium
        flags.append(f"LV myocardium not found on the T2 map at {t2.position_mm:.1f} mm: {exc}")
    # blood has by far the longest T2 of the heart: both ventricles are bright on the T2 map itself
    return wall, pool, np.where(t2.t2_ms > 0, t2.t2_ms, np.nan), _drawn(rv, t2, t1)


def _groups(t2_ms: np.ndarray, regions: LvRegions, seg, manual: bool, voxel: float) -> list[RegionGroup]:
    """LV myocardium (T2 mean, SD, median; volume) and LV blood pool (T2 median, volume)."""
    myocardium, blood = regions.masks()[..., 0], np.stack(regions.blood_pool)
    groups = [RegionGroup("LV myocardium", codes.LV_MYOCARDIUM, category=codes.ANATOMICAL_STRUCTURE, segment=(seg, 1),
                          measures=statistics(codes.T2, codes.UNIT_MS, t2_ms[myocardium], decimals=1)
                          + [volume(int(myocardium.sum()), voxel)],
                          evaluations=[segmentation_method(manual)])] if myocardium.any() else []
    if blood.any():
        groups.append(RegionGroup("LV blood pool", codes.BLOOD, site=codes.LEFT_VENTRICLE, category=codes.TISSUE,
                                  segment=(seg, 2), measures=[median(codes.T2, codes.UNIT_MS, t2_ms[blood], decimals=1),
                                                              volume(int(blood.sum()), voxel)],
                                  evaluations=[segmentation_method(manual=False)]))
    return groups


def _seconds(when: datetime | None) -> float:
    return when.timestamp() if when is not None else 0.0


def _one_series(paired: list[tuple[T2Slice, T1Slice]], results: dict) -> list[tuple[T2Slice, T1Slice]]:
    """The slices of one T2 map series: the scanner's inline map over cmr-node's own of the same images, then
    the series with more slices, then the latest (a repeat replaces a failed scan); the others are listed as
    set aside."""
    by_series: dict[str, list] = {}
    for pair in paired:
        by_series.setdefault(pair[0].frame.series_uid, []).append(pair)
    chosen = min(by_series.values(), key=lambda pairs: (
        str(pairs[0][0].dataset.get("Manufacturer", "")) == MANUFACTURER, -len(pairs),
        -_seconds(pairs[0][0].frame.acquired), -int(pairs[0][0].dataset.get("SeriesNumber", 0) or 0)))
    results["set_aside_series"] = [uid for uid in by_series if uid != chosen[0][0].frame.series_uid]
    return chosen


def run(inp: ModuleInput) -> ModuleOutput:
    seg_files, maps = segmentations_apart(inp.files)
    t2_slices = read_t2_maps(maps)
    try:
        natives = native_series(group_by_series(read_t1_maps(maps)))
    except InputError:
        natives = []
    if not natives:     # e.g. only dDCE's post-contrast maps: nothing to find the wall on, nothing failed
        return ModuleOutput(results={"module": "t2segments", "not_measured": "no native T1 map in the study: the "
                                     "LV myocardium is found on the native T1 map of the T2 map's plane"})
    images = [s.frame for s in t2_slices] + [s.frame for series in natives for s in series]
    myocardium, drawn_by = received_masks(seg_files, codes.LV_MYOCARDIUM.value, LV_MYOCARDIUM_LABEL, images)
    rv, _ = received_masks(seg_files, codes.RIGHT_VENTRICLE.value, RV_BLOOD_LABEL, images)
    output = ModuleOutput(results={"module": "t2segments", "unit": "ms", "slices": [], "skipped_slices": [],
                                   "myocardium_source": "automatic"})
    quality = QualityControl()
    paired = []
    for s in t2_slices:
        partner = _partner(s, natives)
        if partner is None:
            output.results["skipped_slices"].append({"position_mm": round(s.position_mm, 2),
                                                     "series_instance_uid": s.frame.series_uid,
                                                     "reason": "no native T1 map in this plane"})
            quality.add(Finding(MISSING, f"T2 map at {s.position_mm:.1f} mm: no native T1 map in its plane"))
        else:
            paired.append((s, partner))
    if not paired:      # e.g. the oximetry module's T2 map through the coronary sinus: not a T2 mapping slice
        output.results["not_measured"] = "no T2 map lies in the plane of a native T1 map"
        return output
    paired = _one_series(paired, output.results)
    flags: list[str] = []
    drawn_walls = [_drawn(myocardium, s, t1) for s, t1 in paired]      # each carried onto the T2 grid once
    per_slice = [_slice(s, t1, wall, rv, flags) for (s, t1), wall in zip(paired, drawn_walls)]
    drawn = sum(wall is not None for wall in drawn_walls)
    if drawn:
        output.results["myocardium_source"] = "received SEG" if drawn == len(paired) else \
            f"received SEG on {drawn} of {len(paired)} slices, automatic on the others"
    regions = LvRegions([w for w, _, _, _ in per_slice], [p for _, p, _, _ in per_slice], flags)
    quality.regions(flags)
    t2 = [s for s, _ in paired]
    t2_ms = np.stack([s.t2_ms for s in t2])
    manual = drawn_by is not None and drawn_by.manual and drawn == len(paired)   # every wall drawn by a person
    seg = lv_segmentation(regions, [s.frame for s in t2], inp, "t2segments", OUTPUT_SERIES["t2segments.regions"],
                          manual=manual)
    output.datasets.append(seg)
    voxel = voxel_ml(t2[0].frame)
    groups = _groups(t2_ms, regions, seg, manual, voxel)
    aha = aha_segments(regions, [b for _, _, b, _ in per_slice], [s.frame for s in t2], [s.pixel_mm for s in t2],
                       [r for _, _, _, r in per_slice])
    quality.regions(aha.flags)
    output.results["aha_segments"] = aha.as_dict()
    if aha.present():
        aha_seg = segments_seg(aha, [s.frame for s in t2], inp.job_key, "t2segments",
                               OUTPUT_SERIES["t2segments.segments"])
        output.datasets.append(aha_seg)
        groups += segment_groups(aha, aha_seg, lambda _, mask: (
            statistics(codes.T2, codes.UNIT_MS, t2_ms[mask], decimals=1) + [volume(int(mask.sum()), voxel)], []))
    output.results["slices"] = [
        {"position_mm": round(s.position_mm, 2), "t2_sop_instance_uid": str(s.dataset.SOPInstanceUID),
         "native_t1_sop_instance_uid": str(t1.dataset.SOPInstanceUID),
         "myocardium_voxels": int(w.mask.sum()) if w is not None else 0,
         "t2_ms_myocardium_median": round(float(np.median(s.t2_ms[w.mask])), 1) if w is not None else None}
        for (s, t1), (w, _, _, _) in zip(paired, per_slice)]
    output.results["quality_flags"] = quality.flags()
    sources = [s.dataset for s in t2] + [t1.dataset for _, t1 in paired]
    add_report(output, inp, "t2segments", groups + [quality.group(sources)], sources, "T2",
               evidence=[drawn_by.dataset] if drawn_by is not None else [])
    return output
