"""MOLLI module: raw inversion-recovery images of a series -> T1 map (MOLLI, ShMOLLI, Look-Locker).

The fit follows the scheme the images show (node/inputs/prepared_images.py): ShMOLLI 5(1)1(1)1 gets its
conditional sample selection; other schemes one fit over all images, Look-Locker corrected where an
inversion is followed by several images (analysis/relaxometry.py). A ShMOLLI series whose acquisition
order is lost (one inversion seen) but whose name says ShMOLLI takes the first inversion's samples as
the 1st, 4th to 7th by inversion time, as the sequence plays them.

Outputs: float Parametric Maps of T1 (ms) and of the fit's relative residual (failed voxels are 0 in
both, and counted in results.json), and the same T1 map as derived MR images in ms, like a scanner's
inline map, whose Series Description ends in "_T1MAP_cmrnode"; the node takes those back in
(re-ingest), so the ECV and dDCE routes use them as if the scanner had sent them.
"""
from __future__ import annotations

import numpy as np

import node
from analysis.relaxometry import MolliFit, fit_inversion_recovery, fit_shmolli
from dicom_out.derived_mr import derived_map_images
from dicom_out.descriptions import description_with_suffix
from dicom_out.parametric_map import build_parametric_map
from dicom_out.quantities import map_quantity
from dicom_out.uids import derived_uid
from node.inputs.prepared_images import PreparedSlice, read_prepared_series
from node.process.modules import ModuleInput, ModuleOutput
from node.process.modules.quality import raw_images_snr
from node.process.modules.reporting import add_report, fitted_voxels_group
from node.process.modules.output_series import OUTPUT_SERIES

T1_QUANTITY, RESIDUAL_QUANTITY = map_quantity("t1_ms"), map_quantity("t1_residual")
DERIVED_SUFFIX = OUTPUT_SERIES["molli.scanner_like_t1"].description
SHMOLLI_FIRST_INVERSION = (0, 3, 4, 5, 6)   # by inversion time: 5(1)1(1)1 plays TI1, TI1+RR, ... then TI2, TI3


def _fit(s: PreparedSlice, description: str) -> tuple[MolliFit, str]:
    """The fit the slice's scheme calls for, and its name for results.json."""
    samples = s.images.reshape(len(s.times_ms), -1).T
    if s.scheme == "5-1-1":
        return fit_shmolli(s.times_ms, samples, s.inversion == 0), "ShMOLLI conditional (5, 6 or 7 samples)"
    if len(s.times_ms) == 7 and s.scheme == "7" and "SHMOLLI" in description.upper():
        first = np.isin(np.arange(7), SHMOLLI_FIRST_INVERSION)
        return fit_shmolli(s.times_ms, samples, first), \
            "ShMOLLI conditional (5, 6 or 7 samples; first inversion taken from the inversion times)"
    if s.look_locker:
        return fit_inversion_recovery(s.times_ms, samples), "three-parameter, Look-Locker corrected"
    return fit_inversion_recovery(s.times_ms, samples, look_locker=False), \
        "three-parameter, one image per inversion (no Look-Locker correction)"


def _summary(s: PreparedSlice, fit: MolliFit, method: str) -> dict:
    tissue = ~fit.failed
    def median(values):
        return round(float(np.median(values[tissue])), 4) if tissue.any() else None
    return {"position_mm": s.position_mm, "inversion_times_ms": s.times_ms.round(1).tolist(),
            "inversion_time_source": s.time_source, "images_per_inversion": s.scheme, "fit": method,
            "fitted_voxels": int(tissue.sum()), "failed_voxels": int(fit.failed.sum()),
            "t1_ms_median": median(fit.t1_ms), "t1_standard_error_ms_median": median(fit.t1_se_ms),
            "residual_median": median(fit.residual),
            "samples_used": {str(n): int(c) for n, c in zip(*np.unique(fit.samples_used[tissue], return_counts=True))}}


def run(inp: ModuleInput) -> ModuleOutput:
    slices = read_prepared_series(inp.files)
    header = slices[0].frames[0].header
    description = str(header.get("SeriesDescription", "") or "MOLLI")
    maps, residuals, failures, summaries = [], [], [], []
    for s in slices:
        n, rows, cols = s.images.shape
        fit, method = _fit(s, description)
        maps.append(fit.t1_ms.reshape(rows, cols))
        residuals.append(np.where(fit.failed, 0.0, fit.residual).reshape(rows, cols))
        failures.append(fit.failed.reshape(rows, cols))
        summaries.append(_summary(s, fit, method))
    t1 = np.stack(maps).astype(np.float32)
    first = [s.frames[0] for s in slices]
    further = [f.header for s in slices for f in s.frames[1:]]
    key = inp.job_key
    number = int(header.get("SeriesNumber", 0) or 0)
    pm = build_parametric_map(
        t1, first, T1_QUANTITY, series_uid=derived_uid(key, "molli", "pm-series"),
        sop_uid=derived_uid(key, "molli", "pm"), series_number=OUTPUT_SERIES["molli.t1"].number(number),
        series_description=description_with_suffix(description, OUTPUT_SERIES["molli.t1"].describe(), header), content_label="T1MAP",
        software_version=node.__version__, further_source_images=further)
    residual_pm = build_parametric_map(
        np.stack(residuals).astype(np.float32), first, RESIDUAL_QUANTITY,
        series_uid=derived_uid(key, "molli", "residual-series"), sop_uid=derived_uid(key, "molli", "residual"),
        series_number=OUTPUT_SERIES["molli.residual"].number(number),
        series_description=description_with_suffix(description, OUTPUT_SERIES["molli.residual"].describe(), header),
        content_label="T1RESID", software_version=node.__version__, further_source_images=further)
    derived = derived_map_images(
        t1, [s.frames for s in slices], series_uid=derived_uid(key, "molli", "mr-series"),
        sop_uids=[derived_uid(key, "molli", "mr", k) for k in range(len(slices))],
        series_number=OUTPUT_SERIES["molli.scanner_like_t1"].number(number),
        series_description=description_with_suffix(description, DERIVED_SUFFIX, header),
        image_type_value3="T1 MAP", derivation=f"T1 by inversion recovery ({summaries[0]['fit']}) (cmr-node)",
        window=(1000, 1600), software_version=node.__version__)
    output = ModuleOutput(datasets=[pm, residual_pm] + derived, reingest=[str(d.SOPInstanceUID) for d in derived],
                          results={"module": "molli", "slices": summaries, "unit": "ms",
                                   "derived_series_description": str(derived[0].SeriesDescription)})
    group = fitted_voxels_group(t1, np.stack(residuals), np.stack(failures), pm, residual_pm, T1_QUANTITY,
                                RESIDUAL_QUANTITY)
    sources = [d for s in slices for d in s.datasets]
    quality = raw_images_snr(slices, inp.settings.qc_min_snr, "raw inversion-recovery images")
    output.results["quality_flags"] = quality.flags()
    add_report(output, inp, "molli", [group, quality.group(sources)], sources, description)
    return output
