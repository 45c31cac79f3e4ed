"""Voxel-wise 2CXM fit of delayed-phase tissue concentration curves, all voxels at once.

A batched Levenberg-Marquardt (Marquardt, J SIAM 1963;11:431) runs on every
voxel simultaneously: residuals (N, T), forward-difference Jacobians (N, T, 4)
and 4x4 normal equations solved with one batched numpy call per iteration.
No Python loop over voxels.

Modelling choices:
- Parameters are fitted as v = ve + vp, f = vp / v, Fp and PS. v is what
  delayed data determine best; f (the split) is often not identifiable.
- Bounds by a smooth map from unconstrained variables: v in [0.02, 1],
  f in [0.005, 0.95], Fp in [0.02, 10] /min and PS in [0.005, 20] /min (log-scaled).
- Residuals are weighted by the concentration noise expected from the T1 noise
  (sigma per sample, given by the caller), so the fit is a weighted least squares.
- Weak physiological priors, added as extra residual terms (a maximum a
  posteriori fit): vp ~ N(0.06, 0.03) (myocardial blood volume about 0.1 mL/g,
  Kaul & Ito, Circulation 2004;109:146, times 1 - Hct), log PS and log Fp ~
  N(log 1 /min, 1.5) and N(log 0.6 /min, 1.5). Delayed data leave the split of
  ve + vp and a large PS undetermined (fast exchange looks the same for any PS
  above a few /min); the priors choose the physiological solution there and
  barely move well-determined parameters.
- A second start (poorly perfused tissue) for voxels whose first fit is poor
  (chi-square above twice its expected value); the lower cost wins. Voxels
  leave the iteration as they converge (active set).
- Identifiability: standard errors from the Jacobian at the solution; ve and vp
  count as separately identified when both relative SEs are below 0.5.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from analysis.tcxm import BiexpAif, irf_exponentials, tissue_concentration, tissue_concentration_partials


# (low, high, log-scaled) for v = ve + vp, f = vp / v, Fp, PS
BOUNDS = np.array([(0.02, 1.0, 0), (0.005, 0.95, 0), (0.02, 10.0, 1), (0.005, 20.0, 1)], dtype=float)
STARTS = ((0.3, 1.0, 1.0), (0.1, 0.2, 0.2))   # (f, Fp, PS) per start; v from the data
MAX_RELATIVE_SE = 0.5
MAX_NRMSE = 0.5          # a fit further than this from the data (relative RMSE) counts as failed
STEP = 1e-5              # forward-difference step in the unconstrained parameters


@dataclass
class TcxmFit:
    ve: np.ndarray          # fraction
    vp: np.ndarray          # fraction
    fp: np.ndarray          # plasma flow, mL/min/mL tissue
    ps: np.ndarray          # permeability-surface area product, mL/min/mL tissue
    r_squared: np.ndarray
    nrmse: np.ndarray       # RMSE / mean |Ct|
    failed: np.ndarray      # bool; failed voxels have all parameters 0
    ve_vp_separable: np.ndarray   # bool

    @property
    def ve_plus_vp(self) -> np.ndarray:
        return self.ve + self.vp


def to_box(u: np.ndarray, low: np.ndarray, high: np.ndarray, log: np.ndarray) -> np.ndarray:
    """Unconstrained u mapped into [low, high] by the logistic function, log-scaled where log (bool)."""
    s = 1.0 / (1.0 + np.exp(-np.clip(u, -30, 30)))
    log_low, log_high = np.log(np.where(log, low, 1.0)), np.log(np.where(log, high, 1.0))
    return np.where(log, np.exp(log_low + (log_high - log_low) * s), low + (high - low) * s)


def _natural(u: np.ndarray) -> np.ndarray:
    return to_box(u, BOUNDS[:, 0], BOUNDS[:, 1], BOUNDS[:, 2].astype(bool))


def _unconstrained(p: np.ndarray) -> np.ndarray:
    low, high, log = BOUNDS[:, 0], BOUNDS[:, 1], BOUNDS[:, 2].astype(bool)
    p = np.clip(p, low * 1.0001, high * 0.9999)
    s = np.where(log, (np.log(p) - np.log(low)) / (np.log(high) - np.log(low)), (p - low) / (high - low))
    return np.log(s / (1.0 - s))


@dataclass(frozen=True)
class Priors:
    """Gaussian priors (mean, SD) on vp, ln(PS / (1/min)) and ln(Fp / (1/min))."""
    vp: tuple[float, float]
    log_ps: tuple[float, float]
    log_fp: tuple[float, float]


MYOCARDIUM_PRIORS = Priors(vp=(0.06, 0.03), log_ps=(np.log(1.0), 1.5), log_fp=(np.log(0.6), 1.5))


def _model(t: np.ndarray, p: np.ndarray, aif: BiexpAif) -> np.ndarray:
    v, f, fp, ps = p.T
    return tissue_concentration(t, fp, ps, v * f, v * (1.0 - f), aif)


def _prior_residual(u: np.ndarray, priors: Priors) -> np.ndarray:
    """The prior terms (n, 3) in SDs: vp, ln PS, ln Fp."""
    v, f, fp, ps = _natural(u).T
    return np.column_stack([(v * f - priors.vp[0]) / priors.vp[1],
                            (np.log(ps) - priors.log_ps[0]) / priors.log_ps[1],
                            (np.log(fp) - priors.log_fp[0]) / priors.log_fp[1]])


def _residual(t, y, sigma, u, aif, priors: Priors | None = MYOCARDIUM_PRIORS):
    """Weighted data residuals and, with priors, the prior terms: (n, T) or (n, T + 3)."""
    data = (_model(t, _natural(u), aif) - y) / sigma
    return data if priors is None else np.concatenate([data, _prior_residual(u, priors)], axis=1)


def _impulse_response(u: np.ndarray, _rows=None) -> np.ndarray:
    """(c1, a, c2, b) of the 2CXM (analysis/tcxm.irf_exponentials), (n, 4), for unconstrained rows u."""
    v, f, fp, ps = _natural(u).T
    return np.column_stack(irf_exponentials(fp, ps, v * f, v * (1.0 - f)))


def _jacobian(t, sigma, u, aif, priors: Priors | None = MYOCARDIUM_PRIORS):
    """d _residual / d u, (n, T [+ 3], 4): the model's partials in the impulse response, chained through the
    cheap map from u to it (forward differences there, where no convolution is needed)."""
    rows = np.arange(len(u))
    irf = _impulse_response(u)
    _, partials = tissue_concentration_partials(t, irf, aif)
    data = partials @ forward_differences(_impulse_response, u, rows, irf, STEP) / sigma[..., np.newaxis]
    if priors is None:
        return data
    prior = forward_differences(lambda u_rows, _: _prior_residual(u_rows, priors), u, rows,
                                _prior_residual(u, priors), STEP)
    return np.concatenate([data, prior], axis=1)


def levenberg_marquardt(residual: Callable[[np.ndarray, np.ndarray], np.ndarray], u: np.ndarray,
                        iterations: int, jacobian: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                        stop_at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Batched Levenberg-Marquardt over rows of u (n, k): residual(u_rows, row_index) -> (len(row_index), M),
    jacobian(u_rows, row_index) -> (len(row_index), M, k), by forward differences of residual where None.
    Rows leave the iteration as they converge, or once their chi-square is at or below stop_at (n,), for a
    caller that only asks whether the minimum lies below it. Returns (u, chi-square (n,))."""
    n_par = u.shape[1]
    u = u.copy()
    lam = np.full(len(u), 1e-2)
    active = np.arange(len(u))
    residual_now = residual(u, active)
    cost = np.sum(residual_now ** 2, axis=1)
    for _ in range(iterations):
        if active.size == 0:
            break
        ua, ra = u[active], residual_now[active]
        jac = jacobian(ua, active) if jacobian is not None else forward_differences(residual, ua, active, ra, STEP)
        jac_t = jac.transpose(0, 2, 1)
        jtj = jac_t @ jac
        grad = (jac_t @ ra[..., None])[..., 0]
        diagonal = np.einsum("nkk->nk", jtj) + 1e-12
        damped = jtj + lam[active, None, None] * (np.eye(n_par)[None] * diagonal[:, :, None])
        delta = -np.linalg.solve(damped, grad[..., None])[..., 0]
        trial = np.clip(ua + delta, -30, 30)
        trial_residual = residual(trial, active)
        trial_cost = np.sum(trial_residual ** 2, axis=1)
        old_cost = cost[active]
        better = np.isfinite(trial_cost) & (trial_cost < old_cost)
        u[active[better]] = trial[better]
        residual_now[active[better]] = trial_residual[better]
        cost[active[better]] = trial_cost[better]
        lam[active] = np.clip(np.where(better, lam[active] / 3.0, lam[active] * 4.0), 1e-9, 1e9)
        # converged: a step that hardly lowers the cost, or a refused step that hardly moves
        small_step = np.max(np.abs(delta), axis=1) < 1e-4
        done = (better & ((old_cost - trial_cost) < 1e-8 + 1e-6 * old_cost)) | (~better & small_step) | (lam[active] >= 1e9)
        if stop_at is not None:
            done |= cost[active] <= stop_at[active]
        active = active[~done]
    return u, cost


