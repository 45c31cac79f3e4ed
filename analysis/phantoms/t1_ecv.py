"""Native and post-contrast T1 maps of the short-axis phantom with a known ECV per region.

Post-contrast R1 follows the fast-exchange relation that ECV mapping itself
assumes: dR1_tissue = ECV / (1 - Hct) * dR1_blood (Messroghli et al., JCMR
2017;19:75). T1 noise is multiplicative Gaussian, as in MOLLI maps.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.phantoms.short_axis import Region, SliceGeometry, short_axis_labels

# 1.5 T native T1 (ms) by region; air is 0 as in scanner maps.
NATIVE_T1_MS = {Region.AIR: 0.0, Region.OTHER_TISSUE: 800.0, Region.LV_BLOOD: 1550.0,
                Region.RV_BLOOD: 1550.0, Region.REMOTE: 1000.0, Region.INFARCT: 1180.0, Region.MVO: 1200.0}
# True ECV (fraction) by tissue region; blood is 1 - Hct by definition.
TRUE_ECV = {Region.OTHER_TISSUE: 0.20, Region.REMOTE: 0.25, Region.INFARCT: 0.55, Region.MVO: 0.30}


@dataclass
class EcvPhantom:
    labels: np.ndarray            # (rows, cols) uint8 Region values
    t1_pre_ms: np.ndarray         # (rows, cols) float
    t1_post_ms: np.ndarray        # (rows, cols) float
    ecv_truth: np.ndarray         # (rows, cols) fraction, NaN in blood and air
    hematocrit: float
    pixel_mm: float
    truth_by_region: dict = field(default_factory=dict)


def ecv_phantom(geometry: SliceGeometry = SliceGeometry(), hematocrit: float = 0.42,
                blood_t1_post_ms: float = 400.0, noise_fraction: float = 0.03, seed: int = 7) -> EcvPhantom:
    labels = short_axis_labels(geometry)
    t1_pre = np.zeros(labels.shape)
    ecv = np.full(labels.shape, np.nan)
    for region, t1 in NATIVE_T1_MS.items():
        t1_pre[labels == region] = t1
    for region, value in TRUE_ECV.items():
        ecv[labels == region] = value
    d_r1_blood = 1.0 / blood_t1_post_ms - 1.0 / NATIVE_T1_MS[Region.LV_BLOOD]     # 1/ms
    r1_post = np.zeros(labels.shape)
    tissue = ~np.isnan(ecv)
    r1_post[tissue] = 1.0 / t1_pre[tissue] + ecv[tissue] / (1.0 - hematocrit) * d_r1_blood
    blood = (labels == Region.LV_BLOOD) | (labels == Region.RV_BLOOD)
    r1_post[blood] = 1.0 / blood_t1_post_ms
    t1_post = np.divide(1.0, r1_post, out=np.zeros_like(r1_post), where=r1_post > 0)

    rng = np.random.default_rng(seed)
    def noisy(t1):
        return np.where(t1 > 0, t1 * (1.0 + noise_fraction * rng.standard_normal(t1.shape)), 0.0)

    return EcvPhantom(labels=labels, t1_pre_ms=noisy(t1_pre), t1_post_ms=noisy(t1_post), ecv_truth=ecv,
                      hematocrit=hematocrit, pixel_mm=geometry.pixel_mm,
                      truth_by_region={r.name.lower(): v for r, v in TRUE_ECV.items()})
