"""LGE module: synthetic late gadolinium enhancement from the 5-minute dDCE fit (analysis/lge.py).

Inputs are those of the dDCE route (a native and post-contrast T1 maps), plus,
when the study has one, a DICOM SEG with an LV myocardium segment (SCT
49848007, or a label with "myocard"); the route must take the kind segmentation
(the built-in one does). Without it the myocardium is segmented automatically and the report
says so; the route (study-so-far) runs again when the SEG arrives.

Settings ([inputs], declared in node/settings.py): lge_target_minutes,
lge_fit_window_minutes, lge_infarct_method, lge_n_sd. LGE_standard uses the
measured T1 map nearest the target time, within 2.5 minutes, when there is one.

Outputs: LGE_dDCE as derived MR images, phase-sensitive (values = signal x
1000, remote myocardium 0, blood negative) and magnitude; LGE_standard the same
way when there is a map for it; a SEG with LV myocardium, infarct, MVO and LV
blood pool; the report; every number in results.json. Object UIDs derive from
the maps inside the fit window (and the one used for LGE_standard), so later
maps re-issue only what they change.
"""
from __future__ import annotations

import hashlib

import numpy as np
from scipy import ndimage

import node
from analysis.geometry import same_slice
from analysis.ddce import covered_windows
from analysis.aha_segments import SEGMENT_NAMES
from analysis.ecv import relative_r1_change
from analysis.lge import lge_metrics, lge_slices, synthetic_t1, t1_from_concentration, transmural_extents
from analysis.myocardium import MyocardiumNotFound, myocardium_from_mask
from analysis.quality import MISSING, Finding
from analysis.registration import align
from dicom_out import codes
from dicom_out.derived_mr import derived_map_images
from dicom_out.report import Measure, RegionGroup, segmentation_method, volume
from dicom_out.segmentation import Segment, build_segmentation
from dicom_out.uids import derived_uid
from node.process.modules.quality import QualityControl
from node.process.modules import ModuleInput, ModuleOutput
from node.process.modules.ddce import fit_window, injection_time, relaxivity, window_key
from node.process.modules.ddce_lesions import blood_pool_in_cavity
from node.process.modules.reporting import (INFARCT_SEGMENT, LV_BLOOD_SEGMENT, LV_MYOCARDIUM_SEGMENT, MVO_SEGMENT,
                                            LvRegions, add_report, lv_regions, voxel_ml)
from node.process.modules.segments import (LV_MYOCARDIUM_LABEL, aha_segments, received_rv, segment_groups,
                                          segments_seg)
from node.inputs.roi import received_masks, roi_key, segmentations_apart
from node.errors import InputError
from node.inputs.t1_maps import classify, group_by_series, read_t1_maps
from node.process.modules.output_series import OUTPUT_SERIES, OutputSeries

STANDARD_TOLERANCE_MIN = 2.5


def _received_myocardium(seg_files: list[str], native) -> tuple[list[np.ndarray], object] | None:
    found, source = received_masks(seg_files, codes.LV_MYOCARDIUM.value, LV_MYOCARDIUM_LABEL, [s.frame for s in native])
    if not found:
        return None
    shape = native[0].t1_ms.shape
    return [found.get(roi_key(s.frame), np.zeros(shape, dtype=bool)) for s in native], source


def _standard_t1(timed, native, target: float):
    """Measured T1 maps (per native slice, aligned) nearest the target time, or None."""
    maps, used = [], []
    for base in native:
        here = [(abs(t - target), s) for t, s in timed
                if same_slice(s.position_mm, base.position_mm) and abs(t - target) <= STANDARD_TOLERANCE_MIN]
        if not here:
            return None
        nearest = min(here, key=lambda pair: pair[0])[1]
        aligned, _ = align(base.t1_ms, nearest.t1_ms[None])
        maps.append(aligned[0])
        used.append(nearest)
    return np.stack(maps), used


def _images(values: np.ndarray, sources, key: str, name: str, series: OutputSeries, target: float, derivation: str,
            signed: bool):
    return derived_map_images(
        values * 1000.0, sources, series_uid=derived_uid(key, name, "series"),
        sop_uids=[derived_uid(key, name, k) for k in range(len(values))], series_number=series.number(),
        series_description=series.describe(target=target), image_type_value3="LGE", derivation=derivation,
        window=(0.0, 1000.0) if signed else (500.0, 1000.0), software_version=node.__version__,
        rescale=(1.0, -1000.0 if signed else 0.0))


