"""Automatic LV myocardium against the truth of the hard-wall phantoms (issue 16): Dice, and the error of the
mean and median myocardial ECV (percentage points), per case and point spread. Prints JSON.

    python benchmarks/myocardium_accuracy.py [--seeds 11 12 13] [--psf 0 2 2.5]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.ecv import ecv_map  # noqa: E402
from analysis.myocardium import find_lv_myocardium  # noqa: E402
from analysis.phantoms import MYOCARDIUM  # noqa: E402
from analysis.phantoms.hard_walls import HARD_WALLS  # noqa: E402
from analysis.phantoms.t1_ecv import ecv_phantom  # noqa: E402
from benchmarks import report  # noqa: E402


def measure(geometry, seed: int, psf_fwhm_mm: float) -> dict:
    p = ecv_phantom(geometry, seed=seed, noise_fraction=0.05, supersample=4, psf_fwhm_mm=psf_fwhm_mm)
    result = ecv_map(p.t1_pre_ms, p.t1_post_ms, p.hematocrit, p.pixel_mm)
    found = find_lv_myocardium(p.t1_pre_ms, result.blood_pool, p.pixel_mm, t1_post_ms=p.t1_post_ms).mask
    truth = np.isin(p.labels, MYOCARDIUM)
    return {"dice": round(float(2 * (found & truth).sum() / (found.sum() + truth.sum())), 3),
            "ecv_mean_error_points": round(float(np.mean(result.ecv[found]) - np.mean(p.ecv_truth[truth])) * 100, 2),
            "ecv_median_error_points": round(float(np.median(result.ecv[found]) - np.median(p.ecv_truth[truth])) * 100, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--psf", type=float, nargs="+", default=[0.0, 2.0, 2.5])
    args = parser.parse_args()
    rows = [{"case": name, "psf_fwhm_mm": psf, "seed": seed, **measure(geometry, seed, psf)}
            for psf in args.psf for name, geometry in HARD_WALLS.items() for seed in args.seeds]
    summary, targets = {}, {}
    for psf in args.psf:
        mine = [r for r in rows if r["psf_fwhm_mm"] == psf]
        met = all(r["dice"] >= 0.85 and abs(r["ecv_mean_error_points"]) <= 2.0 for r in mine)
        summary[f"psf {psf:g} mm"] = {
            "dice_min": min(r["dice"] for r in mine),
            "ecv_mean_error_points_range": [min(r["ecv_mean_error_points"] for r in mine),
                                            max(r["ecv_mean_error_points"] for r in mine)]}
        targets[f"Dice >= 0.85 and mean ECV within 2 points, point spread {psf:g} mm"] = met
    return report({"benchmark": "myocardium_accuracy", "summary": summary, "runs": rows}, targets)


if __name__ == "__main__":
    sys.exit(main())
