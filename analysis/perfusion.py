"""First-pass perfusion images (saturation recovery, one image per heartbeat) -> gadolinium concentration.

Signal model: ideal saturation recovery read at the saturation delay TS (the centre of k-space),
    S = k (1 - exp(-TS R1)),  k = M0 sin(alpha) times the receiver coil's sensitivity,
(Cernicanu & Axel, Acad Radiol 2006;13:686: theory-based signal calibration). Proton-density (PD) frames,
acquired without the saturation pulse at a small flip angle alpha_PD, give S_PD = M0 sin(alpha_PD) times the
same sensitivity (Kellman et al., JCMR 2017;19:43), so k = S_PD sin(alpha) / sin(alpha_PD).
k per voxel, in this order of preference (the results say which):
1. the PD frames and the two flip angles: k is measured, whatever T1;
2. the frames before the contrast arrives and the native T1 (the study's T1 map):
   k = S_baseline / (1 - exp(-TS / T1_0)). Blood's S_baseline / k is only TS/T1 ~ 0.06, and at the bolus
   peak 1 - S/k ~ 0.04 at TS 100 ms: a 0.2 % error of blood T1 (a 3 %-noise map's median over 300 voxels)
   is a 5 % error of the peak concentration. Measured on the phantom: the AIF peak 7 % low from the T1 map,
   1 % from PD frames; the plasma flow 17 % high. A short-TS AIF series (dual sequence) avoids it;
3. the frames before contrast and a native T1 assumed for the field strength (ASSUMED_NATIVE_T1_MS).
Then R1(t) = -ln(1 - S/k) / TS and C = (R1 - R1_0) / r1 (fast exchange, Donahue et al., MRM 1997;38:67).
Where S/k nears 1 (blood at the bolus peak: the signal saturates) R1 is ill-conditioned: S/k is clipped at
MAX_RECOVERY and the samples are counted as saturated. Units: TS and T1 in ms, R1 in 1/s, C in mmol/L.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import lgamma

import numpy as np

from scipy import ndimage

from analysis.errors import AnalysisError

MAX_RECOVERY = 0.98   # S/k above this is saturated: 1 % noise there is a 50 % error in 1 - S/k
# native T1 (ms) assumed when the study has no T1 map: myocardium and blood, MOLLI references
# (Kellman & Hansen, JCMR 2014;16:2: 1.5 T myocardium ~1000, blood ~1550; 3 T ~1200 and ~1850)
ASSUMED_NATIVE_T1_MS = {1.5: {"myocardium": 1000.0, "blood": 1550.0}, 3.0: {"myocardium": 1200.0, "blood": 1850.0}}
ONSET_FRACTION = 0.02   # contrast has arrived once the blood signal rose this fraction of its full rise
ONSET_MARGIN_FRAMES = 2


@dataclass(frozen=True)
class Concentration:
    c_mM: np.ndarray          # (F, rows, cols) concentration, mmol/L (0 outside the body)
    saturated: np.ndarray     # (F, rows, cols) bool: S/k was clipped
    scale_from: str           # "native T1 map", "proton-density frames" or "assumed native T1 ..."
    baseline_frames: int      # frames before the contrast arrived
    frames: np.ndarray        # (F, rows, cols) the signal
    scale: np.ndarray         # (rows, cols) k
    t1_native_ms: np.ndarray  # (rows, cols) the native T1 used
    ts_ms: float
    r1_per_mM_s: float

    def region(self, mask: np.ndarray) -> tuple[np.ndarray, int]:
        """A region's concentration curve (F,) in mmol/L from its mean signal and mean k, and its saturated
        frames. Averaging signal before the logarithm keeps the voxel noise from biasing the curve where S/k is
        near 1 (the blood pool at the bolus peak): S_i = k_i f(R1) for one R1 makes mean S / mean k = f(R1)."""
        if not mask.any():
            raise AnalysisError("an empty region has no first-pass curve")
        t1 = np.full((1, 1), float(np.median(self.t1_native_ms[mask])))
        scale = np.full((1, 1), float(self.scale[mask].mean()))
        c, saturated = concentration(self.frames[:, mask].mean(axis=1)[:, None, None], scale, t1, self.ts_ms,
                                     self.r1_per_mM_s)
        return c[:, 0, 0], int(saturated.sum())

    def arterial_input(self, blood_pool: np.ndarray) -> np.ndarray:
        """The blood concentration curve (F,) in mmol/L of the LV blood pool less its edge
        (arterial_input_mask). Raises AnalysisError where it saturates: clipped at MAX_RECOVERY, the peak would
        read low (about 7.4 mmol/L at TS 100 ms, blood T1 1550 ms, r1 5.2) and Fp high, with nothing to show."""
        curve, saturated = self.region(arterial_input_mask(blood_pool))
        if saturated:
            raise AnalysisError(f"the first-pass AIF saturates in {saturated} frames (S/k above {MAX_RECOVERY}): "
                                f"its peak is not measurable at a saturation delay of {self.ts_ms:g} ms")
        return curve

    def noise_sd_mM(self, mask: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Expected noise SD (F, n) of the concentration of mask's voxels, propagated from one signal noise SD
        pooled over reference's voxels (the median of their SDs over the baseline frames, a few frames each:
        per-voxel SDs from 2-7 frames would make the identification test's chi-square wrong voxel by voxel).
        dC = dS / (k TS (1 - S/k) r1), TS in s (the derivative of the inversion above)."""
        baseline = self.frames[:self.baseline_frames][:, reference]
        if baseline.shape[0] < 2 or baseline.shape[1] == 0:
            raise AnalysisError("fewer than 2 baseline frames or no reference voxels: no first-pass noise estimate")
        # median of sample SDs; the factor makes it unbiased for Gaussian noise at this frame count (c4)
        n = baseline.shape[0]
        c4 = np.sqrt(2.0 / (n - 1)) * np.exp(lgamma(n / 2.0) - lgamma((n - 1) / 2.0))
        sigma_signal = float(np.median(baseline.std(axis=0, ddof=1))) / c4
        k = self.scale[mask][np.newaxis]
        ratio = np.clip(self.frames[:, mask] / np.where(k > 0, k, 1.0), 0.0, MAX_RECOVERY)
        return sigma_signal / (np.where(k > 0, k, np.inf) * (self.ts_ms / 1000.0) * (1.0 - ratio) * self.r1_per_mM_s)


