"""Two-compartment exchange model (2CXM) with a bi-exponential arterial input, in closed form.

Model (Sourbron & Buckley, Phys Med Biol 2013;58:R1, eq. for the 2CX model):
    vp dCp/dt = Fp (Ca - Cp) - PS (Cp - Ce),   ve dCe/dt = PS (Cp - Ce),   Ct = vp Cp + ve Ce
Its impulse response is h(t) = c1 exp(-a t) + c2 exp(-b t) with c1 + c2 = Fp and
h'(0) = -Fp^2 / vp. With the plasma input Ca(t) = sum_j A_j exp(-m_j t) (t >= 0,
time from injection) the convolution is analytic:
    exp(-a t) * exp(-m t) = (exp(-m t) - exp(-a t)) / (a - m).
So tissue concentration is exact at any sampling time: nothing is convolved on
the sparse 1-2 min acquisition grid. Units: t in min, Fp and PS in mL/min per mL
of tissue (1/min), vp and ve fractions, concentrations in mmol/L.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.optimize import least_squares

from analysis.errors import AnalysisError

RECURSION_MIN_ROWS = 64       # from this many rates on, the step-by-step recursion is the fastest
CUMSUM_MAX_EXPONENT = 600.0   # e^600 ~ 1e260: a cumulative sum of source e^(k t) stays finite
MATRIX_MAX_VALUES = 4_000_000   # rates x steps^2 up to which the masked matrix product is used for fast rates
# relative step of the forward difference in a rate (tissue_concentration_partials): 1e-5 keeps the closed
# form's cancellation near an AIF exponent (k close to m) from swamping the difference; the truncation error,
# about 1e-5 of the derivative, is far below what a Levenberg-Marquardt step needs
RATE_STEP = 1e-5


@dataclass(frozen=True)
class BiexpAif:
    """Plasma concentration Ca(t) = a1 exp(-m1 t) + a2 exp(-m2 t), t in min after injection, mmol/L."""
    a1: float
    m1: float
    a2: float
    m2: float
    r_squared: float = float("nan")
    rmse: float = float("nan")

    def __call__(self, t_min: np.ndarray) -> np.ndarray:
        t = np.asarray(t_min, dtype=float)
        return np.where(t >= 0, self.a1 * np.exp(-self.m1 * t) + self.a2 * np.exp(-self.m2 * t), 0.0)

    def as_dict(self) -> dict:
        return {"a1_mM": self.a1, "m1_per_min": self.m1, "a2_mM": self.a2, "m2_per_min": self.m2,
                "r_squared": self.r_squared, "rmse_mM": self.rmse}

    def convolve_exponential(self, t_min: np.ndarray, k: np.ndarray, at_zero: np.ndarray | float = 0.0) -> np.ndarray:
        """exp(-k t) * Ca(t) at t_min (T,) for rates k (N, 1) in 1/min: closed form, (N, T); plus at_zero (N, 1)
        decaying as exp(-k t), the value a convolution that began earlier has at t = 0."""
        t = np.asarray(t_min, dtype=float)
        k = _apart(_apart(k, self.m1), self.m2)
        rates = np.array([self.m1, self.m2])
        weights = np.array([self.a1, self.a2]) / (k - rates)             # (N, 2)
        # sum_j w_j (exp(-m_j t) - exp(-k t)), the first part as one matrix product
        return weights @ np.exp(-np.outer(rates, t)) + np.exp(-k * t) * (at_zero - weights.sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class SampledAif:
    """Plasma concentration sampled densely (first-pass DCE), linear between samples; t in min, mmol/L."""
    t_min: np.ndarray
    c_mM: np.ndarray

    def __call__(self, t_min: np.ndarray) -> np.ndarray:
        return np.interp(t_min, self.t_min, self.c_mM, left=0.0)

    @cached_property
    def _grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(grid, samples, slopes, distinct steps, each step's index among them), computed once: a fit
        evaluates the convolution thousands of times, and a first-pass grid has one step or two."""
        grid, ca = np.asarray(self.t_min, float), np.asarray(self.c_mM, float)
        steps = np.diff(grid)
        distinct, which = np.unique(steps, return_inverse=True)
        return grid, ca, np.diff(ca) / steps, distinct, which

    @cached_property
    def _lags(self) -> tuple[np.ndarray, np.ndarray]:
        """(t_(i+1) - t_(j+1), where it is >= 0) for the matrix form, 0 where it is not."""
        grid = self._grid[0]
        lag = grid[1:, np.newaxis] - grid[np.newaxis, 1:]
        mask = lag >= 0
        return np.where(mask, lag, 0.0), mask

    def convolve_exponential(self, t_min: np.ndarray, k: np.ndarray) -> np.ndarray:
        """exp(-k t) * Ca(t) at t_min (T,) for rates k (N, 1) in 1/min: (N, T), exact for a piecewise-linear Ca."""
        return self.interpolated(self.convolved_on_grid(k), t_min)

    def convolved_on_grid(self, k: np.ndarray) -> np.ndarray:
        """exp(-k t) * Ca(t) at the sample times t_min for rates k (N, 1) in 1/min: (N, samples).

        Over a step d, F(t + d) = e^(-k d) F(t) + source, source = Ca(t) (1 - e^(-k d))/k + (Ca(t+d) - Ca(t))
        (d/k - (1 - e^(-k d))/k^2)/d. Many rates: that recursion, two ufunc calls per step over all rates (stable
        for any rate). A few: the same sum with every exponential at once, as a cumulative sum where k times the
        grid's span stays below CUMSUM_MAX_EXPONENT, else as a masked matrix product."""
        grid, ca, slopes, distinct, which = self._grid
        rate = np.maximum(np.asarray(k, float)[:, 0], 1e-9)[:, np.newaxis]          # (N, 1)
        x = rate * distinct                                                         # (N, distinct steps)
        e1 = -np.expm1(-x) / rate                                                    # (1 - e^-kd) / k
        e2 = np.where(x < 1e-3, distinct * distinct * (0.5 - x / 6.0 + x * x / 24.0),   # d - e1 cancels there
                      (distinct - e1) / rate)
        source = ca[:-1] * e1[:, which] + slopes * e2[:, which]                      # (N, S)
        if len(rate) >= RECURSION_MIN_ROWS or len(rate) * slopes.size ** 2 > MATRIX_MAX_VALUES:
            return self._recursion(source, np.exp(-x), which)
        f = np.zeros((len(source), grid.size))
        # F(t_(i+1)) = sum_(j <= i) source_j e^(-k (t_(i+1) - t_(j+1))) = e^(-k r_i) cumsum(source_j e^(k r_j)), r
        # the time since t_1
        cumulative = rate[:, 0] * (grid[-1] - grid[1]) <= CUMSUM_MAX_EXPONENT
        grow = np.exp(rate[cumulative] * (grid[1:] - grid[1]))
        f[cumulative, 1:] = np.cumsum(source[cumulative] * grow, axis=1) / grow
        if not cumulative.all():
            lag, mask = self._lags
            decay = np.exp(-rate[~cumulative, :, np.newaxis] * lag) * mask              # (n, S, S)
            f[~cumulative, 1:] = np.einsum("nij,nj->ni", decay, source[~cumulative])
        return f

    @staticmethod
    def _recursion(source: np.ndarray, decay: np.ndarray, which: np.ndarray) -> np.ndarray:
        """F on the grid, (N, S + 1), from source (N, S) and e^(-k d) (N, distinct steps), step by step."""
        source_t, decay_t = np.ascontiguousarray(source.T), np.ascontiguousarray(decay.T)
        ft = np.zeros((source_t.shape[0] + 1, source_t.shape[1]))
        for i, step in enumerate(which):
            np.multiply(decay_t[step], ft[i], out=ft[i + 1])
            ft[i + 1] += source_t[i]
        return ft.T

    def interpolated(self, f: np.ndarray, t_min: np.ndarray) -> np.ndarray:
        """Values on the sample grid (N, samples), linear between them, at t_min (T,): (N, T); 0 before."""
        grid = self._grid[0]
        t = np.asarray(t_min, float)
        j = np.clip(np.searchsorted(grid, t, side="right") - 1, 0, grid.size - 2)
        w = np.clip((t - grid[j]) / (grid[j + 1] - grid[j]), 0.0, 1.0)              # 0 before the grid
        return f[:, j] * (1.0 - w) + f[:, j + 1] * w


