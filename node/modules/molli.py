"""MOLLI module: raw inversion-recovery images of a series -> T1 map.

Outputs: float Parametric Maps of T1 (ms) and of the fit's relative residual
(failed voxels are 0 in both, and counted in results.json), and the same T1 map as derived MR
images in ms, like a scanner's inline map, whose Series Description ends in
"_T1MAP_cmrnode"; the node takes those back in (re-ingest), so the ECV and
dDCE routes use them as if the scanner had sent them. Fit: analysis/relaxometry.py.
"""
from __future__ import annotations

import numpy as np

import node
from analysis.relaxometry import fit_molli
from dicom_out import codes
from dicom_out.derived_mr import derived_map_images
from dicom_out.parametric_map import MapQuantity, build_parametric_map
from dicom_out.uids import derived_uid
from node.prepared_images import read_prepared_series
from node.modules import ModuleInput, ModuleOutput
from node.modules.reporting import add_report, fitted_voxels_group

RESIDUAL_QUANTITY = MapQuantity("T1 residual", "RMS residual of the MOLLI fit relative to A", codes.UNIT_NONE,
                                codes.FIT_RESIDUAL, None, 0.05, 0.1)
T1_QUANTITY = MapQuantity("T1", "T1 from MOLLI, Look-Locker corrected (ms)", codes.UNIT_MS, codes.T1,
                          codes.T1_BY_INVERSION_RECOVERY, 1000.0, 1600.0)
DERIVED_SUFFIX = "_T1MAP_cmrnode"


def run(inp: ModuleInput) -> ModuleOutput:
    slices = read_prepared_series(inp.files)
    maps, residuals, failures, summaries = [], [], [], []
    for s in slices:
        n, rows, cols = s.images.shape
        fit = fit_molli(s.times_ms, s.images.reshape(n, -1).T)
        maps.append(fit.t1_ms.reshape(rows, cols))
        residuals.append(np.where(fit.failed, 0.0, fit.residual).reshape(rows, cols))
        failures.append(fit.failed.reshape(rows, cols))
        tissue = ~fit.failed
        summaries.append({
            "position_mm": s.position_mm, "inversion_times_ms": s.times_ms.round(1).tolist(),
            "inversion_time_source": s.time_source, "fitted_voxels": int(tissue.sum()),
            "failed_voxels": int(fit.failed.sum()),
            "t1_ms_median": round(float(np.median(fit.t1_ms[tissue])), 1) if tissue.any() else None,
            "residual_median": round(float(np.median(fit.residual[tissue])), 4) if tissue.any() else None})
    t1 = np.stack(maps).astype(np.float32)
    first = [s.datasets[0] for s in slices]
    header = first[0]
    description = str(header.get("SeriesDescription", "MOLLI"))
    key = inp.job_key
    pm = build_parametric_map(
        t1, first, T1_QUANTITY, series_uid=derived_uid(key, "molli", "pm-series"),
        sop_uid=derived_uid(key, "molli", "pm"), series_number=9300 + int(header.get("SeriesNumber", 0) or 0) % 100,
        series_description=f"{description} T1 (cmr-node)", content_label="T1MAP",
        software_version=node.__version__, further_source_images=[d for s in slices for d in s.datasets[1:]])
    residual_pm = build_parametric_map(
        np.stack(residuals).astype(np.float32), first, RESIDUAL_QUANTITY,
        series_uid=derived_uid(key, "molli", "residual-series"), sop_uid=derived_uid(key, "molli", "residual"),
        series_number=9350 + int(header.get("SeriesNumber", 0) or 0) % 100,
        series_description=f"{description} T1 residual (cmr-node)", content_label="T1RESID",
        software_version=node.__version__, further_source_images=[d for s in slices for d in s.datasets[1:]])
    derived = derived_map_images(
        t1, [s.datasets for s in slices], series_uid=derived_uid(key, "molli", "mr-series"),
        sop_uids=[derived_uid(key, "molli", "mr", k) for k in range(len(slices))],
        series_number=9400 + int(header.get("SeriesNumber", 0) or 0) % 100,
        series_description=f"{description}{DERIVED_SUFFIX}", image_type_value3="T1 MAP",
        derivation="MOLLI three-parameter fit with polarity restoration, Look-Locker corrected (cmr-node)",
        window=(1000, 1600), software_version=node.__version__)
    output = ModuleOutput(datasets=[pm, residual_pm] + derived, reingest=[str(d.SOPInstanceUID) for d in derived],
                          results={"module": "molli", "slices": summaries, "unit": "ms",
                                   "derived_series_description": f"{description}{DERIVED_SUFFIX}"})
    group = fitted_voxels_group(t1, np.stack(residuals), np.stack(failures), pm, residual_pm, T1_QUANTITY,
                                RESIDUAL_QUANTITY)
    add_report(output, inp, "molli", [group], [d for s in slices for d in s.datasets], description)
    return output
