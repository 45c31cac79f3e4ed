"""MOLLI forward model: magnitude images at the inversion times of a Look-Locker scheme.

S(TI) = A - B exp(-TI / T1*), with the readout's apparent T1* = T1 / (B/A - 1)
(Deichmann & Haase, JMR 1992;96:608), Gaussian noise on the signed signal,
magnitude taken after. Inversion times in ms for a 5(3)3 scheme at RR 1000 ms.
"""
from __future__ import annotations

import numpy as np

SCHEME_5_3_3_MS = tuple([100.0 + k * 1000.0 for k in range(5)] + [180.0 + k * 1000.0 for k in range(3)])


def molli_images(t1_ms: np.ndarray, ti_ms=SCHEME_5_3_3_MS, amplitude: float = 1000.0, b_over_a: float = 1.9,
                 noise_fraction: float = 0.01, seed: int = 5) -> np.ndarray:
    """(n_TI, rows, cols) magnitude images of a T1 map (ms; 0 = air, noise only)."""
    t1 = np.asarray(t1_ms, dtype=float)
    tissue = t1 > 0
    t1_star = np.where(tissue, t1, 1.0) / (b_over_a - 1.0)
    ti = np.asarray(ti_ms, dtype=float)[:, None, None]
    signed = np.where(tissue, amplitude * (1.0 - b_over_a * np.exp(-ti / t1_star)), 0.0)
    rng = np.random.default_rng(seed)
    return np.abs(signed + noise_fraction * amplitude * rng.standard_normal(signed.shape))