def baseline_frame_count(blood_signal: np.ndarray) -> int:
    """Frames before the contrast reaches the blood pool: those before the blood signal first rises
    ONSET_FRACTION of its full rise or 5 noise SDs (from successive differences of the first frames) above its
    first frames, less ONSET_MARGIN_FRAMES. Blood's pre-contrast signal is small (TS/T1 ~ 0.06), so one
    frame of early contrast in the baseline overstates k by several per cent and the peak concentration by
    a third."""
    s = np.asarray(blood_signal, float)
    start = float(np.mean(s[:3]))
    noise = float(np.median(np.abs(np.diff(s[:6])))) / (0.6745 * np.sqrt(2.0)) if s.size > 6 else 0.0
    threshold = start + max(ONSET_FRACTION * (float(np.max(s)) - start), 5.0 * noise)
    risen = np.flatnonzero(s > threshold)
    if risen.size == 0 or risen[0] - ONSET_MARGIN_FRAMES < 2:
        raise AnalysisError("the first-pass series has fewer than 2 frames before the contrast arrives in the "
                            "blood pool")
    return int(risen[0]) - ONSET_MARGIN_FRAMES


MIN_AIF_VOXELS = 20


def arterial_input_mask(blood_pool: np.ndarray) -> np.ndarray:
    """The blood pool less its edge voxel (where it is not smaller than MIN_AIF_VOXELS then): at the bolus peak
    an edge voxel holding some myocardium has S/k far from blood's, and 5 of 380 such voxels put the phantom's
    AIF peak 6 % off (1 % without them)."""
    core = ndimage.binary_erosion(blood_pool, iterations=1)
    return core if core.sum() >= MIN_AIF_VOXELS else blood_pool


def find_lv_blood_pool(frames: np.ndarray, min_voxels: int = MIN_AIF_VOXELS) -> np.ndarray:
    """The LV blood pool of a first-pass series on its own (an arterial-input series of a dual-sequence
    protocol, off the T1 maps' grid): of the connected regions whose signal rise is at least half the largest,
    the one whose mean curve peaks last (the bolus reaches the RV first, the LV after the lungs). Bool mask."""
    frames = np.asarray(frames, float)
    rise = frames.max(axis=0) - frames[:3].mean(axis=0)
    labels, count = ndimage.label(rise > 0.5 * rise.max())
    candidates = [labels == n for n in range(1, count + 1) if (labels == n).sum() >= min_voxels]
    if not candidates:
        raise AnalysisError("no blood pool in the arterial-input series: no region with a bolus")
    largest = sorted(candidates, key=lambda m: m.sum(), reverse=True)[:2]
    return max(largest, key=lambda m: int(np.argmax(frames[:, m].mean(axis=1))))


