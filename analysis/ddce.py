"""Delayed-phase dynamic contrast-enhanced CMR (dDCE) of one slice: T1 maps -> 2CXM parameter maps.

Steps and their sources:
1. Breath-hold motion: every post-contrast map is aligned with the native map
   (analysis/registration.py); shifts are reported.
2. Concentration by fast-exchange relaxation, C = (R1 - R1_0) / r1
   (Donahue et al., MRM 1997;38:67), r1 from analysis/relaxivity.py.
3. AIF: median over the automatically found LV blood pool (analysis/blood_pool.py),
   plasma = blood / (1 - Hct), fitted with a bi-exponential that is
   extrapolated back to the injection (analysis/tcxm.py). The first pass is not
   sampled by delayed imaging and is not modelled.
4. 2CXM fit per voxel with the analytic convolution (analysis/ddce_fit.py).
5. Windows: the same fit on the maps taken up to each window's end (5 and 30
   min by default); the AIF is refitted on the window's own samples, as a
   shorter exam would have it.
Fp and PS are reported in mL/min/g using a myocardial density of 1.05 g/mL.
In well-perfused myocardium ve and vp are not separately identifiable from
delayed data; ve + vp is, and is reported beside them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.blood_pool import find_blood_pool
from analysis.ddce_fit import TcxmFit, fit_tcxm
from analysis.ddce_identification import identified_voxels
from analysis.ecv import MAX_T1_MS, MIN_T1_MS, relative_r1_change
from analysis.errors import AnalysisError
from analysis.registration import align
from analysis.tcxm import BiexpAif, fit_biexp_aif


TISSUE_DENSITY_G_PER_ML = 1.05   # myocardium (Vinnakota & Bassingthwaighte, AJP 2004;286:H1742)
WINDOW_JITTER_MIN = 0.5   # acquisition-timing slack: a window is reached, and a map is in it, within this


@dataclass
class WindowResult:
    window_min: float
    times_min: np.ndarray
    aif: BiexpAif
    fit: TcxmFit
    maps: dict[str, np.ndarray]     # name -> (rows, cols) float32, see MAP_UNITS


MAP_UNITS = {"ve": "fraction", "vp": "fraction", "ve_plus_vp": "fraction", "ps": "mL/min/g",
             "fp": "mL/min/g", "r_squared": "1"}


@dataclass
class DdceResult:
    shifts_mm: np.ndarray                  # (T, 2) applied (row, col) shift per post-contrast map
    blood_pool: np.ndarray                 # bool (rows, cols)
    valid: np.ndarray                      # bool: fitted voxels
    blood_plasma_mM: np.ndarray            # (T,) measured plasma concentration
    times_min: np.ndarray = field(default_factory=lambda: np.zeros(0))        # (T,) sorted acquisition times
    concentration_mM: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (T, rows, cols), registered
    concentration_sd_mM: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (T, rows, cols), expected noise
    hematocrit: float = 0.0
    windows: list[WindowResult] = field(default_factory=list)
    mean_post_t1_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))  # geometric mean of the registered maps


def _concentration_sd(t1_native_ms, t1_post_ms, r1_per_mM_s, t1_noise_fraction):
    """Expected SD (mmol/L) of each concentration sample from relative T1 noise (MOLLI: 2-4 %)."""
    r1_native = 1000.0 / np.where(t1_native_ms > 0, t1_native_ms, np.inf)
    r1_post = 1000.0 / np.where(t1_post_ms > 0, t1_post_ms, np.inf)
    return t1_noise_fraction * np.sqrt(r1_post ** 2 + r1_native[None] ** 2) / r1_per_mM_s


def _concentration(t1_native_ms, t1_post_ms, r1_per_mM_s):
    """C (mmol/L) per map, and the mask of voxels with usable T1 in every map."""
    valid = np.all((t1_post_ms > MIN_T1_MS) & (t1_post_ms < MAX_T1_MS), axis=0)
    valid &= (t1_native_ms > MIN_T1_MS) & (t1_native_ms < MAX_T1_MS)
    safe_native = np.where(valid, t1_native_ms, 1.0)
    safe_post = np.where(valid[None], t1_post_ms, 1.0)
    conc = (1000.0 / safe_post - 1000.0 / safe_native[None]) / r1_per_mM_s
    return np.where(valid[None], conc, 0.0), valid


def covered_windows(times_min: np.ndarray, windows_min) -> list[float]:
    """The windows the acquired maps reach (last map at or after the window's end, less the jitter)."""
    last = float(np.max(times_min)) if len(times_min) else 0.0
    return [float(w) for w in windows_min if last >= w - WINDOW_JITTER_MIN]


def analyse_slice(t1_native_ms: np.ndarray, t1_post_ms: np.ndarray, times_min: np.ndarray, *, hematocrit: float,
                  r1_per_mM_s: float, pixel_mm: float, windows_min=(5.0, 30.0), register: bool = True,
                  t1_noise_fraction: float = 0.03) -> DdceResult:
    """Native T1 (rows, cols) and post-contrast T1 maps (T, rows, cols) in ms at times_min after injection.

    t1_noise_fraction: relative SD of the T1 maps, which weights the fit."""
    times = np.asarray(times_min, dtype=float)
    order = np.argsort(times)
    times, post = times[order], np.asarray(t1_post_ms, dtype=float)[order]
    if np.any(times <= 0):
        raise AnalysisError("post-contrast maps must be acquired after the injection (times > 0)")
    shifts = np.zeros((len(times), 2))
    if register:
        post, shifts = align(t1_native_ms, post)
    conc, valid = _concentration(t1_native_ms, post, r1_per_mM_s)
    mean_post = np.exp(np.mean(np.log(np.where(post > 0, post, 1.0)), axis=0))
    blood_pool = find_blood_pool(relative_r1_change(t1_native_ms, mean_post), pixel_mm) & valid
    plasma = np.median(conc[:, blood_pool], axis=1) / (1.0 - hematocrit)
    result = DdceResult(shifts_mm=shifts * pixel_mm, blood_pool=blood_pool, valid=valid, blood_plasma_mM=plasma,
                        times_min=times, concentration_mM=conc, hematocrit=hematocrit,
                        concentration_sd_mM=_concentration_sd(t1_native_ms, post, r1_per_mM_s, t1_noise_fraction),
                        mean_post_t1_ms=mean_post)
    voxels = conc[:, valid].T                                   # (N, T)
    sd = result.concentration_sd_mM[:, valid].T
    for window in covered_windows(times, windows_min):
        use = times <= window + WINDOW_JITTER_MIN
        aif = fit_biexp_aif(times[use], plasma[use])
        fit = fit_tcxm(times[use], voxels[:, use], aif, sd[:, use])
        result.windows.append(WindowResult(window_min=window, times_min=times[use], aif=aif, fit=fit,
                                           maps=parameter_maps(fit, valid)))
    return result


def parameter_maps(fit: TcxmFit, valid: np.ndarray) -> dict[str, np.ndarray]:
    """The fit's maps on the image grid (MAP_UNITS, plus failed and ve_vp_separable as 0/1); 0 outside valid."""
    per_gram = 1.0 / TISSUE_DENSITY_G_PER_ML
    values = {"ve": fit.ve, "vp": fit.vp, "ve_plus_vp": fit.ve_plus_vp, "ps": fit.ps * per_gram,
              "fp": fit.fp * per_gram, "r_squared": np.clip(fit.r_squared, 0.0, 1.0)}
    maps = {}
    for name, v in values.items():
        image = np.zeros(valid.shape, dtype=np.float32)
        image[valid] = v
        maps[name] = image
    failed = np.zeros(valid.shape, dtype=bool)
    failed[valid] = fit.failed
    maps["failed"] = failed.astype(np.float32)
    separable = np.zeros(valid.shape, dtype=bool)
    separable[valid] = fit.ve_vp_separable
    maps["ve_vp_separable"] = separable.astype(np.float32)
    return maps


def region_inputs(result: DdceResult, window: WindowResult, mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """What a regional interval (analysis/ddce_uncertainty.py) is computed from, over the window's maps:
    (t_min, tissue mean, its standard error, blood-pool plasma median (the AIF samples analyse_slice
    fitted), its standard error), mmol/L. Standard errors from the spread over voxels: SD / sqrt(n) for the
    mean, 1.2533 SD / sqrt(n) for the median (its asymptotic efficiency for normal data)."""
    use = np.isin(result.times_min, window.times_min)
    conc = result.concentration_mM[use]
    tissue = conc[:, mask & result.valid]
    blood = conc[:, result.blood_pool] / (1.0 - result.hematocrit)
    if tissue.shape[1] < 2 or blood.shape[1] < 2:
        raise AnalysisError("a region or the blood pool has fewer than 2 voxels: no interval")
    return (result.times_min[use], tissue.mean(axis=1), tissue.std(axis=1, ddof=1) / np.sqrt(tissue.shape[1]),
            result.blood_plasma_mM[use], 1.2533 * blood.std(axis=1, ddof=1) / np.sqrt(blood.shape[1]))


def voxel_identification(result: DdceResult, window: WindowResult, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Per parameter map, a bool (rows, cols) map of the voxels in mask where the window's data identify it
    (analysis/ddce_identification.py); False outside mask and where the fit failed."""
    use = np.isin(result.times_min, window.times_min)
    voxels = mask & result.valid & (window.maps["failed"] == 0)
    found = identified_voxels(window.times_min, result.concentration_mM[use][:, voxels].T,
                              result.concentration_sd_mM[use][:, voxels].T, window.aif)
    maps = {}
    for name, flags in found.items():
        image = np.zeros(mask.shape, dtype=bool)
        image[voxels] = flags
        maps[name] = image
    return maps


def region_summary(result: DdceResult, masks: dict[str, np.ndarray]) -> list[dict]:
    """Per window and region: median of every map over the region's valid voxels."""
    rows = []
    for w in result.windows:
        for region, mask in masks.items():
            sel = mask & result.valid
            if not sel.any():
                continue
            ok = sel & (w.maps["failed"] == 0)
            row = {"window_min": w.window_min, "region": region, "voxels": int(sel.sum()),
                   "failed_voxels": int((sel & (w.maps["failed"] > 0)).sum()),
                   "ve_vp_separable_fraction": round(float(w.maps["ve_vp_separable"][sel].mean()), 3)}
            for name in MAP_UNITS:
                row[f"{name}_median"] = round(float(np.median(w.maps[name][ok])), 4) if ok.any() else None
            rows.append(row)
    return rows
