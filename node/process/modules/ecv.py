"""ECV module: native + post-contrast T1 map series of a study -> ECV Parametric Map(s).

Native and post-contrast series are told apart by node.t1_maps.classify (one map per acquisition).
Every post-contrast series gives one ECV map (percent) on its own grid, paired slice by slice (same
position within 1 mm) with the native map. A slice without a native partner, or whose blood pool is
not found, is reported in results.json and left out; the other slices go on.

A DICOM SEG of the study (the route takes the kind segmentation) drawn on the native or post-contrast maps
replaces the automatic LV myocardium on the slices it covers (segment type LV myocardium, SCT 49848007, or a
label with "myocard"), and its RV (Right ventricle, SCT 53085002, or a label like "RV blood pool") marks the
septum for the AHA segments; the report then says Manual and references the SEG.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

import node
from analysis.geometry import POSITION_TOLERANCE_MM, same_slice
from analysis.ecv import ecv_map, relative_r1_change
from analysis.quality import blood_t1, motion
from analysis.myocardium import MyocardiumNotFound, myocardium_from_mask
from analysis.registration import align
from dicom_out import codes
from dicom_out.parametric_map import build_parametric_map
from dicom_out.quantities import QUANTITIES
from dicom_out.report import Measure, RegionGroup, median, segmentation_method, statistics, volume
from dicom_out.uids import derived_uid
from node.process.modules import ModuleInput, ModuleOutput
from node.process.modules.reporting import LvRegions, add_report, lv_regions, lv_segmentation, voxel_ml
from node.errors import InputError
from node.inputs.t1_maps import T1Slice, classify, group_by_series, read_t1_maps
from node.process.modules.output_series import OUTPUT_SERIES
from node.process.modules.quality import QualityControl
from node.process.modules.segments import (LV_MYOCARDIUM_LABEL, RV_BLOOD_LABEL, aha_segments, segment_groups,
                                          segments_seg)
from node.inputs.roi import RoiSource, received_masks, roi_key, segmentations_apart


ECV = QUANTITIES["ecv"]
MIN_SHIFT_PX = 0.5    # registration is good to about this: smaller shifts are not applied (it would only blur)


def _partner(target: T1Slice, natives: list[list[T1Slice]]) -> T1Slice:
    """The native slice of the same plane, from the native acquisition nearest in time to the post-contrast one."""
    candidates = [s for series in natives for s in series
                  if same_slice(s.position_mm, target.position_mm)]
    if not candidates:
        raise InputError(f"no native slice within {POSITION_TOLERANCE_MM:g} mm of {target.position_mm:.1f} mm")
    if target.acquired is not None and any(s.acquired for s in candidates):
        best = min(candidates, key=lambda s: abs((target.acquired - s.acquired).total_seconds())
                   if s.acquired else float("inf"))
    else:
        best = candidates[0]
    if best.t1_ms.shape != target.t1_ms.shape:
        raise InputError(f"native and post-contrast maps differ in matrix at {target.position_mm:.1f} mm")
    return best


def _pairs(post: list[T1Slice], natives: list[list[T1Slice]], hematocrit: float) -> tuple[list, list[dict]]:
    """(native, post moved onto it, ECV result, shift found in mm, shift applied in px) for every slice that can
    be computed, and the slices that cannot, and why."""
    done, skipped = [], []
    for s in post:
        try:
            partner = _partner(s, natives)
            moved, shift_mm, applied = _aligned(s, partner)
            done.append((partner, moved, ecv_map(partner.t1_ms, moved.t1_ms, hematocrit, s.pixel_mm), shift_mm,
                         applied))
        except ValueError as exc:   # InputError, no blood pool, R1 that did not rise
            skipped.append({"position_mm": round(s.position_mm, 2), "series_instance_uid": s.series_uid,
                            "reason": str(exc)})
    return done, skipped


def _aligned(post: T1Slice, native: T1Slice) -> tuple[T1Slice, float, np.ndarray]:
    """The post-contrast map moved onto the native one when the breath-holds differ by more than
    MIN_SHIFT_PX (analysis/registration.py: rigid, in-plane), the shift found (mm) and the one applied
    ((row, col) px, 0 when none was)."""
    moved, shifts = align(native.t1_ms, post.t1_ms[None].astype(float))
    shift_px = shifts[0]
    shift_mm = float(np.hypot(*(shift_px * np.asarray(post.frame.pixel_mm))))
    if np.hypot(*shift_px) <= MIN_SHIFT_PX:
        return post, shift_mm, np.zeros(2)
    return replace(post, t1_ms=moved[0]), shift_mm, shift_px


def _slice_summary(result, native: T1Slice, post: T1Slice) -> dict:
    tissue = result.valid & ~result.blood_pool
    return {
        "position_mm": round(post.position_mm, 2),
        "source_sop_instance_uid": str(post.dataset.SOPInstanceUID),
        "native_sop_instance_uid": str(native.dataset.SOPInstanceUID),
        "blood_t1_native_ms": round(result.blood_t1_pre_ms, 1),
        "blood_t1_post_ms": round(result.blood_t1_post_ms, 1),
        "blood_delta_r1_per_s": round(result.blood_delta_r1_per_s, 4),
        "blood_pool_voxels": int(result.blood_pool.sum()),
        "valid_voxels": int(result.valid.sum()),
        "ecv_percent_tissue_median": round(float(np.median(result.ecv[tissue]) * 100), 2) if tissue.any() else None,
    }


@dataclass
class Drawn:
    """What a received SEG draws on the slices of one post-contrast series, on the native grid: per slice the
    LV myocardium and the RV (None where it draws none), and the SEG."""
    walls: list[np.ndarray | None]
    rv: list[np.ndarray | None]
    source: RoiSource | None

    @property
    def manual(self) -> bool:
        """Every slice's wall drawn by a person."""
        return self.source is not None and self.source.manual and all(w is not None for w in self.walls)

    def describe(self) -> str:
        drawn = sum(w is not None for w in self.walls)
        return "automatic" if not drawn else "received SEG" if drawn == len(self.walls) else \
            f"received SEG on {drawn} of {len(self.walls)} slices, automatic on the others"


