"""dDCE module: a native T1 map and post-contrast T1 maps of a study -> 2CXM Parametric Maps per window.

Inputs and conventions:
- Native vs post-contrast series: node.t1_maps.classify. Slices are grouped by
  position along the slice normal (within 1 mm).
- Time after injection, in this order: a per-study `injection_time`
  (`cmr-node inputs set`), Contrast Bolus Start Time (0018,1042) of the
  post-contrast maps (date from Acquisition/Study Date), or the configured
  `injection_to_first_map_minutes` before the first post-contrast map. None of
  these is an error that says so.
- r1 from Contrast/Bolus Agent (0018,0010) and Magnetic Field Strength
  (0018,0087) through analysis/relaxivity.py, overridable in [inputs] relaxivity.
- Windows ([inputs] ddce_windows_minutes, node/settings.py): a window is fitted
  as soon as the maps reach it, from the maps inside it only; its output UIDs
  derive from exactly those inputs, so a later re-run (more maps arrived)
  rewrites the same 5-minute objects instead of adding new ones.
Outputs per window: float Parametric Maps of ve, vp, ve+vp (fractions), PS and
Fp (mL/min/g, tissue density 1.05 g/mL) and fit R^2, Series Description like
"dDCE 5min ve"; failed voxels are 0 in every map and counted in results.json.
Per slice the LV myocardium's parameters with 95 % intervals and whether the
data identify them, and the same for remote myocardium, infarct and MVO where
the synthetic LGE finds an infarct (node/process/modules/ddce_lesions.py; their
segments join the dDCE SEG); per voxel where each map's parameter is
identified (a SEG); a map identified almost nowhere is withheld or labelled
(node/process/modules/ddce_regions.py): results.json and the report.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import numpy as np

import node
from analysis.geometry import same_slice
from analysis.aha_segments import SEGMENT_NAMES
from analysis.ddce import TISSUE_DENSITY_G_PER_ML, WINDOW_JITTER_MIN, analyse_slice, covered_windows
from analysis.ecv import relative_r1_change
from analysis.relaxivity import UnknownAgent, r1_per_mM_s
from analysis.quality import MISSING, Finding, blood_t1, fit, motion
from dicom_out import codes
from dicom_out.parametric_map import build_parametric_map
from dicom_out.quantities import map_quantity
from dicom_out.uids import derived_uid
from dicom_out.report import Measure, RegionGroup, fit_quality, segmentation_method, statistics, volume
from node.process.modules import MODULES, ModuleInput, ModuleOutput
from node.process.modules.quality import QualityControl
from node.process.modules.reporting import (MORE_SEGMENTS_FROM, LvRegions, add_report, lv_regions, lv_segmentation,
                                            voxel_ml)
from node.inputs.frames import field_strength_t, parse_datetime
from node.errors import InputError
from node.inputs.t1_maps import T1Slice, classify, group_by_series, read_t1_maps
from node.settings import ModuleSettings
from analysis.errors import AnalysisError
from node.inputs.first_pass import FirstPassSlice, read_first_pass
from node.process.modules.ddce_first_pass import JointSlice, joint_slice, matching_slices, split_arterial_input
from node.process.modules.ddce_regions import (NOT_IDENTIFIED_LABEL, Identification, identification_segmentation,
                                               identify_voxels, report_items, results_entry, slice_estimates,
                                               withheld_reason)
from node.process.modules.ddce_lesions import LESION_SEGMENTS, MIN_REGION_VOXELS, Lesions, find_lesions, lesion_window
from node.process.modules.output_series import OUTPUT_SERIES
from node.process.modules.segments import AhaSegments, aha_segments, segment_groups, segments_seg

# the 2CXM maps (analysis.ddce), each written as a Parametric Map (dicom_out/quantities.py)
DELAYED_MAPS = ("ve", "vp", "ve_plus_vp", "ps", "fp", "r_squared")   # what a fit of delayed maps alone gives
# (MBF only from a fit with the first pass; its series number follows the others')
QUANTITIES = {name: map_quantity(name) for name in ("ve", "vp", "ve_plus_vp", "ps", "fp", "r_squared", "mbf")}


def injection_time(posts: list[list[T1Slice]], settings: ModuleSettings) -> tuple[datetime, str]:
    """(time of the contrast injection, where it came from)."""
    first = min((s for series in posts for s in series if s.acquired), key=lambda s: s.acquired, default=None)
    if first is None:
        raise InputError("post-contrast maps carry no acquisition date/time")
    date = first.acquired.strftime("%Y%m%d")
    given = [(settings.injection_time, "per-study injection_time")] + [
        (series[0].dataset.get("ContrastBolusStartTime"), "Contrast Bolus Start Time (0018,1042)") for series in posts]
    for text, source in given:
        if text:
            if (when := parse_datetime(str(text), date)) is None:
                raise InputError(f"{source} {str(text)[:20]!r} is not a DICOM time (HHMMSS) or date-time")
            return when, source
    minutes = settings.injection_to_first_map_minutes
    if minutes:
        return first.acquired - timedelta(minutes=float(minutes)), "configured injection_to_first_map_minutes"
    raise InputError("time of injection unknown: no Contrast Bolus Start Time (0018,1042) in the maps, no "
                     "per-study injection_time and no [inputs] injection_to_first_map_minutes")


def relaxivity(posts: list[list[T1Slice]], settings: ModuleSettings) -> tuple[float, str, float]:
    header = posts[0][0].dataset
    agent = str(header.get("ContrastBolusAgent", "") or "")
    field = field_strength_t(header)
    if not field:
        raise InputError("Magnetic Field Strength (0018,0087) missing: relaxivity depends on it")
    try:
        return r1_per_mM_s(agent, field, settings.relaxivity), agent, field
    except UnknownAgent as exc:
        raise InputError(str(exc)) from None


def window_key(used: list[T1Slice], settings: ModuleSettings, r1: float, injection: datetime,
               first_pass: tuple[str, ...] = ()) -> str:
    """Digest of a window's inputs (and the first-pass instances fitted with them), which seeds its UIDs."""
    digest = hashlib.sha256(f"ddce {MODULES['ddce'].version} {settings.hematocrit} {r1} {injection}".encode())
    for uid in sorted(str(s.dataset.SOPInstanceUID) for s in used) + sorted(first_pass):
        digest.update(uid.encode())
    return digest.hexdigest()


