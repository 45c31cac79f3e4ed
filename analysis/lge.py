"""Synthetic late gadolinium enhancement (LGE) from 5-minute dDCE parameters, and infarct quantification.

Synthesis (LGE_dDCE), per voxel, at the target time t (default 15 min):
1. Tissue concentration Ct(t) from the fitted 2CXM parameters by the analytic
   convolution with the bi-exponential AIF extrapolated beyond the 5-minute
   window (analysis/tcxm.py; Sourbron & Buckley, Phys Med Biol 2013).
2. The image shows interstitial gadolinium only: C_ees(t) = Ct(t) - vp Ca(t),
   with Ca the plasma AIF (exact when Fp >> PS; vp is small where it is not).
   Blood has no interstitium, so blood-pool voxels (native T1 above the
   blood-myocardium midpoint) get C_ees = 0 and keep their native T1. This is
   the separation of the plasma space (vp) from the extracellular space (ve)
   that lets the synthetic image delineate the blood pool from a
   subendocardial infarct; it is cmr-node's rendering choice, stated here and
   in README, not a measured blood signal. The blood concentration the AIF
   predicts at t, (1 - Hct) Ca(t), is reported beside it.
3. T1(t) by fast exchange, R1 = R1_0 + r1 C (Donahue et al., MRM 1997;38:67).
4. Inversion recovery with full recovery between inversions (TR >> T1):
   S = 1 - 2 exp(-TI/T1) (phase-sensitive, signed, PSIR-like; Kellman et al.,
   MRM 2002;47:372) and |S| (magnitude IR); TI = T1_remote ln 2 nulls remote
   myocardium.
LGE_standard applies steps 3-4 to a measured T1 map.

Quantification on the PSIR-like image, within the LV myocardium:
- remote reference: of 12 sectors of 30 degrees about the cavity, the one with
  the lowest median signal; noise = SD of the signal there (the stated region);
- infarct by n-SD (mean + n SD of the remote reference; n = 5 by default) or
  FWHM (half the maximum of the 3x3-median-filtered myocardial signal);
- MVO: myocardium enclosed by infarct and cavity but not enhanced (the
  hypo-enhanced core); counted in infarct size;
- transmurality: per 6-degree sector with infarct, the outermost infarcted
  voxel's radial position across the wall; the mean over those sectors;
- CNR = (mean infarct - mean blood) / noise, and infarct-to-remote likewise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from analysis.ddce import DdceResult
from analysis.errors import AnalysisError
from analysis.myocardium import wall_depth
from analysis.tcxm import tissue_concentration


LN2 = float(np.log(2.0))
REMOTE_SECTORS = 12
TRANSMURAL_SECTORS = 60
MIN_INFARCT_VOXELS = 3     # a smaller enhanced cluster is noise


def ir_signal(t1_ms: np.ndarray, ti_ms: float) -> np.ndarray:
    """Signed inversion-recovery signal (M0 = 1) at ti_ms; 0 where T1 is not positive."""
    t1 = np.asarray(t1_ms, dtype=float)
    return np.where(t1 > 0, 1.0 - 2.0 * np.exp(-ti_ms / np.where(t1 > 0, t1, 1.0)), 0.0)


def t1_from_concentration(t1_native_ms: np.ndarray, conc_mM: np.ndarray, r1_per_mM_s: float) -> np.ndarray:
    """T1 (ms) after adding conc (mmol/L) to tissue of native T1 (ms); 0 where native T1 is 0."""
    native = np.asarray(t1_native_ms, dtype=float)
    r1 = np.where(native > 0, 1000.0 / np.where(native > 0, native, 1.0), 0.0) + r1_per_mM_s * conc_mM
    return np.where(native > 0, 1000.0 / np.where(r1 > 0, r1, 1.0), 0.0)


def interstitial_concentration(fit, valid: np.ndarray, aif, target_min: float) -> np.ndarray:
    """C_ees (mmol/L) at target_min from a 2CXM fit over the valid voxels; 0 elsewhere and where the fit failed."""
    t = np.array([float(target_min)])
    ct = tissue_concentration(t, fit.fp, fit.ps, np.maximum(fit.vp, 1e-6), np.maximum(fit.ve, 1e-6), aif)[:, 0]
    ees = np.where(fit.failed, 0.0, np.maximum(ct - fit.vp * float(aif(t)[0]), 0.0))
    image = np.zeros(valid.shape)
    image[valid] = ees
    return image


def synthetic_t1(native_t1_ms: np.ndarray, results: list[DdceResult], myocardium: np.ndarray, blood_pool: np.ndarray,
                 r1_per_mM_s: float, target_min: float) -> np.ndarray:
    """T1 (ms) at target_min, (slices, rows, cols), from each slice's fit of its first window (steps 1-3
    above). Voxels with blood-like native T1 (above the midpoint of the blood pool's and the myocardium's
    medians) keep their native T1 (step 2)."""
    blood_t1, myo_t1 = float(np.median(native_t1_ms[blood_pool])), float(np.median(native_t1_ms[myocardium]))
    blood = native_t1_ms > 0.5 * (blood_t1 + myo_t1)
    ees = np.stack([interstitial_concentration(r.windows[0].fit, r.valid, r.windows[0].aif, target_min)
                    for r in results])
    return t1_from_concentration(native_t1_ms, np.where(blood, 0.0, ees), r1_per_mM_s)


@dataclass
class LgeSegmentation:
    infarct: np.ndarray        # bool, enhanced myocardium (MVO excluded)
    mvo: np.ndarray            # bool, hypo-enhanced core inside the infarct
    remote_reference: np.ndarray   # bool, the sector used for the threshold and the noise
    threshold: float


def _sector_index(shape, centre, sectors: int) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    angle = np.arctan2(centre[0] - yy, xx - centre[1]) % (2 * np.pi)
    return np.minimum((angle / (2 * np.pi) * sectors).astype(int), sectors - 1)


def _remote_reference(signal, myocardium, centre) -> np.ndarray:
    sectors = _sector_index(signal.shape, centre, REMOTE_SECTORS)
    best, best_median = None, np.inf
    for k in range(REMOTE_SECTORS):
        sel = myocardium & (sectors == k)
        if sel.sum() >= 10 and np.median(signal[sel]) < best_median:
            best, best_median = sel, float(np.median(signal[sel]))
    if best is None:
        raise AnalysisError("no myocardial sector large enough for a remote reference")
    return best


def segment_infarct(signal: np.ndarray, myocardium: np.ndarray, cavity: np.ndarray, method: str,
                    n_sd: float) -> LgeSegmentation:
    """Infarct and MVO on one slice of a PSIR-like image."""
    centre = np.argwhere(cavity).mean(axis=0) if cavity.any() else np.argwhere(myocardium).mean(axis=0)
    remote = _remote_reference(signal, myocardium, centre)
    mean, sd = float(signal[remote].mean()), float(signal[remote].std())
    nsd_threshold = mean + n_sd * sd
    if method == "fwhm":
        peak = float(ndimage.median_filter(np.where(myocardium, signal, -np.inf), size=3)[myocardium].max())
        threshold = 0.5 * peak if peak > nsd_threshold else np.inf   # no enhancement, no infarct
    elif method == "nsd":
        threshold = nsd_threshold
    else:
        raise ValueError(f"unknown infarct method {method!r} (nsd or fwhm)")
    enhanced = myocardium & (signal > threshold)
    labels, count = ndimage.label(enhanced)
    sizes = ndimage.sum(enhanced, labels, range(1, count + 1))
    infarct = np.isin(labels, 1 + np.flatnonzero(sizes >= MIN_INFARCT_VOXELS))
    enclosed = ndimage.binary_fill_holes(infarct | cavity) & ~(infarct | cavity) & myocardium
    return LgeSegmentation(infarct=infarct, mvo=enclosed if infarct.any() else np.zeros_like(infarct),
                           remote_reference=remote, threshold=float(threshold))


def transmural_extents(infarct: np.ndarray, myocardium: np.ndarray, cavity: np.ndarray) -> list[float]:
    """Radial extent (fraction of the wall) of the infarct in each 6-degree sector that has infarct."""
    if not infarct.any() or not cavity.any():
        return []
    depth = wall_depth(myocardium, cavity)
    sectors = _sector_index(infarct.shape, np.argwhere(cavity).mean(axis=0), TRANSMURAL_SECTORS)
    return [float(np.nanmax(depth[infarct & (sectors == k)]))
            for k in range(TRANSMURAL_SECTORS) if (infarct & (sectors == k)).any()]


def remote_null_ti(t1_ms: np.ndarray, myocardium: np.ndarray, infarct: np.ndarray | None = None) -> float:
    """TI (ms) that nulls remote myocardium: T1 ln 2, with remote T1 the median of the myocardium outside the
    infarct (before an infarct is known: of the longer-T1 half, as gadolinium shortens the infarct's T1)."""
    values = t1_ms[myocardium & (t1_ms > 0) & (~infarct if infarct is not None else True)]
    if infarct is None:
        values = values[values >= np.median(values)]
    return LN2 * float(np.median(values))


@dataclass
class LgeSlice:
    psir: np.ndarray           # signed IR signal, M0 = 1
    magnitude: np.ndarray
    segmentation: LgeSegmentation


def lge_slices(t1_stack: np.ndarray, myocardium: np.ndarray, cavity: np.ndarray, method: str,
               n_sd: float) -> tuple[list[LgeSlice], float]:
    """IR images of T1 maps (slices, rows, cols) at the TI nulling remote myocardium, segmented; (slices, TI)."""
    def render_and_segment(ti):
        out = []
        for t1, myo, cav in zip(t1_stack, myocardium, cavity):
            psir = ir_signal(t1, ti)
            out.append(LgeSlice(psir, np.abs(psir), segment_infarct(psir, myo, cav, method, n_sd)))
        return out
    ti = remote_null_ti(t1_stack, myocardium)
    slices = render_and_segment(ti)
    # once the infarct is known, null the remote myocardium proper and segment again
    infarcted = np.stack([s.segmentation.infarct | s.segmentation.mvo for s in slices])
    ti = remote_null_ti(t1_stack, myocardium, infarcted)
    return render_and_segment(ti), ti


def lge_metrics(slices: list[LgeSlice], myocardium: np.ndarray, cavity: np.ndarray, blood: np.ndarray) -> dict:
    """Infarct size, MVO (% of LV myocardium), transmurality (%), CNRs; pooled over slices."""
    infarct = np.stack([s.segmentation.infarct for s in slices])
    mvo = np.stack([s.segmentation.mvo for s in slices])
    psir = np.stack([s.psir for s in slices])
    remote = np.stack([s.segmentation.remote_reference for s in slices])
    myo_voxels = int(myocardium.sum())
    extents = [e for k in range(len(slices))
               for e in transmural_extents(infarct[k] | mvo[k], myocardium[k], cavity[k])]
    noise = float(psir[remote].std())
    result = {
        "myocardium_voxels": myo_voxels, "infarct_voxels": int((infarct | mvo).sum()), "mvo_voxels": int(mvo.sum()),
        "infarct_size_percent": 100.0 * (infarct | mvo).sum() / max(myo_voxels, 1),
        "mvo_percent": 100.0 * mvo.sum() / max(myo_voxels, 1),
        "transmurality_percent": 100.0 * float(np.mean(extents)) if extents else 0.0,
        "noise_sd": noise, "noise_region": "remote reference sector (lowest-signal 30-degree myocardial sector)",
        "signal_remote": float(psir[remote].mean()), "signal_blood": float(psir[blood].mean()) if blood.any() else None,
        "signal_infarct": float(psir[infarct].mean()) if infarct.any() else None,
        "cnr_infarct_blood": None, "cnr_infarct_remote": None}
    if infarct.any() and noise > 0:
        result["cnr_infarct_remote"] = abs(result["signal_infarct"] - result["signal_remote"]) / noise
        if blood.any():
            result["cnr_infarct_blood"] = abs(result["signal_infarct"] - result["signal_blood"]) / noise
    return result