@dataclass(frozen=True)
class HybridAif:
    """One injection's plasma AIF from first-pass samples and delayed maps: piecewise linear through the
    first-pass samples and on to the bi-exponential at its start (t_tail_min), the bi-exponential after.
    t in min after injection, mmol/L. Convolution: exact for the linear part (SampledAif), closed form for
    the tail, e^(-k t) * a e^(-m t) restricted to t >= t0 being a e^(-m t0) (e^(-m (t-t0)) - e^(-k (t-t0)))/(k-m)."""
    first_pass: SampledAif          # ends at t_tail_min, at the tail's value there
    tail: BiexpAif
    t_tail_min: float

    @classmethod
    def join(cls, t_min: np.ndarray, cp_mM: np.ndarray, tail: BiexpAif, t_tail_min: float) -> "HybridAif":
        t, c = np.asarray(t_min, float), np.asarray(cp_mM, float)
        keep = t < t_tail_min
        grid = np.append(t[keep], t_tail_min)
        return cls(SampledAif(grid, np.append(c[keep], float(tail(np.array([t_tail_min]))[0]))), tail, t_tail_min)

    def __call__(self, t_min: np.ndarray) -> np.ndarray:
        t = np.asarray(t_min, float)
        return np.where(t < self.t_tail_min, self.first_pass(t), self.tail(t))

    def convolve_exponential(self, t_min: np.ndarray, k: np.ndarray) -> np.ndarray:
        t = np.asarray(t_min, float)
        end = self.t_tail_min
        k = np.asarray(k, float)
        # up to the join: the linear part alone; after it, the linear part's decay from the join plus the tail
        on_grid = self.first_pass.convolved_on_grid(k)              # its grid ends at the join
        order = np.argsort(t, kind="stable")
        before = int(np.searchsorted(t[order], end))
        parts = [self.first_pass.interpolated(on_grid, t[order[:before]])]
        if before < t.size:
            after = t[order[before:]] - end
            shifted = BiexpAif(self.tail.a1 * np.exp(-self.tail.m1 * end), self.tail.m1,
                               self.tail.a2 * np.exp(-self.tail.m2 * end), self.tail.m2)
            parts.append(shifted.convolve_exponential(after, k, at_zero=on_grid[:, -1:]))
        joined = np.concatenate(parts, axis=1)                      # in time order: sample times come sorted
        return joined if np.array_equal(order, np.arange(t.size)) else joined[:, np.argsort(order)]


