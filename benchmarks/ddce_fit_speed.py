"""Speed of the vectorised 2CXM fit: a full 160x160 slice (25600 voxels) with 16 time points.

Every voxel holds a noisy phantom tissue curve (remote, infarct, MVO or other
tissue, tiled over the slice), fitted all at once. Also times the whole slice
analysis (registration, blood pool, AIF, 5- and 30-min windows) on the phantom.
Prints JSON: seconds, voxels/s and peak traced memory. Target: < 2 s for the fit.
Usage: python benchmarks/ddce_fit_speed.py
"""
from __future__ import annotations

import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from analysis.ddce import analyse_slice  # noqa: E402
from analysis.ddce_fit import fit_tcxm  # noqa: E402
from analysis.phantoms.ddce import TRUE_PARAMETERS, blood_aif_mM, ddce_phantom, tissue_curve_numerical  # noqa: E402
from analysis.tcxm import fit_biexp_aif  # noqa: E402
from benchmarks import report  # noqa: E402

HCT, R1, NOISE = 0.42, 5.2, 0.03


def slice_curves(times: np.ndarray, voxels: int, seed: int = 0):
    def plasma(t):
        return blood_aif_mM(t) / (1 - HCT)
    curves = np.array([tissue_curve_numerical(times, p["ve"], p["vp"], p["fp"], p["ps"], plasma)
                       for p in TRUE_PARAMETERS.values()])
    clean = curves[np.arange(voxels) % len(curves)]
    sigma = NOISE * np.sqrt((1.0 + R1 * clean) ** 2 + 1.0) / R1      # native T1 1000 ms
    noisy = clean + sigma * np.random.default_rng(seed).standard_normal(clean.shape)
    return noisy, sigma, fit_biexp_aif(times, plasma(times))


def timed(fn):
    """(value, seconds, peak traced bytes): timed without tracing (tracemalloc slows numpy), then traced."""
    started = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return value, seconds, peak


def main() -> int:
    phantom = ddce_phantom()
    times = phantom.times_min
    voxels = 160 * 160
    y, sigma, aif = slice_curves(times, voxels)
    fit, fit_seconds, fit_peak = timed(lambda: fit_tcxm(times, y, aif, sigma))
    _, slice_seconds, slice_peak = timed(lambda: analyse_slice(
        phantom.t1_native_ms, phantom.t1_post_ms, times, hematocrit=HCT, r1_per_mM_s=R1,
        pixel_mm=phantom.pixel_mm))
    results = {
        "benchmark": "ddce_fit_speed", "voxels": voxels, "time_points": int(times.size),
        "fit_seconds": round(fit_seconds, 3), "fit_voxels_per_s": round(voxels / fit_seconds),
        "fit_peak_traced_memory_mb": round(fit_peak / 2 ** 20, 1), "target_seconds": 2.0,
        "failed_voxels": int(fit.failed.sum()),
        "phantom_slice_analysis_seconds_two_windows": round(slice_seconds, 3),
        "phantom_slice_peak_traced_memory_mb": round(slice_peak / 2 ** 20, 1),
        "process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    return report(results, {"fit of a 160x160 slice under 2 s": fit_seconds < 2.0})


if __name__ == "__main__":
    sys.exit(main())
