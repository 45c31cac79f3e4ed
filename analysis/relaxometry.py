"""Voxel-wise relaxometry by variable projection, all voxels at once.

Inversion recovery (MOLLI, ShMOLLI, Look-Locker): S(TI) = A - B exp(-TI / T1*) on magnitude data. The
sign the magnitude lost is restored by trying every count of leading (shortest-TI) samples turned
negative, so interleaved schemes whose inversion times cluster near the null crossing (Philips MOLLI:
231, 350, 1124, 1159 ms ...) are restored too; among the counts whose fit is physical (A > 0, A < B < 4A)
the lowest residual wins (Nekolla et al., MRM 1992;27:137; the B/A bound as in Piechnik et al., JCMR
2010;12:69). Where the samples come from a continuous readout after each inversion, the Look-Locker
correction T1 = T1* (B / A - 1) applies (Deichmann & Haase, JMR 1992;96:608; Messroghli et al., MRM
2004;52:141); with one image per inversion and full recovery, T1 = T1*.
ShMOLLI (5(1)1(1)1) selects samples conditionally (Piechnik et al., JCMR 2010;12:69, as implemented in
MRKonrad/tomato lib/OxCalculatorT1Shmolli.hxx): the first inversion's 5 samples, plus the 6th and 7th only
where T1 is short against the heartbeat interval and the fit residual allows it.
A voxel fails where its fit is not physical or does not determine T1: standard error of T1 (from the
fit's covariance, residual variance with n - 3 degrees of freedom) above MAX_RELATIVE_SE of T1, or a
recovered amplitude A below NOISE_FLOOR_SNR times the noise SD of the slice (the median of the voxels'
residual SDs): background and air, where any curve fits noise.
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
MAX_RELATIVE_RESIDUAL = 0.1   # T2: RMS residual / amplitude above which a fit is noise, not tissue (SNR < ~10)
MAX_RELATIVE_SE = 0.5         # T1: standard error above half of T1 means the fit did not determine it
NOISE_FLOOR_SNR = 4.0         # T1: A below this many noise SDs of the slice is background, not tissue
MAX_B_OVER_A = 4.0            # inversion efficiency and readout perturbation never give more
CHUNK_VOXELS = 16384          # voxels per batch: bounds the (voxels x grid) score matrix to ~20 MB


def _basis(times: np.ndarray, tau: np.ndarray, offset: bool) -> np.ndarray:
    """Model columns (..., n, p): [1, -exp(-t/tau)] or [exp(-t/tau)] (+ [1])."""
    decay = np.exp(-times / tau[..., None])
    columns = [np.ones_like(decay), -decay] if offset else [decay]
    return np.stack(columns, axis=-1)


def _grid_scores(y: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Projected energy ||Q_g^T y||^2 of every voxel on every grid basis (v, G), as one matrix product."""
    g, n, p = q.shape
    squared = (y @ q.transpose(1, 0, 2).reshape(n, g * p)) ** 2   # column g * p + j: basis g, column j
    return sum(squared[:, j::p] for j in range(p))


def _grid_search(y: np.ndarray, times: np.ndarray, grid: np.ndarray, offset: bool) -> np.ndarray:
    """Index of the best grid time constant per voxel, by projection residuals."""
    q = np.stack([np.linalg.qr(_basis(times, np.array(tau), offset))[0] for tau in grid])   # (G, n, p)
    return np.argmax(_grid_scores(y, q), axis=1)


def _amplitudes(y: np.ndarray, times: np.ndarray, tau: np.ndarray, offset: bool):
    """Least-squares amplitudes (v, p) and residual sum of squares (v,) for per-voxel tau, in closed form:
    [A, B] of A - B exp(-t/tau) (offset) or [S0] of S0 exp(-t/tau)."""
    decay = np.exp(-times[None] / tau[:, None])
    s_e, s_ee, s_ey = decay.sum(axis=1), (decay * decay).sum(axis=1), (decay * y).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if offset:
            s_y, n = y.sum(axis=1), times.size
            det = n * s_ee - s_e ** 2
            a = (s_y * s_ee - s_e * s_ey) / det
            b = (s_e * s_y - n * s_ey) / det
            coef = np.stack([a, b], axis=1)
            residual = y - a[:, None] + b[:, None] * decay
        else:
            s0 = s_ey / s_ee
            coef = s0[:, None]
            residual = y - s0[:, None] * decay
    return coef, np.sum(residual ** 2, axis=1)


def _golden_section(y, times, low, high, offset, iterations=16):
    """Per-voxel minimum of the projection residual over log(tau) in [low, high]."""
    for _ in range(iterations):
        a = high - GOLDEN * (high - low)
        b = low + GOLDEN * (high - low)
        left = _amplitudes(y, times, np.exp(a), offset)[1] < _amplitudes(y, times, np.exp(b), offset)[1]
        high = np.where(left, b, high)
        low = np.where(left, low, a)
    return np.exp((low + high) / 2.0)