def fit_biexp_aif(t_min: np.ndarray, ca_mM: np.ndarray) -> BiexpAif:
    """Least-squares bi-exponential fit of sampled plasma concentration (mmol/L) at t_min (min > 0)."""
    t, c = np.asarray(t_min, float), np.asarray(ca_mM, float)
    if t.size < 3 or np.any(t <= 0) or np.any(c <= 0):
        raise AnalysisError("the AIF needs at least 3 post-injection samples with positive concentration")
    # start: slow component from the late half (log-linear), fast one from what is left early
    late = t >= np.median(t)
    slope, intercept = np.polyfit(t[late], np.log(c[late]), 1)
    m2, a2 = max(-slope, 1e-3), float(np.exp(intercept))
    start = [np.log(max(c[0] - a2 * np.exp(-m2 * t[0]), 0.1 * c[0])) + 0.5 * t[0], np.log(0.5), np.log(a2), np.log(m2)]

    def model(p, tt):
        a1, m1, a2_, m2_ = np.exp(p)
        return a1 * np.exp(-(m1 + m2_) * tt) + a2_ * np.exp(-m2_ * tt)   # m1 > m2 by construction

    def residual(p):
        return (model(p, t) - c) / c   # relative: late small values count as much as early ones
    # with 3 samples only the mono-exponential part is identifiable: keep the fast term at zero
    if t.size < 5:
        start[0] = np.log(1e-6)
    fit = least_squares(residual, start, method="lm" if t.size >= 4 else "trf", max_nfev=2000)
    a1, dm, a2, m2 = np.exp(fit.x)
    predicted = model(fit.x, t)
    ss_res, ss_tot = float(np.sum((predicted - c) ** 2)), float(np.sum((c - c.mean()) ** 2))
    return BiexpAif(a1=float(a1), m1=float(dm + m2), a2=float(a2), m2=float(m2),
                    r_squared=1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
                    rmse=float(np.sqrt(ss_res / t.size)))


