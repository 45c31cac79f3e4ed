"""Native and post-contrast T1 maps of the short-axis phantom with a known ECV per region.

Post-contrast R1 follows the fast-exchange relation that ECV mapping itself
assumes: dR1_tissue = ECV / (1 - Hct) * dR1_blood (Messroghli et al., JCMR
2017;19:75). T1 noise is multiplicative Gaussian, as in MOLLI maps. With
supersample k, each pixel's R1 is the mean R1 of k x k points (partial volume
at every border, as a thin wall shows it); labels stay those at pixel centres.
psf_fwhm_mm blurs R1 with a Gaussian point spread function first, as a map
acquired at a lower resolution than it is shown at (or with residual motion).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from analysis.phantoms.short_axis import Region, SliceGeometry, short_axis_labels

# 1.5 T native T1 (ms) by region; air is 0 as in scanner maps.
NATIVE_T1_MS = {Region.AIR: 0.0, Region.OTHER_TISSUE: 800.0, Region.LV_BLOOD: 1550.0,
                Region.RV_BLOOD: 1550.0, Region.REMOTE: 1000.0, Region.INFARCT: 1180.0, Region.MVO: 1200.0,
                Region.FAT: 300.0, Region.NEIGHBOUR: 1000.0}
# True ECV (fraction) by tissue region; blood is 1 - Hct by definition. The neighbour has myocardium's native
# T1 and half its extracellular space (skeletal muscle): only the post-contrast map tells them apart.
TRUE_ECV = {Region.OTHER_TISSUE: 0.20, Region.REMOTE: 0.25, Region.INFARCT: 0.55, Region.MVO: 0.30,
            Region.FAT: 0.05, Region.NEIGHBOUR: 0.12}


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
                blood_t1_post_ms: float = 400.0, noise_fraction: float = 0.03, seed: int = 7,
                supersample: int = 1, psf_fwhm_mm: float = 0.0) -> EcvPhantom:
    labels = short_axis_labels(geometry)
    ecv = np.full(labels.shape, np.nan)
    for region, value in TRUE_ECV.items():
        ecv[labels == region] = value
    r1_pre, r1_post = _r1_maps(short_axis_labels(geometry, supersample), hematocrit, blood_t1_post_ms)
    sigma_points = psf_fwhm_mm / 2.3548 / geometry.pixel_mm * supersample
    t1_pre, t1_post = (_t1(_block_mean(_blurred(r1, sigma_points), supersample)) for r1 in (r1_pre, r1_post))

    rng = np.random.default_rng(seed)
    def noisy(t1):
        return np.where(t1 > 0, t1 * (1.0 + noise_fraction * rng.standard_normal(t1.shape)), 0.0)

    return EcvPhantom(labels=labels, t1_pre_ms=noisy(t1_pre), t1_post_ms=noisy(t1_post), ecv_truth=ecv,
                      hematocrit=hematocrit, pixel_mm=geometry.pixel_mm,
                      truth_by_region={r.name.lower(): v for r, v in TRUE_ECV.items()})


def _r1_maps(labels: np.ndarray, hematocrit: float, blood_t1_post_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """Native and post-contrast R1 (1/ms) of a label image; 0 in air."""
    r1_pre, r1_post = np.zeros(labels.shape), np.zeros(labels.shape)
    d_r1_blood = 1.0 / blood_t1_post_ms - 1.0 / NATIVE_T1_MS[Region.LV_BLOOD]     # 1/ms
    for region, t1 in NATIVE_T1_MS.items():
        where = labels == region
        if region in (Region.LV_BLOOD, Region.RV_BLOOD):
            r1_pre[where], r1_post[where] = 1.0 / t1, 1.0 / blood_t1_post_ms
        elif region in TRUE_ECV:
            r1_pre[where] = 1.0 / t1
            r1_post[where] = 1.0 / t1 + TRUE_ECV[region] / (1.0 - hematocrit) * d_r1_blood
    return r1_pre, r1_post


def _blurred(r1: np.ndarray, sigma_points: float) -> np.ndarray:
    """R1 blurred within the body; air stays 0 (a map's background is masked, not blurred in)."""
    if sigma_points <= 0:
        return r1
    body = (r1 > 0).astype(float)
    blurred = ndimage.gaussian_filter(r1, sigma_points) / np.maximum(ndimage.gaussian_filter(body, sigma_points), 1e-9)
    return np.where(body > 0, blurred, 0.0)


def _block_mean(image: np.ndarray, k: int) -> np.ndarray:
    n = image.shape[0] // k
    return image.reshape(n, k, n, k).mean(axis=(1, 3))


def _t1(r1: np.ndarray) -> np.ndarray:
    return np.divide(1.0, r1, out=np.zeros_like(r1), where=r1 > 0)
