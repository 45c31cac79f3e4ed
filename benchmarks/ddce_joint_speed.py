"""Speed of the joint first-pass + delayed 2CXM fit (analysis/ddce_joint.py) beside the delayed-only fit.

The phantom pair (analysis/phantoms/ddce.py and first_pass.py: one 160x160 slice, 60 first-pass frames, 16
delayed maps, 2 s arterial delay) converted as the node converts it. Measured in one run:
- joint_full_slice: every one of the 25600 voxels fitted jointly (the phantom's converted curves, tiled),
  plus the LV myocardium's regional profile-likelihood intervals and the per-voxel identification in the
  myocardium: what "the joint fit of a 160x160 slice with intervals" asks. Target: < 10 s.
- node_slice: what the dDCE module does per slice and window (node/process/modules/ddce_first_pass.py):
  voxels of the LV myocardium only, the regional intervals, the identification.
- delayed_only_full_slice: the delayed-only voxel fit of 25600 voxels with 16 maps. Target: < 2 s.
Medians of ROUNDS rounds. Prints JSON. Usage: python benchmarks/ddce_joint_speed.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from analysis.ddce import analyse_slice, region_inputs  # noqa: E402
from analysis.ddce_fit import fit_tcxm  # noqa: E402
from analysis.ddce_identification import identified_voxels  # noqa: E402
from analysis.ddce_joint import JointCurves, fit_joint_voxels, joint_aif, profile_joint_region  # noqa: E402
from analysis.perfusion import arterial_input_mask, first_pass_concentration  # noqa: E402
from analysis.phantoms.ddce import ddce_phantom  # noqa: E402
from analysis.phantoms.first_pass import first_pass_phantom  # noqa: E402
from analysis.phantoms.short_axis import Region  # noqa: E402
from benchmarks import report  # noqa: E402

HCT, R1 = 0.42, 5.2
ROUNDS = 3


def seconds(fn) -> tuple[object, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def main() -> int:
    delayed = ddce_phantom(delay_s=2.0)
    first = first_pass_phantom(delay_s=2.0)
    result = analyse_slice(delayed.t1_native_ms, delayed.t1_post_ms, delayed.times_min, hematocrit=HCT,
                           r1_per_mM_s=R1, pixel_mm=delayed.pixel_mm, windows_min=[30.0], register=False)
    window = result.windows[0]
    conc = first_pass_concentration(first.frames, result.blood_pool, first.ts_ms, R1, pd_frames=first.pd_frames,
                                    flip_deg=first.flip_deg, pd_flip_deg=first.pd_flip_deg)
    blood, _ = conc.region(arterial_input_mask(result.blood_pool))
    t_fp = first.times_s / 60.0
    aif = joint_aif(t_fp, blood / (1 - HCT), window.times_min, result.blood_plasma_mM)
    t = np.concatenate([t_fp, window.times_min])
    noise_fp = np.maximum(conc.c_mM[:conc.baseline_frames].std(axis=0, ddof=1), 1e-4)

    def joint_curves(mask):
        ct = np.concatenate([conc.c_mM[:, mask], result.concentration_mM[:, mask]]).T
        sd = np.concatenate([np.broadcast_to(noise_fp[mask], (t_fp.size, int(mask.sum()))),
                             result.concentration_sd_mM[:, mask]]).T
        return ct, sd
    myocardium = np.isin(delayed.labels, (Region.REMOTE, Region.INFARCT, Region.MVO)) & result.valid

    def regional_and_identification(ct_myo, sd_myo):
        _, t_region, ct, se, _, _ = (None, *region_inputs(result, window, myocardium))
        curves = JointCurves(t_fp, conc.region(myocardium)[0],
                             conc.c_mM[:, myocardium].std(axis=1, ddof=1) / np.sqrt(myocardium.sum()),
                             t_region, ct, se)
        region = profile_joint_region(curves, aif)
        found = identified_voxels(t - region.delay_s / 60.0, ct_myo, sd_myo, aif, first_pass_sampled=True)
        return region, found

    ct_all, sd_all = joint_curves(result.valid)
    tiles = np.arange(160 * 160) % len(ct_all)
    ct_myo, sd_myo = joint_curves(myocardium)
    delayed_ct = result.concentration_mM[:, result.valid].T[tiles]
    delayed_sd = result.concentration_sd_mM[:, result.valid].T[tiles]
    rounds: list[tuple[float, float, float, float]] = []
    for _ in range(ROUNDS):     # the machine's speed varies by tens of per cent from run to run: medians
        (region, _), regional_s = seconds(lambda: regional_and_identification(ct_myo, sd_myo))
        full_fit, full_fit_s = seconds(lambda: fit_joint_voxels(t, ct_all[tiles], sd_all[tiles], aif,
                                                                region.delay_s))
        _, node_voxels_s = seconds(lambda: fit_joint_voxels(t, ct_myo, sd_myo, aif, region.delay_s))
        _, delayed_s = seconds(lambda: fit_tcxm(window.times_min, delayed_ct, window.aif, delayed_sd))
        rounds.append((regional_s, full_fit_s, node_voxels_s, delayed_s))
    regional_s, full_fit_s, node_voxels_s, delayed_s = (float(x) for x in np.median(rounds, axis=0))
    joint_full = full_fit_s + regional_s
    results = {
        "benchmark": "ddce_joint_speed", "rounds": ROUNDS, "voxels": 160 * 160, "first_pass_frames": int(t_fp.size),
        "delayed_maps": int(window.times_min.size), "myocardium_voxels": int(myocardium.sum()),
        "joint_full_slice_seconds": round(joint_full, 2),
        "joint_voxel_fit_full_slice_seconds": round(full_fit_s, 2),
        "regional_intervals_and_identification_seconds": round(regional_s, 2),
        "node_slice_seconds": round(node_voxels_s + regional_s, 2),
        "delayed_only_full_slice_seconds": round(delayed_s, 2),
        "failed_voxels_full_slice": int(full_fit.failed.sum()),
        "myocardium_delay_s": round(region.delay_s, 2),
    }
    return report(results, {"joint fit of a 160x160 slice with intervals under 10 s": joint_full < 10.0,
                            "delayed-only fit of a 160x160 slice under 2 s": delayed_s < 2.0})


if __name__ == "__main__":
    sys.exit(main())
