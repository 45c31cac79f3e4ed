"""dDCE with the first-pass perfusion series of the same injection: one 2CXM fit of both (analysis/ddce_joint.py).

Per window and slice, where a first-pass slice lies on the native T1 map's slice with the same matrix:
- the frames shifted onto the native T1 map (one translation for the series, from its frames after the
  bolus: analysis/registration.py works across contrasts by edges);
- concentration from the saturation-recovery frames (analysis/perfusion.py: proton-density frames, else the
  native T1 map, for the signal scale);
- one AIF: the first pass in the LV blood pool (less its edge), or in a dual-sequence protocol's own
  arterial-input series when the study has one, and the delayed maps' blood pool; a saturating AIF is refused;
- the LV myocardium's ve, vp, ve + vp, PS, Fp and MBF with 95 % intervals and the arterial delay; PS as a
  lower bound where the exchange is flow-limited; the same for remote myocardium, infarct and MVO where the
  synthetic LGE finds them (node/process/modules/ddce_lesions.py), each region with its own delay;
- per voxel of the LV myocardium, the joint fit at the region's delay (maps, MBF included; 0 outside the
  myocardium) and where each parameter is identified.
Where the series cannot be used (another slice or grid, no saturation delay, no baseline frames, a saturating
AIF) the reason is returned and the window is fitted from the delayed maps alone, as without a first pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from analysis.ddce import TISSUE_DENSITY_G_PER_ML, DdceResult, parameter_maps
from analysis.ddce_identification import MAP_PARAMETERS, identified_voxels
from analysis.ddce_joint import (JointCurves, JointRegion, fit_joint_voxels, joint_aif, mbf_ml_per_min_per_g,
                                 profile_joint_region)
from analysis.ddce_uncertainty import Estimate
from analysis.errors import AnalysisError
from analysis.geometry import same_slice
from analysis.perfusion import find_lv_blood_pool, first_pass_concentration
from analysis.registration import estimate_shift
from node.inputs.first_pass import FirstPassSlice
from node.inputs.t1_maps import T1Slice

MIN_FIRST_PASS_FRAMES = 20
MAX_GRID_OFFSET_MM = 10.0   # field of view origins further apart than this are another grid (registration
                            # corrects breath-hold shifts of a few mm; the origins of one grid are equal)


@dataclass
class JointSlice:
    maps: dict[str, np.ndarray]          # as analysis.ddce maps, plus "mbf" (mL/min/g)
    # region ("lv_myocardium", and ddce_lesions' where they are on this slice) -> ddce_regions.REGIONAL
    # names ("mbf" in 1/min of blood)
    estimates: dict[str, dict[str, Estimate]]
    identified: dict[str, np.ndarray]    # per map parameter, bool (rows, cols) over the myocardium
    assessed: np.ndarray                 # bool (rows, cols)
    summary: dict                        # for results.json


AIF_TS_RATIO = 0.5   # an arterial-input series (dual sequence) saturates for a much shorter time than the rest


def split_arterial_input(slices: list[FirstPassSlice]) -> tuple[list[FirstPassSlice], FirstPassSlice | None]:
    """(tissue slices, the arterial-input slice or None): a series of a dual-sequence protocol whose saturation
    delay is at most AIF_TS_RATIO of the longest is the arterial input (the shortest, where several are)."""
    longest = max(s.ts_ms or 0.0 for s in slices)
    short = [s for s in slices if (s.ts_ms or 0.0) <= AIF_TS_RATIO * longest]
    if not short or len(short) == len(slices):
        return slices, None
    return [s for s in slices if s not in short], min(short, key=lambda s: s.ts_ms or 0.0)


def matching_slices(native: list[T1Slice], first_pass: list[FirstPassSlice]) -> tuple[list[FirstPassSlice], str | None]:
    """The first-pass slice on each native slice, or why there is none for some."""
    found = []
    for base in native:
        match = next((f for f in first_pass if same_slice(f.position_mm, base.position_mm)), None)
        if match is None:
            return [], (f"no first-pass slice at {base.position_mm:.1f} mm (first pass at "
                        f"{', '.join(f'{f.position_mm:.1f}' for f in first_pass) or 'none'} mm)")
        first = match.frames[0]
        if match.shape != base.t1_ms.shape or not np.allclose(first.pixel_mm, base.frame.pixel_mm, rtol=1e-3) \
                or not np.allclose(first.orientation, base.frame.orientation, atol=0.01) \
                or np.linalg.norm(first.position - base.frame.position) > MAX_GRID_OFFSET_MM:
            return [], f"the first-pass slice at {base.position_mm:.1f} mm is not on the T1 map's pixel grid"
        if len(match.frames) < MIN_FIRST_PASS_FRAMES:
            return [], f"the first-pass slice at {base.position_mm:.1f} mm has {len(match.frames)} frames"
        found.append(match)
    return found, None


def _scaled(e: Estimate, factor: float) -> Estimate:
    def times(x):
        return None if x is None else x * factor
    return Estimate(times(e.value), (times(e.ci95[0]), times(e.ci95[1])), e.identified)


def arterial_input(result: DdceResult, conc, fp: FirstPassSlice, aif_series: FirstPassSlice | None, base: T1Slice,
                   r1: float, field_t: float) -> tuple[np.ndarray, np.ndarray, str]:
    """(t in min, blood concentration in mmol/L, where from): the arterial-input series' LV blood pool where
    there is one (found in its own frames; its blood T1 the T1 map's blood pool's), else this series'."""
    if aif_series is None:
        return fp.times_s / 60.0, conc.arterial_input(result.blood_pool), "LV blood pool of the first-pass series"
    frames = aif_series.signal()
    pool = find_lv_blood_pool(frames)
    blood_t1 = np.full(pool.shape, float(np.median(base.t1_ms[result.blood_pool])))
    aif_conc = first_pass_concentration(frames, pool, aif_series.ts_ms or 0.0, r1, t1_native_ms=blood_t1,
                                        pd_frames=aif_series.pd_signal(), flip_deg=aif_series.flip_deg,
                                        pd_flip_deg=aif_series.pd_flip_deg, field_strength_t=field_t)
    return (aif_series.times_s / 60.0, aif_conc.arterial_input(pool),
            f"arterial-input series {aif_series.series_uid} (saturation delay {aif_series.ts_ms:g} ms, "
            f"{aif_conc.scale_from})")


