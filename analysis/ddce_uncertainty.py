"""Regional 2CXM parameters with 95 % confidence intervals by profile likelihood, and whether each is identified.

The region's mean tissue concentration and the blood pool's plasma concentration are fitted together: the
2CXM (ve, vp, Fp, PS) and the bi-exponential AIF (analysis/tcxm.py) at once, each sample weighted by the
standard error of its mean. The AIF is thereby not taken as known: its unobserved early part (before the
first map) is as free as the blood samples allow, and what that freedom does to the tissue parameters
widens their intervals. Every reported quantity g (ve, vp, ve + vp, PS, Fp, mean lag) is then fixed on a
grid across its physiological range with all other parameters refitted; the interval is where chi-square
rises less than 3.84 above its minimum (chi-square, 1 degree of freedom, 95 %; Venzon & Moolgavkar, Appl
Stat 1988;37:87). An interval that reaches a limit of the range is open on that side: the data give a bound
only, and the parameter is not identified (Raue et al., Bioinformatics 2009;25:1923). No priors: the
interval says what the data say.

Mean lag: the first moment of the 2CXM impulse response, tau = (c1/a^2 + c2/b^2) / (c1/a + c2/b) (min);
for a slowly varying input Ct(t) ~ (ve + vp) Ca(t - tau), which delayed data determine besides ve + vp.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import least_squares

from analysis.tcxm import BiexpAif, irf_exponentials

CHI2_95_ONE_DOF = 3.841   # 95 % quantile of chi-square with 1 degree of freedom
BISECTIONS = 6   # the interval's ends to 1/64 of the distance to the limit (in log for rates and the lag)

# Physiological ranges of the tissue quantities (also the fit's bounds); Fp and PS in 1/min, the lag in min.
# vp: myocardial blood volume is about 0.1 mL/mL (Kaul & Ito, Circulation 2004;109:146), plasma 0.06; 0.15
# allows for vasodilation and hyperaemic infarcts.
LIMITS = {"ve": (0.005, 0.95), "vp": (0.002, 0.15), "ve_plus_vp": (0.02, 0.98), "ps": (0.005, 20.0),
          "fp": (0.02, 10.0), "mean_lag_min": (0.002, 20.0)}
LOG_SCALED = {"ps", "fp", "mean_lag_min", "ps_over_fp"}


@dataclass(frozen=True)
class Estimate:
    """A regional parameter: value with its 95 % interval; an open end is None, and then identified is False."""
    value: float | None          # the maximum-likelihood value; None when not identified
    ci95: tuple[float | None, float | None]
    identified: bool

    def as_dict(self, scale: float = 1.0, decimals: int = 4) -> dict:
        def shown(x):
            return None if x is None else round(x * scale, decimals)
        return {"value": shown(self.value), "ci95": [shown(self.ci95[0]), shown(self.ci95[1])],
                "identifiable": self.identified}


def mean_lag_min(q: np.ndarray) -> np.ndarray:
    """First moment of the impulse response (min) for q (N, 4) = (ve, vp, Fp, PS)."""
    c1, a, c2, b = irf_exponentials(q[:, 2], q[:, 3], q[:, 1], q[:, 0])
    return (c1 / a ** 2 + c2 / b ** 2) / (c1 / a + c2 / b)


QUANTITY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ve": lambda q: q[:, 0], "vp": lambda q: q[:, 1], "ve_plus_vp": lambda q: q[:, 0] + q[:, 1],
    "fp": lambda q: q[:, 2], "ps": lambda q: q[:, 3], "mean_lag_min": mean_lag_min,
    "ps_over_fp": lambda q: q[:, 3] / q[:, 2]}

# Flow-limited exchange: extraction E = 1 - exp(-PS/Fp) (Renkin-Crone; Crone, Acta Physiol Scand 1963;58:292)
# is 0.95 or more once PS >= 3 Fp, and then the tissue curve no longer tells PS from any larger PS.
FLOW_LIMITED_RATIO = 3.0


def flow_limited(best_ratio, chi_square_gap_at_ratio):
    """Whether the data allow extraction of 0.95 or more (elementwise): the best PS/Fp is at least
    FLOW_LIMITED_RATIO, or holding PS = FLOW_LIMITED_RATIO Fp raises chi-square by less than 3.84."""
    return (np.asarray(best_ratio) >= FLOW_LIMITED_RATIO) | (np.asarray(chi_square_gap_at_ratio) <= CHI2_95_ONE_DOF)


FIRST_PASS_MIN = 0.2
# Largest plasma first-pass area (mmol/L min): a 0.2 mmol/kg bolus at a cardiac output of 2.5 L/min, scaled
# from the population AIF (Parker et al., MRM 2006;56:993: 2 mmol/L min of plasma at 0.1 mmol/kg, about
# 5 L/min).
FIRST_PASS_MAX_MM_MIN = 8.0

# x = (ve, vp, ln Fp, ln PS, ln a1, ln dm, ln a2, ln m2, ln A0): tissue; the AIF a1 e^-(dm+m2)t + a2 e^-m2 t
# seen by the blood samples, plus the unobserved first pass as a bolus of area A0 (mmol/L min) at FIRST_PASS_MIN
_LOW = np.array([LIMITS["ve"][0], LIMITS["vp"][0], np.log(LIMITS["fp"][0]), np.log(LIMITS["ps"][0]),
                 np.log(1e-3), np.log(1e-2), np.log(1e-3), np.log(1e-4), np.log(1e-3)])
_HIGH = np.array([LIMITS["ve"][1], LIMITS["vp"][1], np.log(LIMITS["fp"][1]), np.log(LIMITS["ps"][1]),
                  np.log(200.0), np.log(50.0), np.log(50.0), np.log(5.0), np.log(FIRST_PASS_MAX_MM_MIN)])


def _tissue(x: np.ndarray) -> np.ndarray:
    """(ve, vp, Fp, PS) rows (n, 4) of parameter vectors x (k,) or rows (n, k) that start (ve, vp, ln Fp, ln PS)."""
    rows = np.atleast_2d(x)
    return np.column_stack([rows[:, 0], rows[:, 1], np.exp(rows[:, 2]), np.exp(rows[:, 3])])


class _Problem:
    """Weighted residuals of the blood and tissue samples, optionally with one quantity held fixed."""

    def __init__(self, t_min, ct_mM, se_t_mM, cp_mM, se_p_mM):
        self.t = np.asarray(t_min, float)
        self.y = np.concatenate([np.asarray(ct_mM, float), np.asarray(cp_mM, float)])
        self.se = np.maximum(np.concatenate([np.asarray(se_t_mM, float), np.asarray(se_p_mM, float)]), 1e-6)
        self.se_scale = 1.0     # set by profile

    def residual(self, x: np.ndarray) -> np.ndarray:
        """Weighted residuals (2T,): tissue then blood."""
        return self.residuals(x[np.newaxis])[0]

    def residuals(self, x: np.ndarray) -> np.ndarray:
        """Weighted residuals (n, 2T), tissue then blood, for parameter rows x (n, 9): many rows in one call cost
        about what one does, so that a Jacobian is one call (ddce_uncertainty.fit_held)."""
        ve, vp, fp, ps = x[:, 0:1], x[:, 1:2], np.exp(x[:, 2:3]), np.exp(x[:, 3:4])
        a1, dm, a2, m2, bolus = (np.exp(x[:, i:i + 1]) for i in range(4, 9))
        m1 = dm + m2
        trace = (fp + ps) / vp + ps / ve
        root = np.sqrt(np.maximum(trace * trace / 4.0 - fp * ps / (vp * ve), 0.0))
        a, b = trace / 2.0 + root, trace / 2.0 - root
        c1 = (fp * fp / vp - b * fp) / np.maximum(a - b, 1e-9 * a)
        c2 = fp - c1
        t = self.t
        e_m1, e_m2, e_a, e_b = np.exp(-m1 * t), np.exp(-m2 * t), np.exp(-a * t), np.exp(-b * t)

        def convolved(k, e_k):
            return a1 * (e_m1 - e_k) / _apart(k, m1) + a2 * (e_m2 - e_k) / _apart(k, m2)
        lag = np.maximum(t - FIRST_PASS_MIN, 0.0)
        tissue = (c1 * convolved(a, e_a) + c2 * convolved(b, e_b)
                  + bolus * (c1 * np.exp(-a * lag) + c2 * np.exp(-b * lag)))
        blood = a1 * e_m1 + a2 * e_m2
        return (np.concatenate([tissue, blood], axis=1) - self.y) / self.se

    def fit(self, starts, fixed: tuple[str, float] | None = None) -> tuple[np.ndarray, float]:
        return fit_held(self.residual, starts, _LOW, _HIGH, fixed, residuals=self.residuals)


def fit_held(residual: Callable[[np.ndarray], np.ndarray], starts, low: np.ndarray, high: np.ndarray,
             fixed: tuple[str, float] | None = None,
             residuals: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, float]:
    """The best bounded least-squares fit from the starts: (x, chi-square); x[:4] = (ve, vp, ln Fp, ln PS).
    With fixed = (quantity, value) the quantity is held there by a stiff penalty (relative 1e-4 for rates and
    the lag, absolute 1e-4 for fractions); chi-square is inf when no start reached the fixed value.
    residuals: the residual of many parameter vectors at once, rows of X (n, k) -> (n, M), when one call on
    several rows costs about what one row does; then the forward-difference Jacobian is a single call."""
    def penalty(q: np.ndarray) -> np.ndarray:      # (n,) for tissue parameters q (n, 4)
        assert fixed is not None
        name, value = fixed
        scale = value if name in LOG_SCALED else 1.0
        return (QUANTITY[name](q) - value) / (1e-4 * scale)

    def penalised(x):
        r = residual(x)
        return r if fixed is None else np.append(r, penalty(_tissue(x)))

    def jacobian(x):
        # forward differences of the same step scipy's "2-point" takes, away from the upper bound
        step = np.sqrt(np.finfo(float).eps) * np.maximum(1.0, np.abs(x))
        step = np.where(x + step > high, -step, step)
        rows = np.vstack([x, x + np.diag(step)])
        assert residuals is not None
        r = residuals(rows)
        if fixed is not None:
            r = np.column_stack([r, penalty(_tissue(rows))])
        return ((r[1:] - r[0]) / step[:, np.newaxis]).T
    best: tuple[np.ndarray, float] | None = None
    for start in starts:
        solution = least_squares(penalised, np.clip(start, low + 1e-9, high - 1e-9), bounds=(low, high),
                                 jac=jacobian if residuals is not None else "2-point",
                                 method="trf", x_scale="jac", max_nfev=200)
        if fixed is not None and abs(float(QUANTITY[fixed[0]](_tissue(solution.x))[0]) - fixed[1]) > \
                1e-3 * max(abs(fixed[1]), 1e-3):
            continue   # this start could not reach the fixed value
        cost = float(np.sum(residual(solution.x) ** 2))
        if best is None or cost < best[1]:
            best = (solution.x, cost)
    return best if best is not None else (np.asarray(starts[0], float), np.inf)


def _apart(k: np.ndarray, m: np.ndarray) -> np.ndarray:
    """k - m, kept away from 0 where the closed form has a removable singularity."""
    gap, floor = k - m, 1e-7 * np.maximum(np.abs(m), 1e-9)
    return np.where(np.abs(gap) > floor, gap, floor)


def _starts(aif: BiexpAif) -> list[np.ndarray]:
    dm = max(aif.m1 - aif.m2, 1e-2)
    aif_x = np.log([max(aif.a1, 1e-3), dm, max(aif.a2, 1e-3), max(aif.m2, 1e-4), 0.5])
    return [np.concatenate([[ve, vp, np.log(fp), np.log(ps)], aif_x])
            for ve, vp, fp, ps in ((0.2, 0.05, 1.0, 1.0), (0.4, 0.03, 0.3, 0.2), (0.15, 0.08, 2.0, 5.0),
                                   (0.5, 0.05, 0.5, 8.0))]


def _between(name: str, a: float, b: float) -> float:
    return float(np.sqrt(a * b)) if name in LOG_SCALED else 0.5 * (a + b)


def _bound(problem: _Problem, name: str, best: tuple[np.ndarray, float], ml: float, side: int,
           starts: list[np.ndarray]) -> float | None:
    """The interval's end on one side of the maximum-likelihood value ml, or None when chi-square at the
    physiological limit is still within the threshold (an open interval). Otherwise the crossing is found by
    bisection between ml and the limit, each fit starting from the nearest point inside (from a fresh start
    where that cannot reach the value); the limit itself is tried from every start: a profile that stays
    low there, in any minimum, leaves the interval open."""
    limit = LIMITS[name][1] if side > 0 else LIMITS[name][0]
    if (limit - ml) * side <= 0:
        return None
    _, cost = problem.fit([best[0], *starts], fixed=(name, limit))
    if np.isfinite(cost) and cost - best[1] <= CHI2_95_ONE_DOF:
        return None
    inside, outside, x = ml, limit, best[0]
    for _ in range(BISECTIONS):
        middle = _between(name, inside, outside)
        x_mid, cost_mid = problem.fit([x], fixed=(name, middle))
        if not np.isfinite(cost_mid):
            x_mid, cost_mid = problem.fit([starts[0]], fixed=(name, middle))
        if np.isfinite(cost_mid) and cost_mid - best[1] <= CHI2_95_ONE_DOF:
            inside, x = middle, x_mid
        else:
            outside = middle
    return _between(name, inside, outside)


def profile_region(t_min: np.ndarray, ct_mM: np.ndarray, se_t_mM: np.ndarray, cp_mM: np.ndarray,
                   se_p_mM: np.ndarray, aif_start: BiexpAif, names=tuple(LIMITS)) -> dict[str, Estimate]:
    """95 % profile-likelihood intervals of a region's 2CXM quantities, the AIF fitted alongside.

    ct_mM, se_t_mM (T,): the region's mean tissue concentration at t_min (min after injection) and its
    standard error; cp_mM, se_p_mM (T,): the blood pool's plasma concentration and its standard error;
    aif_start: a bi-exponential AIF fitted to cp_mM, where the joint fit starts."""
    return profile(_Problem(t_min, ct_mM, se_t_mM, cp_mM, se_p_mM), _starts(aif_start), names)


MIN_DOF_TO_SCALE = 10   # fewer degrees of freedom leave chi-square / dof too uncertain to rescale by


def scale_to_fit(problem, best: tuple[np.ndarray, float]) -> tuple[tuple[np.ndarray, float], float]:
    """Where the best fit's chi-square per degree of freedom exceeds 1 (a region mixing tissues is no single
    2CXM curve), the standard errors are scaled by its square root so that the intervals hold what the
    scatter says (the Birge ratio; e.g. Press et al., Numerical Recipes, 15.1). Returns (best with the
    rescaled chi-square, scale >= 1)."""
    x, cost = best
    dof = problem.residual(x).size - x.size
    if dof < MIN_DOF_TO_SCALE or not np.isfinite(cost) or cost <= dof:
        return best, 1.0
    scale = float(np.sqrt(cost / dof))
    problem.se = problem.se * scale
    return (x, cost / scale ** 2), scale


def profile(problem, starts: list[np.ndarray], names) -> dict[str, Estimate]:
    """Profile-likelihood intervals of the named quantities for a problem with fit(starts, fixed) whose
    parameter vectors start with (ve, vp, ln Fp, ln PS), and standard errors in problem.se (scale_to_fit)."""
    best, problem.se_scale = scale_to_fit(problem, problem.fit(starts))
    q = _tissue(best[0])
    estimates = {}
    for name in names:
        ml = float(QUANTITY[name](q)[0])
        low = _bound(problem, name, best, ml, -1, starts)
        high = _bound(problem, name, best, ml, +1, starts)
        identified = low is not None and high is not None
        estimates[name] = Estimate(value=ml if identified else None, ci95=(low, high), identified=identified)
    return estimates