def fit_window(window: float, native: list[T1Slice], timed: list[tuple[float, T1Slice]], settings: ModuleSettings,
                r1: float) -> tuple[dict[str, np.ndarray], list[dict], list[T1Slice], list]:
    """Maps stacked over slice positions, per-slice summaries, the post slices used and per-slice results."""
    stacks: dict[str, list[np.ndarray]] = {name: [] for name in (*DELAYED_MAPS, "failed")}
    slices, used, results = [], [], []
    for base in native:
        here = sorted(((t, s) for t, s in timed if same_slice(s.position_mm, base.position_mm)
                       and t <= window + WINDOW_JITTER_MIN), key=lambda pair: pair[0])
        if len(here) < 3 or any(s.t1_ms.shape != base.t1_ms.shape for _, s in here):
            raise InputError(f"slice at {base.position_mm:.1f} mm: fewer than 3 usable post-contrast maps "
                             f"in the {window:g}-min window, or a different matrix")
        result = analyse_slice(base.t1_ms, np.stack([s.t1_ms for _, s in here]), np.array([t for t, _ in here]),
                               hematocrit=settings.hematocrit, r1_per_mM_s=r1, pixel_mm=base.pixel_mm,
                               windows_min=[window], t1_noise_fraction=settings.t1_noise_fraction)
        fitted = result.windows[0]
        results.append(result)
        for name in (*DELAYED_MAPS, "failed"):
            stacks[name].append(fitted.maps[name])
        tissue = result.valid & ~result.blood_pool & (fitted.maps["failed"] == 0)
        slices.append({
            "position_mm": round(base.position_mm, 2), "times_min": [round(t, 2) for t, _ in here],
            "aif_plasma": fitted.aif.as_dict(), "blood_plasma_mM": [round(float(c), 4) for c in
                                                                     result.blood_plasma_mM],
            "shifts_mm": np.round(result.shifts_mm, 2).tolist(), "blood_pool_voxels": int(result.blood_pool.sum()),
            "fitted_voxels": int(result.valid.sum()), "failed_voxels": int(fitted.maps["failed"].sum()),
            "ve_vp_separable_fraction": round(float(fitted.maps["ve_vp_separable"][result.valid].mean()), 3),
            "tissue_median": {name: round(float(np.median(fitted.maps[name][tissue])), 4) if tissue.any() else None
                              for name in DELAYED_MAPS},
            "blood_pool_median": {name: round(float(np.median(fitted.maps[name][result.blood_pool])), 4)
                                  for name in DELAYED_MAPS},
        })
        used += [s for _, s in here]
    return {name: np.stack(v) for name, v in stacks.items()}, slices, used, results