def _fit_region(conc, delayed: np.ndarray, t_fp: np.ndarray, times_min: np.ndarray, mask: np.ndarray, aif,
                hematocrit: float) -> tuple[JointRegion, dict[str, Estimate]]:
    """A region's joint fit of its mean curves, each sample weighted by its standard error over the region."""
    n = np.sqrt(mask.sum())
    curves = JointCurves(t_fp, conc.region(mask)[0], conc.c_mM[:, mask].std(axis=1, ddof=1) / n,
                         times_min, delayed[:, mask].mean(axis=1), delayed[:, mask].std(axis=1, ddof=1) / n)
    fitted = profile_joint_region(curves, aif)
    estimates = dict(fitted.estimates)
    estimates["mbf"] = _scaled(estimates["fp"], 1.0 / (1.0 - hematocrit))
    return fitted, estimates


def _region_summary(fitted: JointRegion) -> dict:
    return {"arterial_delay_s": round(fitted.delay_s, 2), "ps_flow_limited": fitted.flow_limited,
            "regional_chi_square": round(fitted.chi_square, 1), "regional_samples": fitted.samples,
            "regional_standard_errors_scaled_by": round(fitted.se_scale, 3)}


def joint_slice(result: DdceResult, base: T1Slice, fp: FirstPassSlice, myocardium: np.ndarray, *,
                hematocrit: float, r1: float, field_t: float, aif_series: FirstPassSlice | None = None,
                lesions: dict[str, np.ndarray] | None = None, min_lesion_voxels: int = 2) -> JointSlice:
    """The joint fit of one slice in one window (result holds that window only): the LV myocardium, and each
    lesion region (name -> (rows, cols) bool) with at least min_lesion_voxels voxels. Raises AnalysisError."""
    window = result.windows[0]
    signal, pd = fp.signal(), fp.pd_signal()
    # another breath-hold: the frames after the bolus (enhanced wall, bright cavity) aligned with the native map
    shift = estimate_shift(base.t1_ms, signal[-max(len(signal) // 3, 1):].mean(axis=0))
    signal = ndimage.shift(signal, (0.0, *shift), order=1)
    pd = ndimage.shift(pd, (0.0, *shift), order=1) if pd is not None else None
    conc = first_pass_concentration(signal, result.blood_pool, fp.ts_ms or 0.0, r1, t1_native_ms=base.t1_ms,
                                    pd_frames=pd, flip_deg=fp.flip_deg, pd_flip_deg=fp.pd_flip_deg,
                                    field_strength_t=field_t)
    t_fp = fp.times_s / 60.0
    use = np.isin(result.times_min, window.times_min)
    t_aif, blood, aif_from = arterial_input(result, conc, fp, aif_series, base, r1, field_t)
    aif = joint_aif(t_aif, blood / (1.0 - hematocrit), window.times_min, result.blood_plasma_mM[use])
    region = myocardium & result.valid
    if region.sum() < 2:
        raise AnalysisError("no LV myocardium on this slice: no joint regional fit")
    delayed = result.concentration_mM[use]
    fitted, myocardium_estimates = _fit_region(conc, delayed, t_fp, window.times_min, region, aif, hematocrit)
    estimates = {"lv_myocardium": myocardium_estimates}
    lesion_summary = {}
    for name, mask in (lesions or {}).items():
        if (mask & result.valid).sum() >= max(min_lesion_voxels, 2):
            lesion_fit, estimates[name] = _fit_region(conc, delayed, t_fp, window.times_min, mask & result.valid,
                                                      aif, hematocrit)
            lesion_summary[name] = _region_summary(lesion_fit)
    # per voxel, in the LV myocardium (where the model and the region's delay hold; 0 elsewhere, as a failed
    # fit): first-pass noise pooled over the myocardium's baseline frames and propagated frame by frame,
    # delayed noise as the delayed fit has it
    valid = region
    t_joint = np.concatenate([t_fp, window.times_min])
    ct = np.concatenate([conc.c_mM[:, valid], delayed[:, valid]]).T
    sd = np.concatenate([conc.noise_sd_mM(valid, region), result.concentration_sd_mM[use][:, valid]]).T
    fit = fit_joint_voxels(t_joint, ct, sd, aif, fitted.delay_s)
    maps = parameter_maps(fit, valid)
    maps["mbf"] = np.where(valid, mbf_ml_per_min_per_g(maps["fp"] * TISSUE_DENSITY_G_PER_ML, hematocrit),
                           0.0).astype(np.float32)
    assessed = valid & (maps["failed"] == 0)
    found = identified_voxels(t_joint - fitted.delay_s / 60.0, ct[assessed[valid]], sd[assessed[valid]], aif,
                              first_pass_sampled=True)
    identified = {}
    for name in MAP_PARAMETERS:
        image = np.zeros(valid.shape, dtype=bool)
        image[assessed] = found[name]
        identified[name] = image
    summary = {"series_instance_uid": fp.series_uid, "position_mm": round(fp.position_mm, 2),
               "shift_to_t1_map_mm": np.round(shift * np.asarray(base.frame.pixel_mm), 2).tolist(),
               "frames": len(fp.frames), "proton_density_frames": len(fp.pd_frames),
               "saturation_delay_ms": fp.ts_ms, "signal_scale_from": conc.scale_from,
               "baseline_frames": conc.baseline_frames, "arterial_input": aif_from, **_region_summary(fitted),
               "lesion_regions": lesion_summary}
    return JointSlice(maps=maps, estimates=estimates, identified=identified, assessed=assessed, summary=summary)