def _metric_measures(m: dict) -> list[Measure]:
    out = [Measure(codes.INFARCT_SIZE, round(m["infarct_size_percent"], 2), codes.UNIT_PERCENT),
           Measure(codes.TRANSMURALITY, round(m["transmurality_percent"], 1), codes.UNIT_PERCENT),
           Measure(codes.MVO_SIZE, round(m["mvo_percent"], 2), codes.UNIT_PERCENT)]
    for concept, key in ((codes.CNR_INFARCT_BLOOD, "cnr_infarct_blood"), (codes.CNR_INFARCT_REMOTE, "cnr_infarct_remote")):
        if m[key] is not None:
            out.append(Measure(concept, round(m[key], 2), codes.UNIT_NONE))
    return out


def _rounded(metrics: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


def _segment_measures(synthetic, myocardium: np.ndarray, cavity: np.ndarray, voxel: float, results: list):
    """Per AHA segment of the synthetic LGE: infarct (with MVO) extent as percent of the segment's myocardium,
    the mean transmural extent of its infarcted 6-degree sectors (0 without infarct), MVO percent, volume."""
    def measures(number: int, mask: np.ndarray):
        # a segment spans one slice, or two where four or more slices share three levels
        infarcted = np.stack([s.segmentation.infarct | s.segmentation.mvo for s in synthetic]) & mask
        mvo = np.stack([s.segmentation.mvo for s in synthetic]) & mask
        extents = [e for k in range(len(synthetic)) if mask[k].any()
                   for e in transmural_extents(infarcted[k], myocardium[k], cavity[k])]
        voxels = int(mask.sum())
        entry = {"segment": number, "name": SEGMENT_NAMES[number], "voxels": voxels,
                 "infarct_extent_percent": round(100.0 * infarcted.sum() / voxels, 2),
                 "transmurality_percent": round(100.0 * float(np.mean(extents)), 1) if extents else 0.0,
                 "mvo_percent": round(100.0 * mvo.sum() / voxels, 2)}
        results.append(entry)
        return [Measure(codes.SEGMENT_INFARCT_EXTENT, entry["infarct_extent_percent"], codes.UNIT_PERCENT),
                Measure(codes.TRANSMURALITY, entry["transmurality_percent"], codes.UNIT_PERCENT),
                Measure(codes.MVO_SIZE, entry["mvo_percent"], codes.UNIT_PERCENT), volume(voxels, voxel)], []
    return measures


def _aha(key: str, native, fits, myocardium: np.ndarray, cavity: np.ndarray, pools: np.ndarray, synthetic,
         seg_files: list[str], output: ModuleOutput, quality: QualityControl) -> list[RegionGroup]:
    """The AHA segments of the myocardium the synthetic LGE was segmented in (the RV from a received SEG, else
    bright on the relative R1 change to the registered mean post-contrast map), their SEG and a group per
    segment."""
    walls, flags = [], []
    for mask, s in zip(myocardium, native):
        try:
            walls.append(myocardium_from_mask(mask, s.t1_ms))
        except MyocardiumNotFound as exc:     # a slice without wall, or a drawn wall that is no ring
            walls.append(None)
            flags.append(f"no AHA segments on the slice at {s.position_mm:.1f} mm: {exc}")
    quality.regions(flags)
    bright = [relative_r1_change(s.t1_ms, fit.mean_post_t1_ms) for s, fit in zip(native, fits)]
    aha = aha_segments(LvRegions(walls, list(pools), flags), bright, [s.frame for s in native],
                       [s.pixel_mm for s in native], received_rv(seg_files, [s.frame for s in native]))
    quality.regions(aha.flags)
    output.results["aha_segments"] = {**aha.as_dict(), "lge_dDCE": []}
    if not aha.present():
        return []
    seg = segments_seg(aha, [s.frame for s in native], key, "lge", OUTPUT_SERIES["lge.segments"])
    output.datasets.append(seg)
    return segment_groups(aha, seg, _segment_measures(synthetic, myocardium, cavity, voxel_ml(native[0].frame),
                                                      output.results["aha_segments"]["lge_dDCE"]), " (LGE_dDCE)")


def run(inp: ModuleInput) -> ModuleOutput:
    settings = inp.settings
    target, window = settings.lge_target_minutes, settings.lge_fit_window_minutes
    method, n_sd = settings.lge_infarct_method, settings.lge_n_sd
    seg_files, maps = segmentations_apart(inp.files)
    natives, posts, how = classify(group_by_series(read_t1_maps(maps)))
    native = natives[0]
    injection, _ = injection_time(posts, settings)
    r1, _, _ = relaxivity(posts, settings)
    timed = [((s.acquired - injection).total_seconds() / 60.0, s) for series in posts for s in series if s.acquired]
    timed = [(t, s) for t, s in timed if t > 0]
    output = ModuleOutput(results={"module": "lge", "target_min": target, "fit_window_min": window,
                                   "infarct_method": method, "n_sd": n_sd, "classified_by": how, "quality_flags": []})
    if not covered_windows(np.array([t for t, _ in timed]), [window]):
        output.results["quality_flags"].append(f"waiting for post-contrast maps up to {window:g} min")   # no report yet
        return output
    _, _, used, fits = fit_window(window, native, timed, settings, r1)
    native_t1 = np.stack([s.t1_ms for s in native])
    pools = np.stack([r.blood_pool for r in fits])
    received = _received_myocardium(seg_files, native)
    if received is not None:
        myocardium, roi = np.stack(received[0]), received[1]
        cavity = np.stack([ndimage.binary_fill_holes(m) & ~m for m in myocardium])
        manual, myo_uid = roi.manual, str(roi.dataset.SOPInstanceUID)
    else:
        regions = lv_regions(list(native_t1), list(pools), [s.pixel_mm for s in native], [s.position_mm for s in native],
                             [r.mean_post_t1_ms for r in fits])
        if any(m is None for m in regions.myocardium):
            raise InputError("; ".join(regions.flags))
        myocardium = np.stack([m.mask for m in regions.myocardium])
        cavity = np.stack([m.cavity for m in regions.myocardium])
        manual, myo_uid = False, "automatic"
    output.results["myocardium_source"] = "received SEG" if received is not None else "automatic"
    pools = blood_pool_in_cavity(fits, cavity)

    t1_target = synthetic_t1(native_t1, fits, myocardium, pools, r1, target)
    synthetic, ti = lge_slices(t1_target, myocardium, cavity, method, n_sd)
    blood_t1 = float(np.median(native_t1[pools]))
    aif = fits[0].windows[0].aif
    output.results["lge_ddce"] = {
        "ti_ms": round(ti, 1), "blood_t1_by_aif_ms": round(float(t1_from_concentration(
            np.array([blood_t1]), np.array([(1 - settings.hematocrit) * float(aif(np.array([target]))[0])]),
            r1)[0]), 1),
        **{m: _rounded(lge_metrics(lge_slices(t1_target, myocardium, cavity, m, n_sd)[0], myocardium, cavity, pools))
           for m in ("nsd", "fwhm")}}
    primary = lge_metrics(synthetic, myocardium, cavity, pools)

    key = hashlib.sha256(f"lge {window_key(used, settings, r1, injection)} {target} {method} {n_sd} {myo_uid}"
                         .encode()).hexdigest()
    sources = [[s.frame] for s in native]
    psir = np.stack([s.psir for s in synthetic])
    output.datasets += _images(psir, sources, key, "psir", OUTPUT_SERIES["lge.psir"], target,
                               f"Synthetic PSIR-like LGE at {target:g} min from the {window:g}-min dDCE fit, TI "
                               f"{ti:.0f} ms, signal x1000 (cmr-node)", signed=True)
    output.datasets += _images(np.abs(psir), sources, key, "mag", OUTPUT_SERIES["lge.magnitude"], target,
                               f"Synthetic magnitude IR LGE at {target:g} min, TI {ti:.0f} ms, signal x1000 "
                               "(cmr-node)", signed=False)
    infarct = np.stack([s.segmentation.infarct for s in synthetic])
    mvo = np.stack([s.segmentation.mvo for s in synthetic])
    seg = build_segmentation(
        np.stack([myocardium, infarct, mvo, pools], axis=-1), [s.frame for s in native],
        [Segment(LV_MYOCARDIUM_SEGMENT.label, LV_MYOCARDIUM_SEGMENT.category, LV_MYOCARDIUM_SEGMENT.property_type,
                 manual=manual), INFARCT_SEGMENT, MVO_SEGMENT, LV_BLOOD_SEGMENT],
        series_uid=derived_uid(key, "seg", "series"), sop_uid=derived_uid(key, "seg"),
        series_number=OUTPUT_SERIES["lge.regions"].number(), series_description=OUTPUT_SERIES["lge.regions"].describe(), software_version=node.__version__)
    output.datasets.append(seg)
    voxel = voxel_ml(native[0].frame)
    groups = [
        RegionGroup("LV myocardium (LGE_dDCE)", codes.LV_MYOCARDIUM, category=codes.ANATOMICAL_STRUCTURE,
                    segment=(seg, 1), measures=_metric_measures(primary) + [volume(int(myocardium.sum()), voxel)],
                    evaluations=[segmentation_method(manual)]),
        RegionGroup("Infarct (LGE_dDCE)", codes.MYOCARDIAL_INFARCTION, category=codes.ABNORMAL_STRUCTURE,
                    segment=(seg, 2), measures=[volume(int(infarct.sum()), voxel)],
                    evaluations=[segmentation_method(False)]),
        RegionGroup("Microvascular obstruction (LGE_dDCE)", codes.MVO, category=codes.ABNORMAL_STRUCTURE,
                    segment=(seg, 3), measures=[volume(int(mvo.sum()), voxel)], evaluations=[segmentation_method(False)])]
    evidence = [s.dataset for s in native] + [s.dataset for s in used]

    quality = QualityControl()
    standard = _standard_t1(timed, native, target)
    if standard is None:
        quality.add(Finding(MISSING, f"no measured T1 map within {STANDARD_TOLERANCE_MIN} min of {target:g} min: "
                                     "no LGE_standard"))
    else:
        t1_standard, standard_used = standard
        measured, ti_standard = lge_slices(t1_standard, myocardium, cavity, method, n_sd)
        standard_metrics = lge_metrics(measured, myocardium, cavity, pools)
        output.results["lge_standard"] = {
            "ti_ms": round(ti_standard, 1), "map_sop_instance_uids": [str(s.dataset.SOPInstanceUID) for s in standard_used],
            **{m: _rounded(lge_metrics(lge_slices(t1_standard, myocardium, cavity, m, n_sd)[0], myocardium, cavity,
                                       pools)) for m in ("nsd", "fwhm")}}
        skey = hashlib.sha256(f"{key} {[str(s.dataset.SOPInstanceUID) for s in standard_used]}".encode()).hexdigest()
        images = _images(np.stack([s.psir for s in measured]), [[s.frame] for s in standard_used], skey, "std",
                         OUTPUT_SERIES["lge.standard"], target, f"PSIR-like LGE from the measured T1 map, "
                         f"TI {ti_standard:.0f} ms, signal x1000 (cmr-node)", signed=True)
        output.datasets += images
        groups.append(RegionGroup("LV myocardium (LGE_standard)", codes.LV_MYOCARDIUM,
                                  category=codes.ANATOMICAL_STRUCTURE, images=images,
                                  measures=_metric_measures(standard_metrics)))
        evidence += [s.dataset for s in standard_used]
        if primary["cnr_infarct_blood"] and standard_metrics["cnr_infarct_blood"]:
            output.results["cnr_infarct_blood_ratio"] = round(
                primary["cnr_infarct_blood"] / standard_metrics["cnr_infarct_blood"], 2)
    groups += _aha(key, native, fits, myocardium, cavity, pools, synthetic, seg_files, output, quality)
    output.results["quality_flags"] += quality.flags()
    add_report(output, inp, "lge", groups + [quality.group(evidence)], evidence, "LGE",
               evidence=[received[1].dataset] if received is not None else [])
    return output