def _check_quality(quality: QualityControl, settings, windows, fitted, native, regions, field, final: bool,
                   last_min: float) -> None:
    """Motion between the maps (registered, but a through-plane move stays), the fit in the myocardium of the
    longest window, native blood T1, and whether the maps reach the first window at all."""
    if not fitted:
        first = settings.ddce_windows_minutes[0]
        quality.add(Finding(MISSING, f"the study ended with no post-contrast map at {first:g} min (the last at "
                                     f"{last_min:.1f} min): no dDCE fit" if final else
                                     f"no post-contrast map reaches {first:g} min: nothing fitted yet"))
        return
    maps, _, _, results = fitted[-1]
    shifts = np.concatenate([np.hypot(*r.shifts_mm.T) for r in results])
    largest, finding = motion(shifts, settings.qc_motion_limit_mm, f"dDCE maps up to {windows[-1]:g} min")
    quality.measured(codes.PATIENT_MOTION, largest, codes.UNIT_MM, decimals=1)
    quality.add(finding)
    myocardium = regions.masks()[..., 0] & np.stack([r.valid for r in results]) & (maps["failed"] == 0)
    median, finding = fit(maps["r_squared"][myocardium], settings.qc_min_r_squared, f"{windows[-1]:g}-min window")
    quality.measured(codes.FIT_R2, median, codes.UNIT_NONE, decimals=3)
    quality.add(finding)
    for s, pool in zip(native, regions.blood_pool):
        if pool.any():
            quality.add(blood_t1(float(np.median(s.t1_ms[pool])), field, f"native map at {s.position_mm:.1f} mm"))


# parameters summarised per region in the report (R^2 only as a median)
REPORTED = ("ve", "vp", "ve_plus_vp", "ps", "fp", "mbf")


def _window_group(window: float, maps: dict[str, np.ndarray], pms: dict[str, object], regions: LvRegions,
                  seg, results: list, voxel: float, estimates: list) -> RegionGroup:
    """The LV myocardium's 2CXM parameters in one window: voxel statistics of the maps, the regional values
    with their 95 % intervals (or the bound where the data give only one), and whether each is identified."""
    myocardium = regions.masks()[..., 0] & np.stack([r.valid for r in results])
    ok = myocardium & (maps["failed"] == 0)
    failed_fraction = float((myocardium & ~ok).sum() / max(myocardium.sum(), 1))
    measures = []
    for name in (name for name in REPORTED if name in pms):     # a withheld map has no statistics
        quantity = QUANTITIES[name]
        measures += statistics(quantity.quantity, quantity.unit, maps[name][ok], source=pms[name])
    regional, identification = report_items(estimates)
    measures += regional
    r2 = QUANTITIES["r_squared"]
    measures += statistics(r2.quantity, r2.unit, maps["r_squared"][ok], source=pms["r_squared"])[2:]
    measures += [Measure(codes.FAILED_FIT_FRACTION, round(failed_fraction * 100, 2), codes.UNIT_PERCENT),
                 Measure(codes.PATIENT_MOTION, round(max(float(np.linalg.norm(r.shifts_mm, axis=1).max()) for r in results), 2),
                         codes.UNIT_MM), volume(int(myocardium.sum()), voxel)]
    return RegionGroup(f"LV myocardium, {window:g}-min window", codes.LV_MYOCARDIUM,
                       category=codes.ANATOMICAL_STRUCTURE, segment=(seg, 1), measures=measures,
                       evaluations=[segmentation_method(manual=False), fit_quality(failed_fraction)]
                       + identification)


def _lesion_groups(window: float, lesions: Lesions, estimates: dict[str, list[dict]], seg) -> list[RegionGroup]:
    """Remote myocardium, infarct and MVO in one window: the regional values with their 95 % intervals (or
    bounds) on the slices where each was fitted, and whether each is identified. No volume: the segments are
    the voxels fitted, not the lesions (the LGE module measures those)."""
    groups = []
    for k, name in enumerate(lesions.masks):
        fitted = [e for e in estimates.get(name, []) if e]
        if not fitted:
            continue
        segment = LESION_SEGMENTS[name]
        measures, identification = report_items(fitted)
        groups.append(RegionGroup(f"{segment.label}, {window:g}-min window", segment.property_type,
                                  category=segment.category, segment=(seg, MORE_SEGMENTS_FROM + k),
                                  measures=measures, evaluations=[segmentation_method(manual=False)] + identification))
    return groups