def signal_scale(baseline: np.ndarray, t1_native_ms: np.ndarray, ts_ms: float) -> np.ndarray:
    """k = S / (1 - exp(-TS / T1)) from pre-contrast signal (rows, cols) and native T1 (ms)."""
    t1 = np.where(t1_native_ms > 0, t1_native_ms, np.inf)
    recovered = -np.expm1(-ts_ms / t1)
    return np.where(recovered > 0, baseline / np.where(recovered > 0, recovered, 1.0), 0.0)


def concentration(frames: np.ndarray, scale: np.ndarray, t1_native_ms: np.ndarray, ts_ms: float,
                  r1_per_mM_s: float) -> tuple[np.ndarray, np.ndarray]:
    """C (F, rows, cols) in mmol/L from signal frames and the per-voxel scale k; and the saturated samples."""
    ratio = np.where(scale > 0, frames / np.where(scale > 0, scale, 1.0), 0.0)
    saturated = ratio > MAX_RECOVERY
    r1 = -np.log1p(-np.clip(ratio, 0.0, MAX_RECOVERY)) / (ts_ms / 1000.0)
    r1_native = np.where(t1_native_ms > 0, 1000.0 / np.where(t1_native_ms > 0, t1_native_ms, 1.0), 0.0)
    c = np.where(scale > 0, (r1 - r1_native) / r1_per_mM_s, 0.0)
    return c, saturated & (scale > 0)


def first_pass_concentration(frames: np.ndarray, blood_pool: np.ndarray, ts_ms: float, r1_per_mM_s: float, *,
                             t1_native_ms: np.ndarray | None = None, pd_frames: np.ndarray | None = None,
                             flip_deg: float | None = None, pd_flip_deg: float | None = None,
                             field_strength_t: float = 1.5, tissue: np.ndarray | None = None) -> Concentration:
    """Saturation-recovery frames (F, rows, cols) -> concentration, with k as the module docstring says.

    blood_pool: bool (rows, cols), where the onset is read; t1_native_ms: the study's native T1 on the same
    grid; pd_frames (P, rows, cols) with flip_deg and pd_flip_deg; tissue: bool mask of what is not blood
    (for the assumed native T1; default: everything else)."""
    frames = np.asarray(frames, float)
    if not blood_pool.any():
        raise AnalysisError("no LV blood pool in the first-pass series: no arterial input")
    n_base = baseline_frame_count(np.median(frames[:, blood_pool], axis=1))
    baseline = frames[:n_base].mean(axis=0)
    if pd_frames is not None and len(pd_frames) and flip_deg and pd_flip_deg:
        scale = np.asarray(pd_frames, float).mean(axis=0) * np.sin(np.radians(flip_deg)) / np.sin(np.radians(pd_flip_deg))
        # the native T1 follows from the baseline and k: 1 - S/k = exp(-TS/T1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = np.where((scale > 0) & (baseline > 0) & (baseline < scale),
                          -ts_ms / np.log1p(-baseline / np.where(scale > 0, scale, 1.0)), 0.0)
        source = "proton-density frames"
    elif t1_native_ms is not None:
        t1 = np.asarray(t1_native_ms, float)
        scale, source = signal_scale(baseline, t1, ts_ms), "native T1 map"
    else:
        assumed = ASSUMED_NATIVE_T1_MS[min(ASSUMED_NATIVE_T1_MS, key=lambda b: abs(b - field_strength_t))]
        others = ~blood_pool if tissue is None else tissue
        t1 = np.where(blood_pool, assumed["blood"], np.where(others, assumed["myocardium"], 0.0))
        scale = signal_scale(baseline, t1, ts_ms)
        source = (f"assumed native T1 {assumed['myocardium']:.0f} ms (tissue), {assumed['blood']:.0f} ms (blood): "
                  "no T1 map, no proton-density frames")
    c, saturated = concentration(frames, scale, t1, ts_ms, r1_per_mM_s)
    return Concentration(c_mM=c, saturated=saturated, scale_from=source, baseline_frames=n_base, frames=frames,
                         scale=scale, t1_native_ms=t1, ts_ms=ts_ms, r1_per_mM_s=r1_per_mM_s)