def _fit_tau(y, times, tau_range, offset, grid_points=64, iterations=16):
    """Per-voxel best time constant: grid search then golden-section refinement in log(tau)."""
    grid = np.geomspace(tau_range[0], tau_range[1], grid_points)
    best = _grid_search(y, times, grid, offset)
    low = np.log(grid[np.maximum(best - 1, 0)])
    high = np.log(grid[np.minimum(best + 1, grid_points - 1)])
    tau = _golden_section(y, times, low, high, offset, iterations)
    coef, cost = _amplitudes(y, times, tau, offset)
    return tau, coef, cost


@dataclass
class MolliFit:
    t1_ms: np.ndarray          # T1 (Look-Locker corrected where that applies); 0 where failed
    t1_star_ms: np.ndarray     # apparent T1*
    a: np.ndarray
    b: np.ndarray
    residual: np.ndarray       # RMS residual / |A|, kept for quality control
    t1_se_ms: np.ndarray       # standard error of T1 from the fit's covariance (inf where undetermined)
    inverted_points: np.ndarray   # how many of the earliest samples were restored to negative
    samples_used: np.ndarray   # samples the T1 comes from (ShMOLLI: 5, 6 or 7)
    failed: np.ndarray


def _ir_fit_chunk(ti, y, grid, min_inverted):
    """Best (inverted count, T1*, A, B, SSE) per voxel over every count of leading samples made negative."""
    n = ti.size
    q = np.stack([np.linalg.qr(_basis(ti, np.array(tau), True))[0] for tau in grid])    # (G, n, 2)
    norm = np.sum(y ** 2, axis=1)
    best_cost = np.full(len(y), np.inf)
    best_k = np.full(len(y), min_inverted)
    best_g = np.zeros(len(y), dtype=int)
    for k in range(min_inverted, n + 1):
        signed = np.where(np.arange(n)[None] < k, -y, y)
        scores = _grid_scores(signed, q)
        g = np.argmax(scores, axis=1)
        cost = norm - scores[np.arange(len(y)), g]
        coef, _ = _amplitudes(signed, ti, grid[g], True)
        a, b = coef[:, 0], coef[:, 1]
        physical = (a > 0) & (b > a) & (b < MAX_B_OVER_A * a)
        # a physical fit beats any unphysical one; among equals the residual decides
        cost = np.where(physical, cost, cost + norm + 1.0)
        better = cost < best_cost
        best_cost = np.where(better, cost, best_cost)
        best_k = np.where(better, k, best_k)
        best_g = np.where(better, g, best_g)
    signed = np.where(np.arange(n)[None] < best_k[:, None], -y, y)
    low = np.log(grid[np.maximum(best_g - 1, 0)])
    high = np.log(grid[np.minimum(best_g + 1, grid.size - 1)])
    t1_star = _golden_section(signed, ti, low, high, True)
    coef, sse = _amplitudes(signed, ti, t1_star, True)
    return best_k, t1_star, coef[:, 0], coef[:, 1], sse


def _t1_standard_error(ti, a, b, t1_star, sse, look_locker):
    """Standard error of T1 from the covariance sigma^2 (J^T J)^-1 of (A, B, T1*), sigma^2 = SSE / (n - 3)."""
    n = ti.size
    decay = np.exp(-ti[None] / t1_star[:, None])
    jac = np.stack([np.ones_like(decay), -decay, -b[:, None] * ti[None] / t1_star[:, None] ** 2 * decay], axis=-1)
    jtj = np.einsum("vni,vnj->vij", jac, jac)
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = np.linalg.pinv(jtj) * (sse / max(n - 3, 1))[:, None, None]
        grad = (np.stack([-t1_star * b / a ** 2, t1_star / a, b / a - 1.0], axis=-1) if look_locker
                else np.stack([np.zeros_like(a), np.zeros_like(a), np.ones_like(a)], axis=-1))
        variance = np.einsum("vi,vij,vj->v", grad, cov, grad)
    return np.sqrt(np.where(np.isfinite(variance) & (variance >= 0), variance, np.inf))


