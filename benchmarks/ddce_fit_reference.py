"""The vectorised 2CXM fit against a slow per-voxel scipy.optimize.least_squares reference.

Both minimise the same objective (noise-weighted residuals plus the priors of
analysis/ddce_fit.py); the reference always tries both starts, voxel by voxel.
For each parameter: median |vectorised - reference| over the voxels, as a
fraction of the parameter's range among the reference fits. Target: < 0.01.
Usage: python benchmarks/ddce_fit_reference.py [--voxels 400]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis.ddce_fit import MYOCARDIUM_PRIORS, STARTS, _natural, _residual, _unconstrained, fit_tcxm  # noqa: E402
from analysis.phantoms.ddce import DEFAULT_TIMES_MIN  # noqa: E402
from ddce_fit_speed import slice_curves  # noqa: E402
from benchmarks import report as benchmark_report  # noqa: E402


def reference_fit(t, y, sigma, aif) -> np.ndarray:
    """(N, 4) natural parameters (ve, vp, Fp, PS), one least_squares per voxel and start."""
    late = t >= np.median(t)
    out = []
    for yi, si in zip(y, sigma):
        v0 = np.clip(np.mean(yi[late]) / np.mean(aif(t[late])), 0.03, 0.95)
        best = None
        for f0, fp0, ps0 in STARTS:
            start = _unconstrained(np.array([[v0, f0, fp0, ps0]]))[0]
            fit = least_squares(lambda u: _residual(t, yi[None], si[None], u[None], aif, MYOCARDIUM_PRIORS)[0], start,
                                method="lm", xtol=1e-12, ftol=1e-12, max_nfev=4000)
            if best is None or fit.cost < best.cost:
                best = fit
        v, f, fp, ps = _natural(best.x[None])[0]
        out.append((v * (1 - f), v * f, fp, ps))
    return np.array(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--voxels", type=int, default=400)
    args = parser.parse_args()
    t = np.array(DEFAULT_TIMES_MIN, dtype=float)
    y, sigma, aif = slice_curves(t, args.voxels, seed=3)
    started = time.perf_counter()
    fast = fit_tcxm(t, y, aif, sigma, threads=1)
    fast_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ref = reference_fit(t, y, sigma, aif)
    ref_seconds = time.perf_counter() - started
    fast_params = np.column_stack([fast.ve, fast.vp, fast.fp, fast.ps])
    report = {"benchmark": "ddce_fit_reference", "voxels": args.voxels, "target": 0.01,
              "vectorised_seconds": round(fast_seconds, 3), "reference_seconds": round(ref_seconds, 3)}
    for k, name in enumerate(("ve", "vp", "fp", "ps")):
        spread = np.ptp(ref[:, k]) or 1.0
        report[f"{name}_median_abs_diff_over_range"] = round(float(np.median(np.abs(fast_params[:, k] - ref[:, k]))
                                                               / spread), 5)
    total = fast.ve + fast.vp
    report["ve_plus_vp_median_abs_diff_over_range"] = round(float(
        np.median(np.abs(total - ref[:, 0] - ref[:, 1])) / (np.ptp(ref[:, 0] + ref[:, 1]) or 1.0)), 5)
    return benchmark_report(report, {f"{name} median difference < 1 % of range": report[key] < 0.01
                                     for name in ("ve", "vp", "fp", "ps", "ve_plus_vp")
                                     for key in [f"{name}_median_abs_diff_over_range"]})


if __name__ == "__main__":
    sys.exit(main())