def _on_native_grid(found: dict[str, np.ndarray], native: T1Slice, post: T1Slice, applied_px: np.ndarray):
    """A mask drawn on the native map as it is; one drawn on the post-contrast map moved as that map was."""
    if (mask := found.get(roi_key(native.frame))) is not None:
        return mask
    if (mask := found.get(roi_key(post.frame))) is not None and np.any(applied_px):
        return ndimage.shift(mask.astype(float), applied_px, order=0, mode="constant") > 0.5
    return mask


def _drawn(seg_files: list[str], partners: list[T1Slice], post: list[T1Slice], applied: list) -> Drawn:
    images = [f for n, p in zip(partners, post) for f in (n.frame, p.frame)]
    walls, source = received_masks(seg_files, codes.LV_MYOCARDIUM.value, LV_MYOCARDIUM_LABEL, images)
    rv, _ = received_masks(seg_files, codes.RIGHT_VENTRICLE.value, RV_BLOOD_LABEL, images)
    return Drawn([_on_native_grid(walls, n, p, a) for n, p, a in zip(partners, post, applied)],
                 [_on_native_grid(rv, n, p, a) for n, p, a in zip(partners, post, applied)], source)


def _regions(drawn: Drawn, partners: list[T1Slice], post: list[T1Slice], results) -> LvRegions:
    """The LV regions of one post-contrast series: the myocardium a received SEG draws where it draws one (the
    blood pool stays the ECV's own), the automatic one elsewhere."""
    regions = lv_regions([s.t1_ms for s in partners], [r.blood_pool for r in results], [s.pixel_mm for s in post],
                         [s.position_mm for s in post], [s.t1_ms for s in post])
    walls, flags = [], []
    for native, s, automatic, mask in zip(partners, post, regions.myocardium, drawn.walls):
        try:
            walls.append(automatic if mask is None else myocardium_from_mask(mask, native.t1_ms))
        except MyocardiumNotFound as exc:
            walls.append(None)
            flags.append(f"received LV myocardium on the slice at {s.position_mm:.1f} mm not used: {exc}")
    return LvRegions(walls, regions.blood_pool, regions.flags + flags)


def _groups(label: str, percent: np.ndarray, natives, post, results, regions, pm, seg, hematocrit,
            manual: bool) -> list[RegionGroup]:
    """LV myocardium (ECV, T1) and LV blood pool (T1, hematocrit) of one post-contrast series."""
    valid = np.stack([r.valid for r in results])
    myocardium = regions.masks()[..., 0] & valid
    blood = np.stack(regions.blood_pool) & valid
    native = np.stack([s.t1_ms for s in natives])
    post_t1 = np.stack([s.t1_ms for s in post])
    voxel = voxel_ml(post[0].frame)
    myo = RegionGroup(
        f"LV myocardium{label}", codes.LV_MYOCARDIUM, category=codes.ANATOMICAL_STRUCTURE, segment=(seg, 1),
        measures=statistics(codes.ECV, codes.UNIT_PERCENT, percent[myocardium], source=pm, decimals=2)
        + statistics(codes.T1, codes.UNIT_MS, native[myocardium], decimals=1)
        + [volume(int(myocardium.sum()), voxel)],
        evaluations=[segmentation_method(manual)])
    pool = RegionGroup(
        f"LV blood pool{label}", codes.BLOOD, site=codes.LEFT_VENTRICLE, category=codes.TISSUE, segment=(seg, 2),
        measures=[median(codes.T1, codes.UNIT_MS, native[blood], decimals=1),
                  Measure(codes.HEMATOCRIT, round(hematocrit * 100, 1), codes.UNIT_PERCENT),
                  volume(int(blood.sum()), voxel)],
        evaluations=[segmentation_method(manual=False)])
    # a separate group: the same concept (T1 median) at a second time point must not share a group
    pool_post = RegionGroup(
        f"LV blood pool post-contrast{label}", codes.BLOOD, site=codes.LEFT_VENTRICLE, category=codes.TISSUE,
        segment=(seg, 2), measures=[median(codes.T1, codes.UNIT_MS, post_t1[blood], decimals=1)])
    return ([myo] if myocardium.any() else []) + [pool, pool_post]