def irf_exponentials(fp, ps, vp, ve):
    """(c1, a, c2, b): h(t) = c1 exp(-a t) + c2 exp(-b t) of the 2CXM, elementwise over arrays."""
    fp, ps, vp, ve = (np.asarray(x, dtype=float) for x in (fp, ps, vp, ve))
    trace = (fp + ps) / vp + ps / ve
    det = fp * ps / (vp * ve)
    root = np.sqrt(np.maximum(trace * trace / 4.0 - det, 0.0))
    a, b = trace / 2.0 + root, trace / 2.0 - root           # a >= b > 0
    gap = np.maximum(a - b, 1e-9 * a)
    c1 = (fp * fp / vp - b * fp) / gap
    return c1, a, fp - c1, b


def _apart(k, m):
    """k moved by a relative 1e-7 where it equals m, where the closed form has a removable singularity."""
    close = np.abs(k - m) < 1e-7 * max(abs(m), 1e-9)
    return np.where(close, m * (1 + 1e-7) + 1e-9, k)


def tissue_concentration(t_min: np.ndarray, fp, ps, vp, ve, aif) -> np.ndarray:
    """Ct(t) in mmol/L for parameter arrays of shape (N,) at times (T,): returns (N, T).

    aif: a BiexpAif (closed form) or a SampledAif (exact for piecewise-linear input)."""
    c1, a, c2, b = (x[..., np.newaxis] for x in irf_exponentials(fp, ps, vp, ve))
    both = aif.convolve_exponential(t_min, np.concatenate([a, b]))     # one call for both rates: half the overhead
    return c1 * both[:len(a)] + c2 * both[len(a):]


def tissue_concentration_partials(t_min: np.ndarray, irf: np.ndarray, aif) -> tuple[np.ndarray, np.ndarray]:
    """Ct (N, T) in mmol/L and its partial derivatives (N, T, 4) with respect to the impulse response's
    (c1, a, c2, b) (irf (N, 4), irf_exponentials): Ct is linear in c1 and c2, and d/da of the convolution is a
    forward difference in the rate. One convolution call on 4N rates: a fit's Jacobian then costs two model
    evaluations instead of one per parameter."""
    n = len(irf)
    c1, a, c2, b = (irf[:, i:i + 1] for i in range(4))
    convolved = aif.convolve_exponential(t_min, np.concatenate([a, b, a * (1 + RATE_STEP), b * (1 + RATE_STEP)]))
    e_a, e_b, e_a_step, e_b_step = (convolved[i * n:(i + 1) * n] for i in range(4))
    d_a = c1 * (e_a_step - e_a) / (a * RATE_STEP)
    d_b = c2 * (e_b_step - e_b) / (b * RATE_STEP)
    return c1 * e_a + c2 * e_b, np.stack([e_a, d_a, e_b, d_b], axis=-1)
