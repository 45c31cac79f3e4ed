"""One 2CXM fit of a first-pass perfusion series and the delayed T1 maps of the same injection.

Delayed maps (1-30 min) decide ve + vp and ve; the first pass, one image per heartbeat over the first
minute, decides Fp and, where PS is not much larger than Fp, PS (issue 14). Fitted together, one parameter
set explains both:
- One AIF (analysis/tcxm.HybridAif): the first-pass plasma samples as measured, joined linearly to the
  bi-exponential fitted to the delayed blood pool's plasma samples at the first map.
- The tissue sees the AIF delayed by delay_s (arterial delay, as analysis/first_pass.py): Ct(t) =
  h(t) * Ca(t - delay), h the 2CXM impulse response (Sourbron & Buckley, Phys Med Biol 2013;58:R1).
- Regional: the region's mean curves, each sample weighted by its standard error, and 95 % intervals by
  profile likelihood (analysis/ddce_uncertainty.profile), open at a physiological limit = not identified.
- Per voxel: the same model with the region's delay, fitted by analysis/ddce_fit.fit_tcxm without priors.
- Myocardial blood flow MBF = Fp / (1 - Hct), per gram of tissue (plasma flow to blood flow; e.g. Kellman
  et al., JCMR 2017;19:43).
Units: t in min after injection, delay in s, Fp and PS in 1/min (mL/min/mL tissue), MBF in mL/min/g.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.ddce import TISSUE_DENSITY_G_PER_ML
from analysis.ddce_fit import TcxmFit, fit_tcxm
from analysis.ddce_uncertainty import FLOW_LIMITED_RATIO, LIMITS, Estimate, fit_held, flow_limited, profile
from analysis.errors import AnalysisError
from analysis.tcxm import HybridAif, fit_biexp_aif, tissue_concentration

MAX_DELAY_S = 20.0
# x = (ve, vp, ln Fp, ln PS, delay_s)
_LOW = np.array([LIMITS["ve"][0], LIMITS["vp"][0], np.log(LIMITS["fp"][0]), np.log(LIMITS["ps"][0]), 0.0])
_HIGH = np.array([LIMITS["ve"][1], LIMITS["vp"][1], np.log(LIMITS["fp"][1]), np.log(LIMITS["ps"][1]), MAX_DELAY_S])
_STARTS = ((0.2, 0.05, 1.0, 1.0), (0.4, 0.03, 0.3, 0.2), (0.15, 0.08, 2.0, 5.0), (0.5, 0.05, 0.5, 8.0),
           (0.3, 0.02, 0.05, 0.05))
JOINT_NAMES = ("ve", "vp", "ve_plus_vp", "ps", "fp")


@dataclass(frozen=True)
class JointCurves:
    """A region's samples: first pass (F,) and delayed maps (T,), concentrations in mmol/L."""
    t_fp_min: np.ndarray
    ct_fp_mM: np.ndarray
    se_fp_mM: np.ndarray
    t_maps_min: np.ndarray
    ct_maps_mM: np.ndarray
    se_maps_mM: np.ndarray

    @property
    def t_min(self) -> np.ndarray:
        return np.concatenate([self.t_fp_min, self.t_maps_min])

    @property
    def ct_mM(self) -> np.ndarray:
        return np.concatenate([self.ct_fp_mM, self.ct_maps_mM])

    @property
    def se_mM(self) -> np.ndarray:
        return np.maximum(np.concatenate([self.se_fp_mM, self.se_maps_mM]), 1e-6)


def joint_aif(t_fp_min: np.ndarray, cp_fp_mM: np.ndarray, t_maps_min: np.ndarray, cp_maps_mM: np.ndarray) -> HybridAif:
    """The injection's plasma AIF: first-pass samples, then the bi-exponential of the delayed samples."""
    t_maps = np.asarray(t_maps_min, float)
    if t_maps.size < 3:
        raise AnalysisError("the joint fit needs at least 3 delayed maps")
    if np.asarray(t_fp_min, float).min() >= t_maps[0]:
        raise AnalysisError("the first-pass series starts after the first delayed map")
    return HybridAif.join(t_fp_min, cp_fp_mM, fit_biexp_aif(t_maps, cp_maps_mM), float(t_maps[0]))