def _window_maps(window: float, n: int, key: str, maps: dict[str, np.ndarray], native: list[T1Slice],
                 used: list[T1Slice], identification: Identification, settings: ModuleSettings, output: ModuleOutput,
                 entry: dict) -> dict[str, object]:
    """The window's Parametric Maps, appended to the output and listed in entry: all of them, except that a
    parameter identified almost nowhere is withheld (or, when the site asks, labelled). Returns name -> map."""
    pms = {}
    for k, (name, quantity) in enumerate(QUANTITIES.items()):
        if name not in maps:
            continue
        label = quantity.lut_label
        if not identification.shown(name):
            if settings.ddce_unidentified_maps == "withhold":
                entry["withheld_maps"].append({"parameter": name, "reason": withheld_reason(identification, name)})
                continue
            label = f"{label} {NOT_IDENTIFIED_LABEL}"
        description = OUTPUT_SERIES["ddce.maps"].describe(window=window, label=label)
        series_uid = derived_uid(key, name, "series")
        pm = build_parametric_map(
            maps[name], [s.frame for s in native], quantity, series_uid=series_uid,
            sop_uid=derived_uid(key, name, "instance"), series_number=OUTPUT_SERIES["ddce.maps"].number(10 * n + k),
            series_description=description, content_label=f"DDCE{int(window)}",
            software_version=node.__version__, further_source_images=[s.frame for s in used])
        output.datasets.append(pm)
        pms[name] = pm
        entry["maps"].append({"parameter": name, "unit": quantity.unit.value, "series_instance_uid": series_uid,
                              "sop_instance_uid": str(pm.SOPInstanceUID), "identified": identification.shown(name)})
    return pms


def _aha(inp: ModuleInput, native: list[T1Slice], results: list, regions: LvRegions, quality: QualityControl,
         output: ModuleOutput) -> tuple[AhaSegments | None, object]:
    """The AHA segments of the native slices (the RV is bright on the relative R1 change to the registered
    mean post-contrast map), and their SEG; (None, None) where no slice has any."""
    bright = [relative_r1_change(s.t1_ms, r.mean_post_t1_ms) for s, r in zip(native, results)]
    aha = aha_segments(regions, bright, [s.frame for s in native], [s.pixel_mm for s in native])
    quality.regions(aha.flags)
    output.results["aha_segments"] = aha.as_dict()
    if not aha.present():
        return None, None
    seg = segments_seg(aha, [s.frame for s in native], inp.job_key, "ddce", OUTPUT_SERIES["ddce.segments"])
    output.datasets.append(seg)
    return aha, seg


# per segment, the regional intervals of what the delayed phase determines (ve, ve + vp); PS, Fp and vp are
# open-ended from a segment's few voxels in all but extreme tissue, and each profile costs about a second
SEGMENT_INTERVALS = ("ve", "ve_plus_vp")


def _segment_groups(window: float, aha: AhaSegments, seg, maps: dict[str, np.ndarray], pms: dict[str, object],
                    results: list, native: list[T1Slice], entry: dict) -> list[RegionGroup]:
    """One group per AHA segment in a window: voxel statistics of the maps sent, and the segment's regional ve
    and ve + vp with their 95 % intervals from the delayed maps (a bound where the data give only one, never a
    value that is not identified). The same in the window's results.json entry under "segments", per slice."""
    fitted = np.stack([r.valid for r in results]) & (maps["failed"] == 0)
    voxel = voxel_ml(native[0].frame)
    entry["segments"] = []

    def measures(number: int, mask: np.ndarray):
        ok = mask & fitted
        values = []
        for name in (name for name in REPORTED if name in pms):
            quantity = QUANTITIES[name]
            values += statistics(quantity.quantity, quantity.unit, maps[name][ok], source=pms[name])
        # a segment lies on one slice, or on two where four or more slices share three levels: the report then
        # says whether each slice identifies it, and results.json gives each slice's interval
        here = [(e, s) for e, s in zip(slice_estimates(results, mask, MIN_REGION_VOXELS, SEGMENT_INTERVALS), native)
                if e]
        regional, identification = report_items([e for e, _ in here])
        entry["segments"].append({"segment": number, "name": SEGMENT_NAMES[number], "fitted_voxels": int(ok.sum()),
                                  "slices": [results_entry(e, s.position_mm, f"AHA {number}") for e, s in here]})
        return values + regional + [volume(int(mask.sum()), voxel)], identification

    return segment_groups(aha, seg, measures, f", {window:g}-min window")


