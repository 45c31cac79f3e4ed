"""Where each 2CXM parameter is identified, voxel by voxel: the likelihood-ratio test at the physiological limits.

A parameter's 95 % profile-likelihood interval (analysis/ddce_uncertainty.py) is open, and the parameter not
identified, where chi-square with the parameter held at a physiological limit (all others refitted) rises less
than 3.84 above its minimum (Raue et al., Bioinformatics 2009;25:1923). Per voxel only that test is run, at
both limits: it decides identification as the regional interval does, without the bisections that locate
the interval's ends, which makes it affordable for every voxel of the myocardium.

Per-voxel model: the regional one (analysis/ddce_uncertainty.py), with the AIF held at the window's fit to
the blood pool (a median over hundreds of voxels, far less noisy than one voxel) from the first map on.
Before it, what delayed data cannot tell about the input stays free, as in the regional fit, where the
AIF's early part moves with its parameters: a bolus at FIRST_PASS_MIN whose area may add up to
FIRST_PASS_MAX_MM_MIN or take away all of the bi-exponential's area before the first map. (Held at the
extrapolated bi-exponential instead, remote myocardium's 5-minute ve + vp came out identified in the
phantom where the regional interval, whose AIF is free, stays open above 0.19.) All voxels are fitted at once (analysis/ddce_fit.levenberg_marquardt), with parameters
mapped into their physiological box (LIMITS) by a logistic transform. No priors.
Units: t in min, concentrations in mmol/L, Fp and PS in 1/min.
"""
from __future__ import annotations

import numpy as np

from analysis.ddce_fit import STEP, forward_differences, in_threads, levenberg_marquardt, to_box
from analysis.ddce_uncertainty import (CHI2_95_ONE_DOF, FIRST_PASS_MAX_MM_MIN, FIRST_PASS_MIN, FLOW_LIMITED_RATIO,
                                       LIMITS)
from analysis.tcxm import BiexpAif, irf_exponentials, tissue_concentration, tissue_concentration_partials

MAP_PARAMETERS = ("ve", "vp", "ve_plus_vp", "ps", "fp")
ITERATIONS = 40
# natural parameters p = (ve, vp, Fp, PS, first-pass bolus area A0 in mmol/L min) and their box (A0's lower
# end is set per call: minus the AIF's area before the first map)
_INDEX = {"ve": 0, "vp": 1, "fp": 2, "ps": 3}
_LOW = np.array([LIMITS["ve"][0], LIMITS["vp"][0], LIMITS["fp"][0], LIMITS["ps"][0], 0.0])
_HIGH = np.array([LIMITS["ve"][1], LIMITS["vp"][1], LIMITS["fp"][1], LIMITS["ps"][1], FIRST_PASS_MAX_MM_MIN])
_LOG = np.array([False, False, True, True, False])
# starts as (vp share of ve + vp, Fp, PS, A0); ve + vp from the late samples
_STARTS = ((0.3, 1.0, 1.0, 1.0), (0.1, 0.2, 0.2, 0.3))


def _unbox(p: np.ndarray, low: np.ndarray, high: np.ndarray, log: np.ndarray) -> np.ndarray:
    """The inverse of ddce_fit.to_box, p kept 1e-4 of the span inside (A0's box may start below 0)."""
    span = high - low
    p = np.clip(p, low + 1e-4 * span, high - 1e-4 * span)
    log_low, log_high = np.log(np.where(log, low, 1.0)), np.log(np.where(log, high, 1.0))
    s = np.where(log, (np.log(np.where(log, p, 1.0)) - log_low) / np.where(log, log_high - log_low, 1.0),
                 (p - low) / span)
    return np.log(s / (1.0 - s))


class _Constraint:
    """The free coordinates of p with one quantity held at a value (or none): box, and p from them."""

    def __init__(self, fixed: tuple[str, float] | None, low_bolus: float, bolus: bool = True):
        self.fixed = fixed
        self.bolus = bolus
        name = fixed[0] if fixed else None
        # ve follows from ve + vp and vp; PS from PS/Fp and Fp
        held = {"ve_plus_vp": 0, "ps_over_fp": 3}.get(name or "", _INDEX.get(name or ""))
        self.free = [i for i in range(5) if i != held and (bolus or i != 4)]
        low = _LOW.copy()
        low[4] = low_bolus
        self.low, self.high, self.log = low[self.free], _HIGH[self.free].copy(), _LOG[self.free]
        if fixed is not None and name == "ve_plus_vp":   # vp free within what keeps ve = value - vp in its box
            value = fixed[1]
            self.low[0] = max(_LOW[1], value - _HIGH[0])
            self.high[0] = min(_HIGH[1], value - _LOW[0])

    def natural(self, u: np.ndarray) -> np.ndarray:
        p = np.zeros((len(u), 5))
        p[:, self.free] = to_box(u, self.low, self.high, self.log)
        if self.fixed is not None:
            name, value = self.fixed
            if name == "ve_plus_vp":
                p[:, 0] = value - p[:, 1]
            elif name == "ps_over_fp":
                p[:, 3] = value * p[:, 2]
            else:
                p[:, _INDEX[name]] = value
        return p

    def unconstrained(self, p: np.ndarray) -> np.ndarray:
        return _unbox(p[:, self.free], self.low, self.high, self.log)


