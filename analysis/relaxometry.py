"""Voxel-wise relaxometry by variable projection, all voxels at once.

MOLLI: S(TI) = A - B exp(-TI / T1*), magnitude data with polarity restoration
(the samples before the signal minimum inverted, with or without the minimum
itself, lower residual wins; Nekolla et al., MRM 1992), Look-Locker correction T1 = T1* (B / A - 1) (Deichmann & Haase,
JMR 1992;96:608; Messroghli et al., MRM 2004;52:141).
T2 preparation: S(TE) = S0 exp(-TE / T2) (+ C), two- or three-parameter.

For a fixed time constant both models are linear in their amplitudes, so the
residual is ||y||^2 - ||Q^T y||^2 with Q an orthonormal basis of the model
columns: one matrix product scores every voxel on a log-spaced grid of time
constants, and a golden-section search refines each voxel's minimum.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0
MAX_RELATIVE_RESIDUAL = 0.1   # RMS residual / amplitude above which a fit is noise, not tissue (SNR < ~10)


def _basis(times: np.ndarray, tau: np.ndarray, offset: bool) -> np.ndarray:
    """Model columns (..., n, p): [1, -exp(-t/tau)] or [exp(-t/tau)] (+ [1])."""
    decay = np.exp(-times / tau[..., None])
    columns = [np.ones_like(decay), -decay] if offset else [decay]
    return np.stack(columns, axis=-1)


def _grid_search(y: np.ndarray, times: np.ndarray, grid: np.ndarray, offset: bool) -> np.ndarray:
    """Index of the best grid time constant per voxel, by projection residuals."""
    q = np.stack([np.linalg.qr(_basis(times, np.array(tau), offset))[0] for tau in grid])   # (G, n, p)
    projected = np.einsum("vn,gnp->vgp", y, q)
    return np.argmax(np.sum(projected ** 2, axis=2), axis=1)


def _amplitudes(y: np.ndarray, times: np.ndarray, tau: np.ndarray, offset: bool):
    """Least-squares amplitudes (v, p) and residual sum of squares (v,) for per-voxel tau."""
    x = _basis(times, tau, offset)                                       # (v, n, p)
    xtx = np.einsum("vnp,vnq->vpq", x, x) + 1e-12 * np.eye(x.shape[-1])
    coef = np.linalg.solve(xtx, np.einsum("vnp,vn->vp", x, y)[..., None])[..., 0]
    residual = y - np.einsum("vnp,vp->vn", x, coef)
    return coef, np.sum(residual ** 2, axis=1)


def _fit_tau(y, times, tau_range, offset, grid_points=64, iterations=20):
    """Per-voxel best time constant: grid search then golden-section refinement in log(tau)."""
    grid = np.geomspace(tau_range[0], tau_range[1], grid_points)
    best = _grid_search(y, times, grid, offset)
    low = np.log(grid[np.maximum(best - 1, 0)])
    high = np.log(grid[np.minimum(best + 1, grid_points - 1)])
    for _ in range(iterations):
        a = high - GOLDEN * (high - low)
        b = low + GOLDEN * (high - low)
        cost_a = _amplitudes(y, times, np.exp(a), offset)[1]
        cost_b = _amplitudes(y, times, np.exp(b), offset)[1]
        left = cost_a < cost_b
        high = np.where(left, b, high)
        low = np.where(left, low, a)
    tau = np.exp((low + high) / 2.0)
    coef, cost = _amplitudes(y, times, tau, offset)
    return tau, coef, cost


@dataclass
class MolliFit:
    t1_ms: np.ndarray          # Look-Locker corrected T1; 0 where failed
    t1_star_ms: np.ndarray     # apparent T1*
    a: np.ndarray
    b: np.ndarray
    residual: np.ndarray       # RMS residual / |A|
    inverted_points: np.ndarray   # how many of the earliest samples were restored to negative
    failed: np.ndarray


def fit_molli(ti_ms: np.ndarray, magnitude: np.ndarray, t1_range_ms=(50.0, 5000.0)) -> MolliFit:
    """Fit magnitude MOLLI samples (N, n) at inversion times ti_ms (n,) in ms."""
    order = np.argsort(ti_ms)
    ti = np.asarray(ti_ms, dtype=float)[order]
    y = np.abs(np.asarray(magnitude, dtype=float)[:, order])
    minimum = np.argmin(y, axis=1)
    position = np.arange(ti.size)[None, :]
    best = None
    for extra in (0, 1):   # the null crossing lies just before or just after the smallest sample
        inverted_count = np.minimum(minimum + extra, ti.size)
        signed = np.where(position < inverted_count[:, None], -y, y)
        tau, coef, cost = _fit_tau(signed, ti, (t1_range_ms[0] / 4, t1_range_ms[1]), offset=True)
        if best is None:
            best = [tau, coef, cost, inverted_count]
        else:
            better = cost < best[2]
            best[0] = np.where(better, tau, best[0])
            best[1] = np.where(better[:, None], coef, best[1])
            best[2] = np.where(better, cost, best[2])
            best[3] = np.where(better, inverted_count, best[3])
    t1_star, coef, cost, inverted = best
    a, b = coef[:, 0], coef[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = t1_star * (b / a - 1.0)
        residual = np.sqrt(cost / ti.size) / np.abs(a)
    failed = (~np.isfinite(t1) | (a <= 0) | (b <= a) | (t1 < t1_range_ms[0]) | (t1 > t1_range_ms[1])
              | ~(residual <= MAX_RELATIVE_RESIDUAL))
    return MolliFit(t1_ms=np.where(failed, 0.0, t1), t1_star_ms=np.where(failed, 0.0, t1_star), a=a, b=b,
                    residual=np.where(np.isfinite(residual), residual, 0.0), inverted_points=inverted,
                    failed=failed)


@dataclass
class T2Fit:
    t2_ms: np.ndarray          # 0 where failed
    s0: np.ndarray
    offset: np.ndarray         # C of the three-parameter model (0 otherwise)
    residual: np.ndarray       # RMS residual / S0
    failed: np.ndarray


def fit_t2(te_ms: np.ndarray, signal: np.ndarray, three_parameter: bool = False,
           saturation: np.ndarray | None = None, t2_range_ms=(5.0, 2000.0)) -> T2Fit:
    """Mono-exponential fit of T2-prepared signal (N, n) at preparation times te_ms (n,) in ms.

    three_parameter: also fit a constant C; saturation (N,): a saturation image, whose value is
    taken as C and subtracted (the usual T2-prep bSSFP offset correction) instead of fitting it."""
    te = np.asarray(te_ms, dtype=float)
    y = np.asarray(signal, dtype=float)
    fixed_offset = np.zeros(len(y)) if saturation is None else np.asarray(saturation, dtype=float)
    y = y - fixed_offset[:, None]
    if three_parameter and saturation is None:
        tau, coef, cost = _fit_tau(-y, te, t2_range_ms, offset=True)   # -y = -C + S0 exp(-t/T2)
        s0, offset = coef[:, 1], -coef[:, 0]
    else:
        tau, coef, cost = _fit_tau(y, te, t2_range_ms, offset=False)
        s0, offset = coef[:, 0], fixed_offset
    with np.errstate(divide="ignore", invalid="ignore"):
        residual = np.sqrt(cost / te.size) / np.abs(s0)
    failed = (~np.isfinite(tau) | (s0 <= 0) | (tau <= t2_range_ms[0] * 1.01) | (tau >= t2_range_ms[1] * 0.99)
              | ~(residual <= MAX_RELATIVE_RESIDUAL))
    return T2Fit(t2_ms=np.where(failed, 0.0, tau), s0=s0, offset=offset,
                 residual=np.where(np.isfinite(residual), residual, 0.0), failed=failed)