DELAYED_FIT_KEYS = ("fitted_voxels", "failed_voxels", "ve_vp_separable_fraction", "tissue_median",
                    "blood_pool_median")


def _joint_summary(summary: dict, joint: JointSlice) -> dict:
    """A slice's results.json entry where the joint fit made the maps: its medians over the voxels it fitted
    (the LV myocardium), and the delayed-only fit's under delayed_fit."""
    fitted = joint.assessed
    entry = {k: v for k, v in summary.items() if k not in DELAYED_FIT_KEYS}
    entry["delayed_fit"] = {k: summary[k] for k in DELAYED_FIT_KEYS}
    entry["fitted_voxels"] = int(fitted.sum())
    entry["tissue"] = "lv_myocardium"
    entry["tissue_median"] = {name: round(float(np.median(joint.maps[name][fitted])), 4) if fitted.any() else None
                              for name in QUANTITIES}
    return entry


def _first_pass(files: list[str], injection: datetime, native: list[T1Slice]) \
        -> tuple[list[FirstPassSlice], str | None, FirstPassSlice | None]:
    """The first-pass slice on every native slice, or ([], why not); and the arterial-input series' slice."""
    slices, problems = read_first_pass(files, injection)
    if not slices:
        return [], "; ".join(problems) if problems else "no first-pass perfusion series in the study", None
    tissue, arterial = split_arterial_input(slices)
    matched, reason = matching_slices(native, tissue)
    return matched, reason, arterial


def _joint(results: list, native: list[T1Slice], first_pass: list[FirstPassSlice], myocardium: np.ndarray,
           lesions: Lesions, settings: ModuleSettings, r1: float, field: float,
           arterial: FirstPassSlice | None) -> tuple[list[JointSlice], str | None]:
    """The window's joint fit per slice, or ([], why not) where the first pass cannot be used."""
    if not first_pass:
        return [], None
    try:
        return [joint_slice(r, base, fp, mask, hematocrit=settings.hematocrit, r1=r1, field_t=field,
                            aif_series=arterial, lesions={name: m[i] for name, m in lesions.masks.items()},
                            min_lesion_voxels=MIN_REGION_VOXELS)
                for i, (r, base, fp, mask) in enumerate(zip(results, native, first_pass, myocardium))], None
    except AnalysisError as exc:
        return [], f"first pass not fitted: {exc}"