def _aha(inp, n: int, label: str, partners, post, results, regions, percent, pm, output,
         quality: QualityControl, drawn_rv: list) -> list[RegionGroup]:
    """The AHA segments of one post-contrast series (the septum where a received SEG's RV lies, else where
    blood that brightens with contrast lies against the wall): their SEG, and a group per segment with its
    ECV and native T1 (mean, SD, median) and volume."""
    bright = [relative_r1_change(native.t1_ms, s.t1_ms) for native, s in zip(partners, post)]
    aha = aha_segments(regions, bright, [s.frame for s in post], [s.pixel_mm for s in post], drawn_rv)
    quality.regions(aha.flags)
    output.results["maps"][-1]["aha_segments"] = aha.as_dict()
    if not aha.present():
        return []
    seg = segments_seg(aha, [s.frame for s in post], inp.job_key, f"ecv-{n}", OUTPUT_SERIES["ecv.segments"], n)
    output.datasets.append(seg)
    valid = np.stack([r.valid for r in results])
    native = np.stack([s.t1_ms for s in partners])
    voxel = voxel_ml(post[0].frame)
    return segment_groups(aha, seg, lambda _, mask: (
        statistics(codes.ECV, codes.UNIT_PERCENT, percent[mask & valid], source=pm, decimals=2)
        + statistics(codes.T1, codes.UNIT_MS, native[mask & valid], decimals=1)
        + [volume(int((mask & valid).sum()), voxel)], []), label)


def run(inp: ModuleInput) -> ModuleOutput:
    hematocrit = inp.settings.hematocrit
    seg_files, maps = segmentations_apart(inp.files)
    natives, posts, how = classify(group_by_series(read_t1_maps(maps)))
    output = ModuleOutput(results={
        "module": "ecv", "hematocrit": hematocrit, "classified_by": how,
        "native_series_uids": [n[0].series_uid for n in natives], "maps": [], "skipped_slices": [],
        "quality_flags": []})
    groups, sources, shifts_mm, quality, evidence = [], [], [], QualityControl(), []
    for n, series in enumerate(posts):
        done, skipped = _pairs(series, natives, hematocrit)
        output.results["skipped_slices"] += skipped
        if not done:
            continue
        partners, post, results, shifts, applied = (list(x) for x in zip(*done))
        shifts_mm += shifts
        for native, result in zip(partners, results):
            quality.add(blood_t1(result.blood_t1_pre_ms, native.frame.field_strength_t,
                                 f"native map at {native.position_mm:.1f} mm"))
        percent = np.clip(np.stack([r.ecv for r in results]) * ECV.scale, 0.0, 100.0)
        series_uid = derived_uid(inp.job_key, "ecv", post[0].series_uid, "series")
        pm = build_parametric_map(
            percent, [s.frame for s in post], ECV.map,
            series_uid=series_uid, sop_uid=derived_uid(inp.job_key, "ecv", post[0].series_uid, "instance"),
            series_number=OUTPUT_SERIES["ecv.map"].number(n), series_description=OUTPUT_SERIES["ecv.map"].describe(),
            content_label="ECV",
            software_version=node.__version__, further_source_images=[native.frame for native in partners])
        drawn = _drawn(seg_files, partners, post, applied)
        regions = _regions(drawn, partners, post, results)
        manual = drawn.manual
        seg = lv_segmentation(regions, [s.frame for s in post], inp, f"ecv-{n}", OUTPUT_SERIES["ecv.regions"], n,
                              manual=manual)
        output.datasets += [pm, seg]
        quality.regions(regions.flags)
        label = f" ({post[0].series_description})" if len(posts) > 1 else ""
        groups += _groups(label, percent, partners, post, results, regions, pm, seg, hematocrit, manual)
        if drawn.source is not None:
            evidence.append(drawn.source.dataset)
        sources += [s.dataset for s in partners + post]
        output.results["maps"].append({
            "series_instance_uid": series_uid, "sop_instance_uid": str(pm.SOPInstanceUID),
            "post_contrast_series_uid": post[0].series_uid, "unit": "%",
            "myocardium_source": drawn.describe(),
            "slices": [_slice_summary(r, n, s) for r, n, s in zip(results, partners, post)]})
        groups += _aha(inp, n, label, partners, post, results, regions, percent, pm, output, quality, drawn.rv)
    if not output.results["maps"]:
        raise InputError("no slice could be paired: " + "; ".join(
            f"{s['position_mm']} mm: {s['reason']}" for s in output.results["skipped_slices"]))
    largest, finding = motion(shifts_mm, inp.settings.qc_motion_limit_mm, "post-contrast against native maps")
    quality.measured(codes.PATIENT_MOTION, largest, codes.UNIT_MM, decimals=1)
    quality.add(finding)
    output.results["largest_shift_mm"] = round(largest, 2)
    output.results["quality_flags"] = quality.flags()
    add_report(output, inp, "ecv", groups + [quality.group(sources)], sources, "ECV", evidence=evidence)
    return output
