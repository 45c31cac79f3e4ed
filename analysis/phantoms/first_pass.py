"""Digital reference object: the first-pass perfusion series of the dDCE phantom's injection.

The same slice, regions and 2CXM truth as analysis/phantoms/ddce.py, imaged once per heartbeat from before
the injection to about a minute after it with a saturation-recovery single-shot sequence. Signal by the
ideal saturation-recovery model S = k (1 - exp(-TS R1)) (Cernicanu & Axel, Acad Radiol 2006;13:686) with
k = M0 sin(alpha) times a smooth receive-coil sensitivity, optional proton-density frames without saturation
at a small flip angle first, Gaussian noise. Tissue concentration by the explicit integration of
analysis/phantoms/ddce.py (not the fitter's convolution), with an arterial delay from the LV blood pool.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from analysis.phantoms.ddce import TRUE_PARAMETERS, blood_aif_mM, tissue_curve_numerical
from analysis.phantoms.short_axis import Region, SliceGeometry, short_axis_labels
from analysis.phantoms.t1_ecv import NATIVE_T1_MS

RV_AHEAD_S = 4.0   # the RV's bolus peak before the LV's (pulmonary transit, a few seconds)
PROTON_DENSITY = {Region.AIR: 0.0, Region.OTHER_TISSUE: 0.75, Region.LV_BLOOD: 0.95, Region.RV_BLOOD: 0.95,
                  Region.REMOTE: 0.8, Region.INFARCT: 0.85, Region.MVO: 0.85}


@dataclass
class FirstPassPhantom:
    labels: np.ndarray          # (rows, cols) Region values
    times_s: np.ndarray         # (F,) s after injection, one frame per heartbeat
    frames: np.ndarray          # (F, rows, cols) saturation-recovery signal
    pd_frames: np.ndarray       # (P, rows, cols) proton-density signal (P may be 0)
    ts_ms: float                # saturation delay
    flip_deg: float
    pd_flip_deg: float
    concentration_mM: np.ndarray    # (F, rows, cols) the truth the frames were made from
    delay_s: float
    pixel_mm: float = 1.5
    truth: dict = field(default_factory=dict)


def first_pass_phantom(geometry: SliceGeometry = SliceGeometry(), rr_s: float = 0.9, start_s: float = -8.0,
                       frames: int = 60, ts_ms: float = 100.0, flip_deg: float = 12.0, pd_flip_deg: float = 5.0,
                       pd_count: int = 2, noise_fraction: float = 0.01, hematocrit: float = 0.42,
                       r1_per_mM_s: float = 5.2, delay_s: float = 2.0, parameters: dict | None = None,
                       seed: int = 21, shift_px: tuple[float, float] = (0.0, 0.0),
                       dose_scale: float = 1.0) -> FirstPassPhantom:
    """noise_fraction: noise SD as a fraction of a fully recovered voxel's signal (k for PD 1); shift_px: the
    heart's (row, col) position in this breath-hold relative to the T1 maps' (the labels stay the maps')."""
    parameters = parameters or TRUE_PARAMETERS
    labels = short_axis_labels(geometry)
    times_s = start_s + rr_s * np.arange(frames)
    t_min = times_s / 60.0

    def plasma(t):
        return blood_aif_mM(np.asarray(t, float) - delay_s / 60.0, dose_scale) / (1.0 - hematocrit)
    conc = np.zeros((frames,) + labels.shape)
    conc[:, labels == Region.LV_BLOOD] = blood_aif_mM(t_min, dose_scale)[:, None]
    # the bolus passes the right ventricle and the lungs before the left ventricle
    conc[:, labels == Region.RV_BLOOD] = blood_aif_mM(t_min + RV_AHEAD_S / 60.0, dose_scale)[:, None]
    for region, p in parameters.items():
        curve = tissue_curve_numerical(np.maximum(t_min, 0.0), p["ve"], p["vp"], p["fp"], p["ps"], plasma, dt=0.0002)
        conc[:, labels == region] = np.where(t_min > 0, curve, 0.0)[:, None]
    t1 = np.zeros(labels.shape)
    pd = np.zeros(labels.shape)
    for region in Region:
        t1[labels == region] = NATIVE_T1_MS.get(region, 0.0)
        pd[labels == region] = PROTON_DENSITY.get(region, 0.0)
    rows, cols = np.mgrid[0:labels.shape[0], 0:labels.shape[1]]
    coil = 1.0 + 0.4 * np.exp(-((rows - 0.2 * labels.shape[0]) ** 2 + (cols - 0.5 * labels.shape[1]) ** 2)
                              / (2 * (0.4 * labels.shape[0]) ** 2))     # a surface coil above the heart
    k = pd * coil * np.sin(np.radians(flip_deg))
    body = t1 > 0
    r1 = np.where(body, 1000.0 / np.where(body, t1, 1.0), 0.0)[None] + r1_per_mM_s * conc
    signal = np.where(body[None], k[None] * -np.expm1(-ts_ms / 1000.0 * r1), 0.0)
    rng = np.random.default_rng(seed)
    sd = noise_fraction * np.sin(np.radians(flip_deg))
    signal = signal + sd * rng.standard_normal(signal.shape)
    pd_signal = pd * coil * np.sin(np.radians(pd_flip_deg))
    pd_frames = np.stack([pd_signal + sd * rng.standard_normal(pd_signal.shape) for _ in range(pd_count)]) \
        if pd_count else np.zeros((0,) + labels.shape)
    if any(shift_px):
        signal = np.stack([ndimage.shift(f, shift_px, order=1) for f in signal])
        pd_frames = np.stack([ndimage.shift(f, shift_px, order=1) for f in pd_frames]) if pd_count else pd_frames
    return FirstPassPhantom(labels=labels, times_s=times_s, frames=signal, pd_frames=pd_frames, ts_ms=ts_ms,
                            flip_deg=flip_deg, pd_flip_deg=pd_flip_deg, concentration_mM=conc, delay_s=delay_s,
                            pixel_mm=geometry.pixel_mm,
                            truth={r.name.lower(): dict(p) for r, p in parameters.items()})