class _JointProblem:
    """Weighted residuals of a region's first-pass and delayed tissue samples for x = (ve, vp, ln Fp, ln PS,
    delay_s), the AIF known."""

    def __init__(self, curves: JointCurves, aif: HybridAif):
        self.t, self.y, self.se, self.aif = curves.t_min, curves.ct_mM, curves.se_mM, aif
        self.se_scale = 1.0     # set by ddce_uncertainty.profile

    def residuals(self, x: np.ndarray) -> np.ndarray:
        """(n, samples) for parameter rows x (n, 5): one model call per distinct delay, since a call on several
        rows costs about what one row does."""
        model = np.empty((len(x), self.t.size))
        for delay in np.unique(x[:, 4]):
            rows = x[:, 4] == delay
            model[rows] = tissue_concentration(self.t - delay / 60.0, np.exp(x[rows, 2]), np.exp(x[rows, 3]),
                                               x[rows, 1], x[rows, 0], self.aif)
        return (model - self.y) / self.se

    def residual(self, x: np.ndarray) -> np.ndarray:
        return self.residuals(x[np.newaxis])[0]

    def fit(self, starts, fixed: tuple[str, float] | None = None) -> tuple[np.ndarray, float]:
        return fit_held(self.residual, starts, _LOW, _HIGH, fixed, residuals=self.residuals)


@dataclass(frozen=True)
class JointRegion:
    estimates: dict[str, Estimate]      # 95 % profile-likelihood intervals (JOINT_NAMES)
    delay_s: float                      # the best fit's arterial delay
    chi_square: float
    samples: int
    flow_limited: bool = False          # PS >= 3 Fp fits: PS reported as a lower bound
    se_scale: float = 1.0               # standard errors scaled by sqrt(chi-square / dof) where that is > 1


def _starts(delay_s: float) -> list[np.ndarray]:
    return [np.array([ve, vp, np.log(fp), np.log(ps), delay_s]) for ve, vp, fp, ps in _STARTS]


def profile_joint_region(curves: JointCurves, aif: HybridAif, names=JOINT_NAMES) -> JointRegion:
    """A region's 2CXM quantities with 95 % intervals from its first-pass and delayed curves together."""
    problem = _JointProblem(curves, aif)
    # the first pass fixes the delay well: starts at a short and a long one, then every fit starts near it
    best_x, best_cost = problem.fit(_starts(1.0) + _starts(6.0))
    starts = [best_x, *_starts(float(best_x[4]))[:3]]
    estimates = profile(problem, starts, names)
    _, at_ratio = problem.fit(starts, fixed=("ps_over_fp", FLOW_LIMITED_RATIO))
    scale = problem.se_scale        # chi-squares below are on the rescaled errors
    limited = bool(flow_limited(np.exp(best_x[3] - best_x[2]), at_ratio - best_cost / scale ** 2))
    if limited and "ps" in estimates:   # a lower bound only, whatever the upper end of the interval
        estimates["ps"] = Estimate(value=None, ci95=(estimates["ps"].ci95[0], None), identified=False)
    return JointRegion(estimates=estimates, delay_s=float(best_x[4]), chi_square=float(best_cost),
                       samples=int(curves.t_min.size), flow_limited=limited, se_scale=scale)


def fit_joint_voxels(curves_t_min: np.ndarray, ct_mM: np.ndarray, sigma_mM: np.ndarray, aif: HybridAif,
                     delay_s: float) -> TcxmFit:
    """Per voxel: ct_mM, sigma_mM (N, F + T) at curves_t_min (first pass then maps), the AIF delayed by the
    region's delay_s; a plain weighted least-squares 2CXM fit (no priors: the first pass decides Fp).
    Measured on the phantom: a quarter second more delay gives 16 % more Fp, so the voxels inherit any
    error of the region's delay; a per-voxel delay (a grid of +-1 s with refinement) was no better, since
    noise then trades Fp against delay voxel by voxel (remote Fp +10 %), and cost 25 times as much."""
    return fit_tcxm(np.asarray(curves_t_min, float) - delay_s / 60.0, ct_mM, aif, sigma_mM, priors=None)


def mbf_ml_per_min_per_g(fp_per_min, hematocrit: float):
    """Myocardial blood flow (mL/min/g) from plasma flow Fp (mL/min/mL tissue)."""
    return np.asarray(fp_per_min, float) / TISSUE_DENSITY_G_PER_ML / (1.0 - hematocrit)
