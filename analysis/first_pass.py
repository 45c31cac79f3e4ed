"""2CXM fit of densely sampled first-pass tissue curves with a fitted arterial delay per voxel.

Model: the two-compartment exchange model (Sourbron & Buckley, Phys Med Biol 2013;58:R1) driven by the
plasma AIF delayed by `delay` seconds, Ct(t) = h(t) * Ca(t - delay), as in the OSIPI DCE-DSC-MRI code
collection's 2CXM with arterial delay.

Method (profile over the delay, all voxels at once):
1. Coarse grid: delays 0, 0.5, 1, ... max_delay_s. For every voxel and every grid delay the other four
   parameters (ve, vp, Fp, PS) are fitted by `analysis.ddce_fit.fit_tcxm(..., priors=None)` with the AIF
   delayed, i.e. a `SampledAif` on the shifted time grid (zero before its first sample).
2. Per voxel, the grid delay with the lowest weighted chi-square on all samples is kept, and a parabola
   through it and its two neighbours gives a refined delay (within half a grid step, in [0, max_delay_s],
   rounded to 0.05 s).
3. Final fits at the best grid delay and at the refined delay; the lower chi-square wins (a refit that
   lands in a local minimum leaves the grid delay).

Batching: fit_tcxm takes one time axis for all voxels, so voxels at different delays cannot share a call
unless their time axes agree. On a uniform sampling grid (interval dt) a delay m*dt + r is an integer shift
of the tissue curve by m samples plus a remainder r < dt on the AIF: rows are shifted by m (the first m
samples, where the model is 0 whatever the parameters, drop out of the fit without changing its minimum;
the m samples appended at the end get zero weight), and one fit_tcxm call fits every (voxel, delay) row with
the same remainder. With 0.5 s sampling the whole coarse grid is one call; on a non-uniform grid (ECG-
triggered frames) it is one call per grid delay.

Cost: per voxel about (grid delays + 2) four-parameter fits, 43 for max_delay_s = 20. On a uniform grid
whose interval divides 0.5 s these take 1 + 1 + ceil(dt / 0.05 s) fit_tcxm calls per chunk of voxels (chunks
of about 2 million (row, sample) values); on a non-uniform grid up to (grid delays + 1 + max_delay_s / 0.05 s)
calls. Measured on 2 shared cores with T = 600 samples: 24 OSIPI curves in 10-11 s (0.45 s a curve), 100
curves in 47 s, one curve alone about 1 s.

The convolution is SampledAif's (analysis/tcxm.py), exact for a piecewise-linear AIF. Units: t in min, delay in s, Fp and PS
in 1/min (mL/min per mL of tissue), vp and ve fractions, concentrations in mmol/L.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.ddce_fit import fit_tcxm
from analysis.tcxm import SampledAif, tissue_concentration

GRID_STEP_S = 0.5           # coarse delay grid
DELAY_QUANTUM_S = 0.05      # refined delays are rounded to this, so that voxels can share a fit
GRID_ITERATIONS = 40        # Levenberg-Marquardt iterations per start on the coarse grid (ranks delays)
ITERATIONS = 100            # and for the final fits (voxels leave the iteration when converged)
CHUNK_VALUES = 2_000_000    # (row, sample) values per batched fit
PAD_SIGMA = 1e12            # noise SD (mmol/L) of appended samples: zero weight
# fit_tcxm, when weighted, tries its second start only where the first leaves a chi-square above twice its
# expectation. First-pass curves have a local minimum with ve and vp swapped whose excess is smaller than
# that. So fit_tcxm gets each curve's sigma scaled to a smallest value of FIT_SIGMA_MIN (mmol/L; fit_tcxm
# floors sigma at 1e-6): the same minimum, and every curve noisier than that gets both starts, as in
# fit_tcxm's unweighted mode. Chi-squares reported here use the caller's (or the estimated) sigma.
FIT_SIGMA_MIN = 1e-5


@dataclass(frozen=True)
class FirstPassFit:
    """Per-voxel results, all (N,) arrays. Failed voxels have ve, vp, fp, ps = 0."""
    ve: np.ndarray          # extravascular extracellular volume fraction
    vp: np.ndarray          # plasma volume fraction
    fp: np.ndarray          # plasma flow, 1/min (mL/min per mL tissue)
    ps: np.ndarray          # permeability-surface area product, 1/min
    delay_s: np.ndarray     # arterial delay, s (>= 0): the tissue sees Ca(t - delay)
    failed: np.ndarray      # bool
    chi_square: np.ndarray  # sum over samples of ((model - data) / sigma)^2, dimensionless


def _uniform_step(t: np.ndarray) -> float | None:
    steps = np.diff(t)
    return float(steps[0]) if np.allclose(steps, steps[0], rtol=1e-6, atol=0) else None


def _noise_sd(y: np.ndarray) -> np.ndarray:
    """Per-curve noise SD (mmol/L) from the median absolute successive difference (robust to the bolus)."""
    sd = np.median(np.abs(np.diff(y, axis=1)), axis=1) / (0.6745 * np.sqrt(2.0))
    return np.maximum(sd, 1e-6 * np.maximum(np.max(np.abs(y), axis=1), 1e-6))


def _fit_rows(t, y, sigma, aif, voxel, delay_min, iterations):
    """Fit rows (voxel index, delay in min) at their delays. Returns (params (R, 4), failed, chi-square),
    params as (ve, vp, fp, ps); chi-square on all samples of the unshifted curve."""
    n_rows, n_t = voxel.size, t.size
    dt = _uniform_step(t)
    shift = np.floor(delay_min / dt + 1e-6).astype(int) if dt is not None else np.zeros(n_rows, int)
    shift = np.minimum(shift, n_t - 1)
    remainder = np.maximum(np.round(delay_min - (shift * dt if dt is not None else 0.0), 9), 0.0)
    params = np.zeros((n_rows, 4))
    failed = np.ones(n_rows, dtype=bool)
    chi = np.full(n_rows, np.inf)
    cols = np.arange(n_t)
    for r in np.unique(remainder):
        rows = np.flatnonzero(remainder == r)
        v, m = voxel[rows], shift[rows]
        source = cols[None, :] + m[:, None]                          # sample j of row <- sample j + m
        padded = source >= n_t
        source = np.minimum(source, n_t - 1)
        ys = y[v[:, None], source]
        scaled = FIT_SIGMA_MIN * sigma[v] / np.min(sigma[v], axis=1, keepdims=True)   # same minimum
        ss = np.where(padded, PAD_SIGMA, scaled[np.arange(rows.size)[:, None], source])
        fit = fit_tcxm(t - r, ys, aif, sigma_mM=ss, iterations=iterations, priors=None)
        model = np.zeros((rows.size, n_t))
        ok = ~fit.failed              # failed rows have parameters 0: no model
        if ok.any():
            model[ok] = tissue_concentration(t - r, fit.fp[ok], fit.ps[ok], fit.vp[ok], fit.ve[ok], aif)
        back = cols[None, :] - m[:, None]                             # unshifted sample j <- model j - m
        model = np.where(back >= 0, model[np.arange(rows.size)[:, None], np.maximum(back, 0)], 0.0)
        params[rows] = np.column_stack([fit.ve, fit.vp, fit.fp, fit.ps])
        failed[rows] = fit.failed
        chi[rows] = np.where(fit.failed, np.inf, np.sum(((model - y[v]) / sigma[v]) ** 2, axis=1))
    return params, failed, chi


def fit_first_pass(t_min: np.ndarray, ct_mM: np.ndarray, cp_mM: np.ndarray, sigma_mM: np.ndarray | None = None,
                   max_delay_s: float = 20.0) -> FirstPassFit:
    """2CXM with arterial delay fitted to first-pass tissue curves ct_mM (N, T) or (T,), mmol/L.

    t_min (T,): sample times in min, increasing; cp_mM (T,): plasma AIF (mmol/L) at the same times, taken
    as 0 before its first sample and linear between samples. sigma_mM: noise SD per sample (mmol/L),
    broadcastable to (N, T); None estimates one SD per curve from its successive differences.
    max_delay_s: the delay is searched in [0, max_delay_s] seconds, one delay per voxel.
    Returns FirstPassFit (ve, vp, fp and ps in 1/min as fit_tcxm, delay_s, failed, chi_square)."""
    t = np.asarray(t_min, dtype=float)
    y = np.atleast_2d(np.asarray(ct_mM, dtype=float))
    cp = np.asarray(cp_mM, dtype=float)
    if t.ndim != 1 or t.size < 3 or cp.shape != t.shape or y.ndim != 2 or y.shape[1] != t.size:
        raise ValueError(f"need t_min (T,), cp_mM (T,), ct_mM (N, T); got {t.shape}, {cp.shape}, {y.shape}")
    if np.any(np.diff(t) <= 0) or not 0 <= max_delay_s < 60.0 * (t[-1] - t[0]):
        raise ValueError("t_min must increase and max_delay_s must be >= 0 and shorter than the acquisition")
    finite = np.all(np.isfinite(y), axis=1)
    y = np.where(finite[:, None], y, 0.0)
    sigma = _noise_sd(y)[:, None] * np.ones_like(y) if sigma_mM is None else \
        np.maximum(np.broadcast_to(np.asarray(sigma_mM, dtype=float), y.shape), 1e-6)
    aif = SampledAif(t, cp)
    grid_s = np.arange(0.0, max_delay_s + 1e-9, GRID_STEP_S)
    n, n_grid = len(y), grid_s.size

    chi = np.zeros((n, n_grid))     # a single grid delay needs no ranking: straight to the final fit
    chunk = max(1, CHUNK_VALUES // (n_grid * t.size))
    for start in range(0, n if n_grid > 1 else 0, chunk):
        voxels = np.arange(start, min(start + chunk, n))
        _, _, c = _fit_rows(t, y, sigma, aif, np.repeat(voxels, n_grid), np.tile(grid_s, voxels.size) / 60.0,
                            GRID_ITERATIONS)
        chi[voxels] = c.reshape(voxels.size, n_grid)
    best = np.argmin(chi, axis=1)
    rows = np.arange(n)
    delay = grid_s[best]

    # parabola through the best grid delay and its neighbours (the nearest three at either end of the grid)
    refined = delay
    if n_grid >= 3:
        centre = np.clip(best, 1, n_grid - 2)
        lo, mid, hi = (chi[rows, centre + o] for o in (-1, 0, 1))
        with np.errstate(divide="ignore", invalid="ignore"):     # failed grid fits have chi-square inf
            curvature = lo - 2.0 * mid + hi
            valid = np.isfinite(curvature) & (curvature > 0)
            vertex = np.where(valid, grid_s[centre] + GRID_STEP_S * 0.5 * (lo - hi) / curvature, delay)
        refined = np.clip(vertex, delay - GRID_STEP_S / 2, delay + GRID_STEP_S / 2)
        refined = np.clip(np.round(refined / DELAY_QUANTUM_S) * DELAY_QUANTUM_S, 0.0, max_delay_s)

    # final fits at the best grid delay and, where it differs, at the refined one; the lower chi-square wins
    other = np.flatnonzero(np.abs(refined - delay) > 1e-9)
    params, failed, chi_final = _fit_rows(t, y, sigma, aif, np.concatenate([rows, other]),
                                          np.concatenate([delay, refined[other]]) / 60.0, ITERATIONS)
    better = chi_final[n:] < chi_final[other]
    take = other[better]
    params[take], failed[take], chi_final[take] = params[n:][better], failed[n:][better], chi_final[n:][better]
    delay = np.where(np.isin(rows, take), refined, delay)
    failed = failed[:n] | ~finite
    params = np.where(failed[:, None], 0.0, params[:n])
    return FirstPassFit(ve=params[:, 0], vp=params[:, 1], fp=params[:, 2], ps=params[:, 3], delay_s=delay,
                        failed=failed, chi_square=np.where(failed, np.inf, chi_final[:n]))
