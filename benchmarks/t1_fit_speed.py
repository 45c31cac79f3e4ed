"""Speed of the vectorised inversion-recovery T1 fits, per slice, as the molli module runs them.

- MOLLI 5(3)3 (8 samples) and Philips 3(3)3(3)5 (11 samples, interleaved) on a 256 x 218 slice;
- ShMOLLI 5(1)1(1)1 (three fits and the conditional selection) on the 288 x 384 Siemens phantom slice size.
Voxels hold Rician MOLLI signals of T1 200-2500 ms at SNR 20, a third of them background noise.
Prints JSON: seconds and voxels/s per scheme, peak traced memory. Target: under 10 s per slice (a worker
fits a study's slices while the scanner is still sending the next series).
Usage: python benchmarks/t1_fit_speed.py
"""
from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from analysis.relaxometry import fit_inversion_recovery, fit_shmolli  # noqa: E402
from benchmarks import report  # noqa: E402

SCHEMES = {
    "MOLLI 5(3)3": sorted([100 + k * 1000.0 for k in range(5)] + [180 + k * 1000.0 for k in range(3)]),
    "Philips 3(3)3(3)5": sorted([350 + k * 893.0 for k in range(3)] + [266 + k * 893.0 for k in range(3)]
                                + [231 + k * 893.0 for k in range(5)]),
    "ShMOLLI 5(1)1(1)1": [100.0, 180.0, 260.0, 1100.0, 2100.0, 3100.0, 4100.0],
}
SHAPES = {"MOLLI 5(3)3": (256, 218), "Philips 3(3)3(3)5": (256, 218), "ShMOLLI 5(1)1(1)1": (288, 384)}


def signals(ti: list[float], voxels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t1 = rng.uniform(200.0, 2500.0, voxels)
    signed = 1.0 - 1.9 * np.exp(-np.asarray(ti)[None] / (t1[:, None] / 0.9))
    signed[: voxels // 3] = 0.0                                            # background
    noise = (rng.standard_normal(signed.shape) + 1j * rng.standard_normal(signed.shape)) / 20.0
    return np.abs(signed + noise)


def main() -> int:
    results = {}
    tracemalloc.start()
    for name, ti in SCHEMES.items():
        voxels = int(np.prod(SHAPES[name]))
        y = signals(ti, voxels)
        start = time.perf_counter()
        if name.startswith("ShMOLLI"):
            fit_shmolli(np.array(ti), y, np.isin(np.arange(7), (0, 3, 4, 5, 6)))
        else:
            fit_inversion_recovery(np.array(ti), y)
        seconds = time.perf_counter() - start
        results[name] = {"voxels": voxels, "seconds": round(seconds, 2), "voxels_per_s": round(voxels / seconds)}
    results["peak_traced_mb"] = round(tracemalloc.get_traced_memory()[1] / 1e6, 1)
    return report(results, {f"{name} slice under 10 s": results[name]["seconds"] < 10.0 for name in SCHEMES})


if __name__ == "__main__":
    sys.exit(main())