def _model(t: np.ndarray, p: np.ndarray, aif: BiexpAif) -> np.ndarray:
    ve, vp, fp, ps, bolus = p.T
    c1, a, c2, b = (x[:, np.newaxis] for x in irf_exponentials(fp, ps, vp, ve))
    lag = np.maximum(t - FIRST_PASS_MIN, 0.0)
    first_pass = bolus[:, np.newaxis] * (c1 * np.exp(-a * lag) + c2 * np.exp(-b * lag))
    return tissue_concentration(t, fp, ps, vp, ve, aif) + first_pass


def _impulse_response_and_bolus(p: np.ndarray) -> np.ndarray:
    """(c1, a, c2, b, A0), (N, 5), for natural parameters p (N, 5)."""
    ve, vp, fp, ps, bolus = p.T
    return np.column_stack([*irf_exponentials(fp, ps, vp, ve), bolus])


def _partials(t: np.ndarray, q: np.ndarray, aif: BiexpAif) -> np.ndarray:
    """d _model / d (c1, a, c2, b, A0), (N, T, 5): the convolution's partials and the bolus term's."""
    _, convolved = tissue_concentration_partials(t, q[:, :4], aif)
    c1, a, c2, b, bolus = (q[:, i:i + 1] for i in range(5))
    lag = np.maximum(t - FIRST_PASS_MIN, 0.0)
    e_a, e_b = np.exp(-a * lag), np.exp(-b * lag)
    bolus_terms = np.stack([bolus * e_a, -bolus * c1 * lag * e_a, bolus * e_b, -bolus * c2 * lag * e_b,
                            c1 * e_a + c2 * e_b], axis=-1)
    return np.concatenate([convolved, np.zeros(convolved.shape[:2] + (1,))], axis=-1) + bolus_terms


