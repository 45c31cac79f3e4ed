"""T2 module: raw T2-prepared images of a series -> T2 map and fit residual (Parametric Maps).

Mono-exponential fit (analysis/relaxometry.py), two-parameter by default; preparation
times from node/inputs/prepared_images.py. Voxels that fail are 0 and counted. The T2 map also goes out as
derived MR images in ms, like a scanner's inline map, Series Description ending in "_T2MAP_cmrnode"; the
node takes those back in, so the t2segments route reads them as it reads an inline map.
"""
from __future__ import annotations

import numpy as np

import node
from analysis.relaxometry import fit_t2
from dicom_out.derived_mr import derived_map_images
from dicom_out.descriptions import description_with_suffix
from dicom_out.parametric_map import build_parametric_map
from dicom_out.quantities import map_quantity
from dicom_out.uids import derived_uid
from node.process.modules import ModuleInput, ModuleOutput
from node.process.modules.quality import raw_images_snr
from node.process.modules.reporting import add_report, fitted_voxels_group
from node.inputs.prepared_images import read_t2_prepared_series
from node.process.modules.output_series import OUTPUT_SERIES

T2_QUANTITY, RESIDUAL_QUANTITY = map_quantity("t2_ms"), map_quantity("t2_residual")


def fit_prepared_slices(files: list[str]):
    """(slices, per-slice T2Fit reshaped to images) for a T2-prep series."""
    slices = read_t2_prepared_series(files)
    fits = []
    for s in slices:
        n, rows, cols = s.images.shape
        fit = fit_t2(s.times_ms, s.images.reshape(n, -1).T)
        fits.append({name: getattr(fit, name).reshape(rows, cols) for name in ("t2_ms", "s0", "residual", "failed")})
    return slices, fits


def run(inp: ModuleInput) -> ModuleOutput:
    slices, fits = fit_prepared_slices(inp.files)
    first = [s.frames[0] for s in slices]
    further = [f for s in slices for f in s.frames[1:]]
    description = str(first[0].header.get("SeriesDescription", "") or "T2prep")
    output = ModuleOutput(results={"module": "t2map", "unit": "ms", "slices": [
        {"position_mm": s.position_mm, "preparation_times_ms": s.times_ms.tolist(),
         "preparation_time_source": s.time_source, "failed_voxels": int(f["failed"].sum()),
         "t2_ms_median": round(float(np.median(f["t2_ms"][~f["failed"]])), 1) if (~f["failed"]).any() else None}
        for s, f in zip(slices, fits)]})
    stacks = {}
    for name, quantity, series in (("t2_ms", T2_QUANTITY, OUTPUT_SERIES["t2map.t2"]),
                                   ("residual", RESIDUAL_QUANTITY, OUTPUT_SERIES["t2map.residual"])):
        values = stacks[name] = np.stack([np.where(f["failed"], 0.0, f[name]) for f in fits]).astype(np.float32)
        output.datasets.append(build_parametric_map(
            values, first, quantity, series_uid=derived_uid(inp.job_key, name, "series"),
            sop_uid=derived_uid(inp.job_key, name, "instance"), series_number=series.number(),
            series_description=description_with_suffix(description, series.describe(), first[0].header), content_label="T2MAP",
            software_version=node.__version__, further_source_images=further))
    header = first[0].header
    key, number = inp.job_key, int(header.get("SeriesNumber", 0) or 0)
    derived = derived_map_images(
        stacks["t2_ms"], [s.frames for s in slices], series_uid=derived_uid(key, "t2map", "mr-series"),
        sop_uids=[derived_uid(key, "t2map", "mr", k) for k in range(len(slices))],
        series_number=OUTPUT_SERIES["t2map.scanner_like_t2"].number(number),
        series_description=description_with_suffix(description, OUTPUT_SERIES["t2map.scanner_like_t2"].description,
                                                    header),
        image_type_value3="T2 MAP", derivation="T2 by mono-exponential fit of T2-prepared images (cmr-node)",
        window=(20, 120), software_version=node.__version__, rescale=(0.1, 0.0))   # 0.1 ms steps
    group = fitted_voxels_group(stacks["t2_ms"], stacks["residual"], np.stack([f["failed"] for f in fits]),
                                *output.datasets[:2], T2_QUANTITY, RESIDUAL_QUANTITY)
    output.datasets += derived
    output.reingest += [str(d.SOPInstanceUID) for d in derived]
    output.results["derived_series_description"] = str(derived[0].SeriesDescription)
    sources = [d for s in slices for d in s.datasets]
    quality = raw_images_snr(slices, inp.settings.qc_min_snr, "raw T2-prepared images")
    output.results["quality_flags"] = quality.flags()
    add_report(output, inp, "t2map", [group, quality.group(sources)], sources, description)
    return output
