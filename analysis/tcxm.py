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

import numpy as np
from scipy.optimize import least_squares

from analysis.errors import AnalysisError



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

    def convolve_exponential(self, t_min: np.ndarray, k: np.ndarray) -> np.ndarray:
        """exp(-k t) * Ca(t) at t_min (T,) for rates k (N, 1) in 1/min: closed form, (N, T)."""
        t = np.asarray(t_min, dtype=float)
        k = _apart(_apart(k, self.m1), self.m2)
        rates = np.array([self.m1, self.m2])
        weights = np.array([self.a1, self.a2]) / (k - rates)             # (N, 2)
        # sum_j w_j (exp(-m_j t) - exp(-k t)), the first part as one matrix product
        return weights @ np.exp(-np.outer(rates, t)) - np.exp(-k * t) * weights.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class SampledAif:
    """Plasma concentration sampled densely (first-pass DCE), linear between samples; t in min, mmol/L."""
    t_min: np.ndarray
    c_mM: np.ndarray

    def __call__(self, t_min: np.ndarray) -> np.ndarray:
        return np.interp(t_min, self.t_min, self.c_mM, left=0.0)

    def convolve_exponential(self, t_min: np.ndarray, k: np.ndarray) -> np.ndarray:
        """exp(-k t) * Ca(t), exact for a piecewise-linear Ca: the recursion
        F(t+d) = e^(-k d) F(t) + Ca(t) (1 - e^(-k d))/k + (Ca(t+d) - Ca(t)) (d/k - (1 - e^(-k d))/k^2) / d."""
        grid, ca = np.asarray(self.t_min, float), np.asarray(self.c_mM, float)
        k = np.maximum(np.asarray(k, float)[:, 0], 1e-9)
        f = np.zeros((k.size, grid.size))
        for i, d in enumerate(np.diff(grid)):
            decay = np.exp(-k * d)
            e1 = (1.0 - decay) / k
            e2 = d / k - (1.0 - decay) / (k * k)
            f[:, i + 1] = decay * f[:, i] + ca[i] * e1 + (ca[i + 1] - ca[i]) * e2 / d
        return np.stack([np.interp(t_min, grid, row) for row in f])


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
    return c1 * aif.convolve_exponential(t_min, a) + c2 * aif.convolve_exponential(t_min, b)