def _fit(t, y, sigma, aif, constraint: _Constraint, starts: list[np.ndarray],
         stop_at: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best of the starts (each (N, 5) natural) per voxel: (p (N, 5), chi-square (N,)); a voxel's fit stops
    once its chi-square is at or below stop_at (N,) where that is given."""
    def residual(u_rows, rows):
        return (_model(t, constraint.natural(u_rows), aif) - y[rows]) / sigma[rows]

    def jacobian(u_rows, rows):
        def chain(u_shifted, _rows):
            return _impulse_response_and_bolus(constraint.natural(u_shifted))
        q = chain(u_rows, rows)
        return _partials(t, q, aif) @ forward_differences(chain, u_rows, rows, q, STEP) / sigma[rows][..., np.newaxis]
    best_p, best_cost = None, None
    for start in starts:
        u, cost = levenberg_marquardt(residual, constraint.unconstrained(start), ITERATIONS, jacobian, stop_at)
        p = constraint.natural(u)
        if best_p is None or best_cost is None:
            best_p, best_cost = p, cost
        else:
            take = cost < best_cost
            best_p[take], best_cost[take] = p[take], cost[take]
    assert best_p is not None and best_cost is not None
    return best_p, best_cost


def _rises_at(t, y, sigma, aif, constraint: _Constraint, best_cost: np.ndarray, candidates: np.ndarray,
              starts: list[np.ndarray]) -> np.ndarray:
    """Of the candidate voxels (bool (N,)), those whose chi-square under the constraint rises more than 3.84
    above best_cost from every start (each (N, 5) natural). Each start refits only the voxels still in: a
    lower minimum from another start could only take a voxel out, never put one back."""
    rising = candidates.copy()
    for start in starts:
        rows = np.flatnonzero(rising)
        if rows.size == 0:
            break
        threshold = best_cost[rows] + CHI2_95_ONE_DOF     # a fit that gets down to it has answered
        _, cost = _fit(t, y[rows], sigma[rows], aif, constraint, [start[rows]], stop_at=threshold)
        rising[rows] = cost > threshold
    return rising


def _generic_starts(t: np.ndarray, y: np.ndarray, aif: BiexpAif) -> list[np.ndarray]:
    late = t >= np.median(t)
    total = np.clip(np.mean(y[:, late], axis=1) / np.mean(aif(t[late])), 0.03, 0.95)
    starts = []
    for share, fp, ps, bolus in _STARTS:
        vp = np.minimum(share * total, 0.14)
        starts.append(np.column_stack([total - vp, vp, np.full(len(y), fp), np.full(len(y), ps),
                                       np.full(len(y), bolus)]))
    return starts


def _held_at(p: np.ndarray, name: str, value: float) -> np.ndarray:
    """p with the quantity moved to value (for ve + vp: ve takes up the difference, within its box)."""
    q = p.copy()
    if name == "ve_plus_vp":
        q[:, 1] = np.clip(q[:, 1], max(_LOW[1], value - _HIGH[0]), min(_HIGH[1], value - _LOW[0]))
        q[:, 0] = value - q[:, 1]
    else:
        q[:, _INDEX[name]] = value
    return q


def _quantity(p: np.ndarray, name: str) -> np.ndarray:
    return p[:, 0] + p[:, 1] if name == "ve_plus_vp" else p[:, _INDEX[name]]


def identified_voxels(t_min: np.ndarray, ct_mM: np.ndarray, sigma_mM: np.ndarray, aif,
                      names=MAP_PARAMETERS, first_pass_sampled: bool = False) -> dict[str, np.ndarray]:
    """Per voxel and parameter, whether its 95 % profile-likelihood interval is closed on both sides.

    t_min (T,): min after injection; ct_mM, sigma_mM (N, T): tissue concentration and its noise SD (mmol/L);
    aif: the window's plasma AIF. first_pass_sampled: the AIF holds a measured first pass (a HybridAif; t_min
    then already less the arterial delay), so no bolus is left free. Returns name -> bool (N,). A voxel
    whose best fit lies at a limit, or whose chi-square at a limit is within 3.84 of its minimum, is not
    identified for that parameter. The voxels are split over threads (ddce_fit.in_threads)."""
    y, sigma = np.asarray(ct_mM, float), np.asarray(sigma_mM, float)
    parts = in_threads(lambda rows: _identified(t_min, y[rows], sigma[rows], aif, names, first_pass_sampled), len(y))
    return {name: np.concatenate([part[name] for part in parts]) for name in names}


def _identified(t_min: np.ndarray, ct_mM: np.ndarray, sigma_mM: np.ndarray, aif,
                names, first_pass_sampled: bool) -> dict[str, np.ndarray]:
    """identified_voxels for one block of voxels."""
    t = np.asarray(t_min, float)
    y = np.asarray(ct_mM, float)
    sigma = np.maximum(np.asarray(sigma_mM, float), 1e-6)
    if len(y) == 0:
        return {name: np.zeros(0, dtype=bool) for name in names}
    generic = _generic_starts(t, y, aif)
    early = np.linspace(0.0, max(t[0], 0.0), 201)
    low_bolus = -float(np.trapezoid(aif(early), early))     # all of the AIF's area before the first map
    free = not first_pass_sampled
    best, best_cost = _fit(t, y, sigma, aif, _Constraint(None, low_bolus, free), generic)
    identified = {}
    for name in names:
        closed = np.ones(len(y), dtype=bool)
        value = _quantity(best, name)
        for side, limit in zip((-1, 1), LIMITS[name]):
            constraint = _Constraint((name, limit), low_bolus, free)
            # at or beyond the limit (ve + vp can go below its range: ve and vp have their own), it is open
            closed &= (value - limit) * side < -1e-3 * max(abs(limit), 1e-3)
            closed = _rises_at(t, y, sigma, aif, constraint, best_cost, closed,
                               [_held_at(best, name, limit), _held_at(generic[1], name, limit)])
        identified[name] = closed
    if first_pass_sampled and "ps" in identified:
        # flow-limited where PS = 3 Fp (extraction 0.95) fits as well: PS then only has a lower bound
        # not flow-limited (ddce_uncertainty.flow_limited): the best PS/Fp below FLOW_LIMITED_RATIO, and
        # chi-square with PS held at that ratio of Fp more than 3.84 above the best
        below = best[:, 3] / best[:, 2] < FLOW_LIMITED_RATIO
        held = _Constraint(("ps_over_fp", FLOW_LIMITED_RATIO), low_bolus, free)
        identified["ps"] = _rises_at(t, y, sigma, aif, held, best_cost, identified["ps"] & below, [best, generic[0]])
    return identified