def fit_inversion_recovery(ti_ms: np.ndarray, magnitude: np.ndarray, t1_range_ms=(50.0, 5000.0),
                           look_locker: bool = True, min_inverted: int = 0) -> MolliFit:
    """Fit magnitude inversion-recovery samples (N, n) at inversion times ti_ms (n,) in ms.

    look_locker: samples from a continuous readout after each inversion (MOLLI, ShMOLLI, Look-Locker), so
    T1 = T1* (B/A - 1); otherwise T1 = T1*. min_inverted: samples that are certainly before the null."""
    order = np.argsort(ti_ms)
    ti = np.asarray(ti_ms, dtype=float)[order]
    y = np.abs(np.asarray(magnitude, dtype=float)[:, order])
    grid = np.geomspace(t1_range_ms[0] / MAX_B_OVER_A, t1_range_ms[1], 64)
    parts = [_ir_fit_chunk(ti, y[i:i + CHUNK_VOXELS], grid, min_inverted) for i in range(0, len(y), CHUNK_VOXELS)]
    inverted, t1_star, a, b, sse = (np.concatenate(p) for p in zip(*parts)) if parts else (np.zeros(0),) * 5
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = t1_star * (b / a - 1.0) if look_locker else t1_star
        residual = np.sqrt(sse / ti.size) / np.abs(a)
        se = _t1_standard_error(ti, a, b, t1_star, sse, look_locker)
        noise_sd = np.median(np.sqrt(sse / max(ti.size - 3, 1))) if len(sse) else 0.0
        failed = (~np.isfinite(t1) | (a <= 0) | (b <= a) | (b >= MAX_B_OVER_A * a) | (t1 < t1_range_ms[0])
                  | (t1 > t1_range_ms[1]) | ~(se <= MAX_RELATIVE_SE * t1) | (a < NOISE_FLOOR_SNR * noise_sd))
    return MolliFit(t1_ms=np.where(failed, 0.0, t1), t1_star_ms=np.where(failed, 0.0, t1_star), a=a, b=b,
                    residual=np.where(np.isfinite(residual), residual, 0.0), t1_se_ms=se,
                    inverted_points=inverted.astype(int), samples_used=np.full(len(y), ti.size), failed=failed)


fit_molli = fit_inversion_recovery


def fit_shmolli(ti_ms: np.ndarray, magnitude: np.ndarray, first_inversion: np.ndarray,
                t1_range_ms=(50.0, 5000.0)) -> MolliFit:
    """ShMOLLI 5(1)1(1)1: 7 samples (N, 7) at ti_ms; first_inversion: bool (7,), the 5 samples of the first
    inversion. The second inversion's sample joins where T1 is short, the third's where it is shorter still
    (Piechnik et al. 2010; thresholds as in tomato lib/OxCalculatorT1Shmolli.hxx, which matches the scanner)."""
    ti = np.asarray(ti_ms, dtype=float)
    first = np.asarray(first_inversion, dtype=bool)
    if ti.size != 7 or first.sum() != 5:
        raise ValueError("ShMOLLI needs 7 samples, 5 of them from the first inversion")
    later = np.flatnonzero(~first)
    second = later[np.argmin(ti[later])]
    subsets = {5: first, 6: first | (np.arange(7) == second), 7: np.ones(7, dtype=bool)}
    # heartbeat interval: mean spacing of the first inversion's samples
    trr = float(np.mean(np.diff(np.sort(ti[first]))))
    fits = {n: fit_inversion_recovery(ti[mask], np.asarray(magnitude)[:, mask], t1_range_ms,
                                      min_inverted=1 if n == 5 else 0) for n, mask in subsets.items()}
    with np.errstate(all="ignore"):
        t1 = {n: fits[n].t1_star_ms * (fits[n].b / fits[n].a - 1.0) for n in fits}
        sse = {n: (fits[n].residual * np.abs(fits[n].a)) ** 2 * n for n in fits}
        chi = {n: np.sqrt(sse[n] / (n - 1)) for n in fits}
        # "converged" in the selection means a physical fit; whether T1 is determined is judged after
        converged = {n: (fits[n].a > 0) & (fits[n].b > fits[n].a) & (fits[n].t1_star_ms > 0) for n in fits}
        use = np.where(converged[5], 5, 0)
        t1_now = np.where(converged[5], t1[5], 0.0)
        chi_ref = np.where(converged[5], chi[5], sse[5])
        short = (t1_now <= trr) | ~converged[6] | (t1[6] <= 0.4 * trr)
        six = short & converged[6] & (chi[6] * t1[6] < chi_ref * trr)
        use = np.where(six, 6, use)
        t1_now = np.where(six, t1[6], t1_now)
        seven = short & converged[7] & (chi[7] * t1[7] < chi[6] * trr * 0.4) & (t1_now < trr)
        use = np.where(seven, 7, use)
    chosen = {name: np.select([use == n for n in fits], [getattr(fits[n], name) for n in fits],
                              default=getattr(fits[5], name))
              for name in ("t1_ms", "t1_star_ms", "a", "b", "residual", "t1_se_ms", "inverted_points", "failed")}
    chosen["failed"] = chosen["failed"] | (use == 0)
    for name in ("t1_ms", "t1_star_ms"):
        chosen[name] = np.where(chosen["failed"], 0.0, chosen[name])
    return MolliFit(**chosen, samples_used=use)


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