def run(inp: ModuleInput) -> ModuleOutput:
    settings = inp.settings
    natives, posts, how = classify(group_by_series(read_t1_maps(inp.files)))
    native = natives[0]
    injection, injection_source = injection_time(posts, settings)
    r1, agent, field = relaxivity(posts, settings)
    timed = [((s.acquired - injection).total_seconds() / 60.0, s) for series in posts for s in series if s.acquired]
    timed = [(t, s) for t, s in timed if t > 0]
    windows = covered_windows(np.array([t for t, _ in timed]), settings.ddce_windows_minutes)
    output = ModuleOutput(results={
        "module": "ddce", "classified_by": how, "injection_time": injection.isoformat(),
        "injection_time_source": injection_source, "contrast_agent": agent, "field_strength_t": field,
        "r1_per_mM_s": r1, "hematocrit": settings.hematocrit, "tissue_density_g_per_ml": TISSUE_DENSITY_G_PER_ML,
        "last_map_min": round(max((t for t, _ in timed), default=0.0), 2), "windows": []})
    fitted = [fit_window(window, native, timed, settings, r1) for window in windows]
    # one set of regions for every window: the wall from the native map, the blood pool of the first window
    first = fitted[0][3] if fitted else []
    regions = lv_regions([s.t1_ms for s in native], [r.blood_pool for r in first],
                         [s.pixel_mm for s in native], [s.position_mm for s in native], [r.mean_post_t1_ms for r in first])
    quality = QualityControl()
    quality.regions(regions.flags)
    from_window = lesion_window(windows, settings)
    lesions = Lesions(reason="no window fitted") if from_window is None else find_lesions(
        fitted[from_window][3], windows[from_window], np.stack([s.t1_ms for s in native]), regions, r1, settings)
    output.results["lesion_regions"] = lesions.as_dict()
    seg = lv_segmentation(regions, [s.frame for s in native], inp, "ddce", OUTPUT_SERIES["ddce.regions"],
                          more=tuple((LESION_SEGMENTS[name], mask) for name, mask in lesions.masks.items())) \
        if fitted else None
    aha, aha_seg = _aha(inp, native, first, regions, quality, output) if fitted else (None, None)
    groups = []
    first_pass, first_pass_reason, arterial = _first_pass(inp.files, injection, native)
    output.results["first_pass"] = {"used": bool(first_pass), "reason": first_pass_reason}
    first_pass_uids = tuple(f.sop_instance_uid for fp in first_pass + ([arterial] if arterial else [])
                            for f in fp.pd_frames + fp.frames)
    for n, (window, (maps, slices, used, results)) in enumerate(zip(windows, fitted)):
        myocardium = regions.masks()[..., 0]
        joint, joint_reason = _joint(results, native, first_pass, myocardium, lesions, settings, r1, field, arterial)
        key = window_key(used, settings, r1, injection, first_pass_uids if joint else ())
        # region -> per slice ({} where it was not fitted)
        if joint:
            maps = {name: np.stack([j.maps[name] for j in joint]) for name in joint[0].maps}
            estimates = {region: [j.estimates.get(region, {}) for j in joint]
                         for region in ("lv_myocardium", *lesions.masks)}
            identification = Identification({name: np.stack([j.identified[name] for j in joint])
                                             for name in joint[0].identified}, np.stack([j.assessed for j in joint]))
        else:
            estimates = {"lv_myocardium": slice_estimates(results, myocardium),
                         **{name: slice_estimates(results, mask, MIN_REGION_VOXELS)
                            for name, mask in lesions.masks.items()}}
            identification = identify_voxels(results, myocardium)
        entry = {"window_min": window, "fit": "first pass + delayed maps" if joint else "delayed maps",
                 "slices": slices, "maps": [], "regions": [
                     results_entry(e, s.position_mm) for e, s in zip(estimates["lv_myocardium"], native)] + [
                     results_entry(e, s.position_mm, region) for region in lesions.masks
                     for e, s in zip(estimates[region], native) if e],
                 "identification": identification.as_dict(), "withheld_maps": []}
        if joint:
            entry["first_pass"] = [j.summary for j in joint]
            entry["slices"] = [_joint_summary(summary, j) for summary, j in zip(slices, joint)]
        elif joint_reason:
            entry["first_pass_not_used"] = joint_reason
        pms = _window_maps(window, n, key, maps, native, used, identification, settings, output, entry)
        if (identified := identification_segmentation(identification, [s.frame for s in native], key, window, n)):
            output.datasets.append(identified)
            entry["identification"]["seg_sop_instance_uid"] = str(identified.SOPInstanceUID)
        output.results["windows"].append(entry)
        groups.append(_window_group(window, maps, pms, regions, seg, results, voxel_ml(native[0].frame),
                                    estimates["lv_myocardium"]))
        groups += _lesion_groups(window, lesions, estimates, seg)
        if aha is not None:
            groups += _segment_groups(window, aha, aha_seg, maps, pms, results, native, entry)
    _check_quality(quality, settings, windows, fitted, native, regions, field, inp.final,
                   output.results["last_map_min"])
    output.results["quality_flags"] = quality.flags()
    sources = [s.dataset for s in native] + [s.dataset for _, s in timed]
    if not fitted and not inp.final:
        output.results["waiting_for"] = f"post-contrast maps up to {settings.ddce_windows_minutes[0]:g} min"
    elif not fitted:     # the study is complete: a report that says what is missing, for the PACS and the summary
        add_report(output, inp, "ddce", [quality.group(sources)], sources, "dDCE")
    if seg is not None:
        groups.append(quality.group(sources))
        output.datasets.append(seg)
        blood = np.stack(regions.blood_pool)
        groups.append(RegionGroup(
            "LV blood pool", codes.BLOOD, site=codes.LEFT_VENTRICLE, category=codes.TISSUE, segment=(seg, 2),
            measures=[Measure(codes.HEMATOCRIT, round(settings.hematocrit * 100, 1), codes.UNIT_PERCENT),
                      volume(int(blood.sum()), voxel_ml(native[0].frame))],
            evaluations=[segmentation_method(manual=False)]))
        add_report(output, inp, "ddce", groups, sources, "dDCE")
    return output
