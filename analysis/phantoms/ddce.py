"""Digital reference object for delayed-phase DCE: a canine reperfused-MI short-axis slice.

Ground truth per region (2CXM: ve, vp, Fp, PS), a blood AIF with first and
second pass (Parker et al., MRM 2006;56:993, population AIF) plus a slow renal
washout term, tissue curves by numerical convolution on a 0.001 min grid (so the
test does not reuse the analytic convolution of the fitter), T1 maps at the
acquisition times by fast-exchange relaxation R1 = R1_0 + r1 C, MOLLI-like
multiplicative T1 noise, and optional breath-hold shifts.
Infarct/remote values follow the canine study the issue cites (infarct ve 0.61
and PS 5.08 mL/g/min vs remote 0.13 and 0.42).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from analysis.ddce import TISSUE_DENSITY_G_PER_ML
from analysis.phantoms.short_axis import Region, SliceGeometry, short_axis_labels
from analysis.phantoms.t1_ecv import NATIVE_T1_MS

DEFAULT_TIMES_MIN = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 17, 20, 23, 26, 30)


def _per_gram(value_ml_per_g_min: float) -> float:
    """mL/min/g -> mL/min/mL tissue (1/min)."""
    return value_ml_per_g_min * TISSUE_DENSITY_G_PER_ML


# ve, vp, Fp (1/min), PS (1/min) per region
TRUE_PARAMETERS = {
    Region.REMOTE: dict(ve=0.13, vp=0.06, fp=_per_gram(0.6), ps=_per_gram(0.42)),
    Region.INFARCT: dict(ve=0.61, vp=0.05, fp=_per_gram(0.5), ps=_per_gram(5.08)),
    Region.MVO: dict(ve=0.40, vp=0.02, fp=_per_gram(0.03), ps=_per_gram(0.05)),
    Region.OTHER_TISSUE: dict(ve=0.20, vp=0.04, fp=_per_gram(0.2), ps=_per_gram(0.15)),
}


def blood_aif_mM(t_min: np.ndarray, dose_scale: float = 1.0) -> np.ndarray:
    """Whole-blood Gd concentration (mmol/L) after a 0.1 mmol/kg bolus at t = 0 (min)."""
    t = np.asarray(t_min, dtype=float)
    passes = sum(a / (s * np.sqrt(2 * np.pi)) * np.exp(-((t - mu) ** 2) / (2 * s * s))
                 for a, mu, s in ((0.809, 0.17046, 0.0563), (0.330, 0.365, 0.132)))
    washout = (0.70 * np.exp(-0.45 * t) + 0.45 * np.exp(-0.025 * t)) / (1.0 + np.exp(-38.078 * (t - 0.483)))
    return np.where(t >= 0, dose_scale * (passes + washout), 0.0)


def tissue_curve_numerical(times_min, ve, vp, fp, ps, plasma_aif, dt: float = 0.001) -> np.ndarray:
    """Ct at times_min by explicit integration of the 2CXM equations (Euler, dt in min)."""
    grid = np.arange(0.0, max(times_min) + dt, dt)
    ca = plasma_aif(grid)
    cp = ce = 0.0
    ct = np.empty(grid.size)
    for i, c_in in enumerate(ca):
        ct[i] = vp * cp + ve * ce
        dcp = (fp * (c_in - cp) - ps * (cp - ce)) / vp
        dce = ps * (cp - ce) / ve
        cp, ce = cp + dcp * dt, ce + dce * dt
    return np.interp(times_min, grid, ct)


@dataclass
class DdcePhantom:
    labels: np.ndarray                 # (rows, cols) Region values
    times_min: np.ndarray              # (T,) post-injection acquisition times
    t1_native_ms: np.ndarray           # (rows, cols)
    t1_post_ms: np.ndarray             # (T, rows, cols)
    hematocrit: float
    r1_per_mM_s: float
    pixel_mm: float
    shifts_px: np.ndarray              # (T + 1, 2) applied (row, col) shift of native + each post map
    truth: dict = field(default_factory=dict)   # region name -> dict(ve, vp, fp, ps)


def ddce_phantom(geometry: SliceGeometry = SliceGeometry(), times_min=DEFAULT_TIMES_MIN, hematocrit: float = 0.42,
                 r1_per_mM_s: float = 5.2, noise_fraction: float = 0.03, motion_px: float = 0.0,
                 parameters: dict | None = None, seed: int = 11, delay_s: float = 0.0,
                 dose_scale: float = 1.0) -> DdcePhantom:
    """delay_s: arterial delay from the LV blood pool to the myocardium (the tissue sees the AIF this late);
    dose_scale: the dose relative to 0.1 mmol/kg."""
    parameters = parameters or TRUE_PARAMETERS
    labels = short_axis_labels(geometry)
    times = np.asarray(times_min, dtype=float)
    def plasma(t):
        return blood_aif_mM(np.asarray(t, float) - delay_s / 60.0, dose_scale) / (1.0 - hematocrit)
    conc = np.zeros((times.size,) + labels.shape)
    blood = (labels == Region.LV_BLOOD) | (labels == Region.RV_BLOOD)
    conc[:, blood] = blood_aif_mM(times, dose_scale)[:, None]
    for region, p in parameters.items():
        curve = tissue_curve_numerical(times, p["ve"], p["vp"], p["fp"], p["ps"], plasma)
        conc[:, labels == region] = curve[:, None]
    native = np.zeros(labels.shape)
    for region, t1 in NATIVE_T1_MS.items():
        native[labels == region] = t1
    body = native > 0
    r1 = np.where(body, 1000.0 / np.where(body, native, 1.0), 0.0) + r1_per_mM_s * conc   # 1/s
    post = np.where(body, 1000.0 / np.where(r1 > 0, r1, 1.0), 0.0)
    rng = np.random.default_rng(seed)
    maps = np.concatenate([native[None], post])
    maps = np.where(maps > 0, maps * (1.0 + noise_fraction * rng.standard_normal(maps.shape)), 0.0)
    shifts = np.zeros((maps.shape[0], 2))
    if motion_px > 0:
        shifts[1:] = rng.uniform(-motion_px, motion_px, size=(maps.shape[0] - 1, 2))
        maps = np.stack([ndimage.shift(m, s, order=1, mode="constant") for m, s in zip(maps, shifts)])
    return DdcePhantom(labels=labels, times_min=times, t1_native_ms=maps[0], t1_post_ms=maps[1:],
                       hematocrit=hematocrit, r1_per_mM_s=r1_per_mM_s, pixel_mm=geometry.pixel_mm,
                       shifts_px=shifts, truth={r.name.lower(): dict(p) for r, p in parameters.items()})


def infarct_matching_blood_t1(target_min: float = 15.0, hematocrit: float = 0.42, r1_per_mM_s: float = 5.2) -> dict:
    """2CXM parameters (as TRUE_PARAMETERS) whose infarct T1 equals blood T1 at target_min: the case where
    standard LGE cannot tell a subendocardial infarct from the cavity. The infarct's ve is solved by bisection."""
    def plasma(t):
        return blood_aif_mM(t) / (1.0 - hematocrit)
    r1_blood = 1000.0 / NATIVE_T1_MS[Region.LV_BLOOD] + r1_per_mM_s * float(blood_aif_mM(np.array([target_min]))[0])
    wanted = (r1_blood - 1000.0 / NATIVE_T1_MS[Region.INFARCT]) / r1_per_mM_s      # infarct Ct (mmol/L)
    base = dict(TRUE_PARAMETERS[Region.INFARCT])
    low, high = 0.05, 0.95
    for _ in range(30):
        ve = 0.5 * (low + high)
        ct = tissue_curve_numerical(np.array([target_min]), ve, base["vp"], base["fp"], base["ps"], plasma, dt=0.002)
        low, high = (ve, high) if ct[0] < wanted else (low, ve)
    return {**TRUE_PARAMETERS, Region.INFARCT: dict(base, ve=0.5 * (low + high))}