def forward_differences(function: Callable[[np.ndarray, np.ndarray], np.ndarray], u: np.ndarray, rows: np.ndarray,
                        value: np.ndarray, step: float) -> np.ndarray:
    """d function / d u by forward differences, (n, M, k), for rows u (n, k) where function is value (n, M)."""
    jac = np.empty(value.shape + (u.shape[1],))
    for k in range(u.shape[1]):
        shifted = u.copy()
        shifted[:, k] += step
        jac[..., k] = (function(shifted, rows) - value) / step
    return jac


def _relative_se_ve_vp(t, y, p, aif) -> tuple[np.ndarray, np.ndarray]:
    """Relative standard errors of ve and vp from the Jacobian in (ve, vp, Fp, PS) at the solution."""
    v, f, fp, ps = p.T
    natural = np.stack([v * (1 - f), v * f, fp, ps], axis=1)

    def model(q):
        return tissue_concentration(t, q[:, 2], q[:, 3], q[:, 1], q[:, 0], aif)
    base = model(natural)
    jac = np.empty(y.shape + (4,))
    for k in range(4):
        h = 1e-4 * np.maximum(natural[:, k], 1e-3)
        shifted = natural.copy()
        shifted[:, k] += h
        jac[..., k] = (model(shifted) - base) / h[:, None]
    dof = max(y.shape[1] - 4, 1)
    sigma2 = np.sum((base - y) ** 2, axis=1) / dof
    cov = np.linalg.pinv(np.einsum("ntk,ntl->nkl", jac, jac)) * sigma2[:, None, None]
    se = np.sqrt(np.maximum(np.einsum("nkk->nk", cov), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return se[:, 0] / natural[:, 0], se[:, 1] / natural[:, 1]


def fit_tcxm(t_min: np.ndarray, ct_mM: np.ndarray, aif, sigma_mM: np.ndarray | None = None,
             iterations: int = 40, threads: int | None = None,
             priors: Priors | None = MYOCARDIUM_PRIORS) -> TcxmFit:
    """Fit Ct (N, T) in mmol/L sampled at t_min (T,) minutes after injection, with a known plasma AIF.

    sigma_mM (N, T): expected noise SD of each sample (mmol/L); None weights all samples equally.
    The voxels are split over `threads` (default: one per CPU); numpy releases the GIL in its loops.
    aif: BiexpAif (delayed phase) or SampledAif (first pass); priors=None for a plain least-squares fit."""
    y = np.asarray(ct_mM, dtype=float)
    weighted = sigma_mM is not None
    sigma = np.asarray(sigma_mM, dtype=float) if weighted else np.ones_like(y)
    parts = in_threads(lambda rows: _fit_block(t_min, y[rows], aif, sigma[rows], iterations, priors, weighted),
                       len(y), threads)
    return TcxmFit(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in TcxmFit.__dataclass_fields__})


MIN_ROWS_PER_THREAD = 250   # below this, a thread's numpy calls are too short to release the GIL usefully


def in_threads(block: Callable[[np.ndarray], object], n_rows: int, threads: int | None = None) -> list:
    """block(row_indices) over the rows split in contiguous parts, one thread each (default: one per CPU, at
    least MIN_ROWS_PER_THREAD rows each): numpy releases the GIL in its loops. Returns the parts in order."""
    threads = max(1, min(threads or os.cpu_count() or 1, n_rows // MIN_ROWS_PER_THREAD))
    chunks = np.array_split(np.arange(n_rows), threads)
    if threads == 1:
        return [block(chunks[0])]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(block, chunks))


def _fit_block(t_min, ct_mM, aif, sigma_mM, iterations, priors, weighted) -> TcxmFit:
    t = np.asarray(t_min, dtype=float)
    y = np.asarray(ct_mM, dtype=float)
    finite = np.all(np.isfinite(y), axis=1)
    y = np.where(finite[:, None], y, 0.0)
    sigma = np.where(finite[:, None], sigma_mM, 1.0)
    sigma = np.maximum(sigma, 1e-6)
    late = t >= np.median(t)
    v0 = np.clip(np.mean(y[:, late], axis=1) / np.mean(aif(t[late])), 0.03, 0.95)
    u: np.ndarray | None = None       # (N, 4) best unconstrained parameters so far
    cost: np.ndarray | None = None    # (N,) and their cost
    for f0, fp0, ps0 in STARTS:
        # later starts only where the fit so far is poor (chi-square above twice its expectation)
        # (unweighted fits have no expected chi-square: every voxel gets every start)
        if u is None or cost is None:
            todo = np.arange(len(y))
        else:
            todo = np.flatnonzero(cost > 2.0 * (t.size + 3) if weighted else np.ones(len(y), dtype=bool))
        if todo.size == 0:
            break
        start = np.column_stack([v0[todo], np.full(todo.size, f0), np.full(todo.size, fp0), np.full(todo.size, ps0)])
        y_todo, sigma_todo = y[todo], sigma[todo]
        u_new, cost_new = levenberg_marquardt(
            lambda u_rows, rows: _residual(t, y_todo[rows], sigma_todo[rows], u_rows, aif, priors),
            _unconstrained(start), iterations,
            lambda u_rows, rows: _jacobian(t, sigma_todo[rows], u_rows, aif, priors))
        if u is None or cost is None:
            u, cost = u_new, cost_new
        else:
            take = cost_new < cost[todo]
            u[todo[take]], cost[todo[take]] = u_new[take], cost_new[take]
    if u is None:   # the first start fits every voxel: only an empty block gets here without a fit
        raise ValueError("no voxels to fit")
    p = _natural(u)
    fitted = _model(t, p, aif)
    ss_res = np.sum((fitted - y) ** 2, axis=1)
    ss_tot = np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_squared = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, 0.0)
        nrmse = np.sqrt(ss_res / t.size) / np.maximum(np.mean(np.abs(y), axis=1), 1e-9)
    # R^2 says little for a flat curve (a 5-min window of an infarct), so failure is judged by NRMSE
    failed = ~finite | ~np.isfinite(ss_res) | ~np.all(np.isfinite(p), axis=1) | ~(nrmse <= MAX_NRMSE)
    rel_ve, rel_vp = _relative_se_ve_vp(t, y, p, aif)
    separable = (rel_ve < MAX_RELATIVE_SE) & (rel_vp < MAX_RELATIVE_SE) & ~failed
    p = np.where(failed[:, None], 0.0, p)
    v, f, fp, ps = p.T
    return TcxmFit(ve=v * (1 - f), vp=v * f, fp=fp, ps=ps, r_squared=np.where(failed, 0.0, np.nan_to_num(r_squared)),
                   nrmse=np.where(failed, 0.0, np.nan_to_num(nrmse)), failed=failed, ve_vp_separable=separable)
