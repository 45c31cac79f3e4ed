"""ECV module: native + post-contrast T1 map series of a study -> ECV Parametric Map(s).

Native and post-contrast series are told apart by node.t1_maps.classify.
Every post-contrast series gives one ECV map (percent) on its own grid, paired
slice by slice (same position within 1 mm) with the native map.
"""
from __future__ import annotations

import numpy as np

import node
from analysis.ecv import ecv_map
from dicom_out import codes
from dicom_out.parametric_map import MapQuantity, build_parametric_map
from dicom_out.uids import derived_uid
from node.modules import ModuleInput, ModuleOutput
from node.t1_maps import POSITION_TOLERANCE_MM, InputError, T1Slice, classify, group_by_series, read_t1_slice


ECV_QUANTITY = MapQuantity(
    lut_label="ECV", explanation="Extracellular volume fraction (percent)", unit=codes.UNIT_PERCENT,
    quantity=codes.ECV, method=codes.ECV_FROM_T1, window_center=40.0, window_width=60.0)


def _partner(target: T1Slice, candidates: list[T1Slice]) -> T1Slice:
    best = min(candidates, key=lambda s: abs(s.position_mm - target.position_mm))
    if abs(best.position_mm - target.position_mm) > POSITION_TOLERANCE_MM:
        raise InputError(f"no native slice at position {target.position_mm:.1f} mm of series {target.series_uid}")
    if best.t1_ms.shape != target.t1_ms.shape:
        raise InputError(f"native and post-contrast maps differ in matrix at {target.position_mm:.1f} mm")
    return best


def _slice_summary(result, post: T1Slice) -> dict:
    tissue = result.valid & ~result.blood_pool
    return {
        "position_mm": round(post.position_mm, 2),
        "source_sop_instance_uid": str(post.dataset.SOPInstanceUID),
        "blood_t1_native_ms": round(result.blood_t1_pre_ms, 1),
        "blood_t1_post_ms": round(result.blood_t1_post_ms, 1),
        "blood_delta_r1_per_s": round(result.blood_delta_r1_per_s, 4),
        "blood_pool_voxels": int(result.blood_pool.sum()),
        "valid_voxels": int(result.valid.sum()),
        "ecv_percent_tissue_median": round(float(np.median(result.ecv[tissue]) * 100), 2) if tissue.any() else None,
    }


def run(inp: ModuleInput) -> ModuleOutput:
    hematocrit = float(inp.settings["hematocrit"])
    groups = group_by_series([read_t1_slice(f) for f in inp.files])
    pre, posts, how = classify(groups)
    output = ModuleOutput(results={
        "module": "ecv", "hematocrit": hematocrit, "classified_by": how,
        "native_series_uid": pre[0].series_uid, "maps": []})
    for n, post in enumerate(posts):
        natives = [_partner(s, pre) for s in post]
        results = [ecv_map(native.t1_ms, s.t1_ms, hematocrit, s.pixel_mm) for native, s in zip(natives, post)]
        percent = np.clip(np.stack([r.ecv for r in results]) * 100.0, 0.0, 100.0)
        series_uid = derived_uid(inp.job_key, "ecv", post[0].series_uid, "series")
        pm = build_parametric_map(
            percent, [s.dataset for s in post], ECV_QUANTITY,
            series_uid=series_uid, sop_uid=derived_uid(inp.job_key, "ecv", post[0].series_uid, "instance"),
            series_number=9000 + n, series_description="ECV map (cmr-node)", content_label="ECV",
            software_version=node.__version__,
            further_source_images=[native.dataset for native in natives])
        output.datasets.append(pm)
        output.results["maps"].append({
            "series_instance_uid": series_uid, "sop_instance_uid": str(pm.SOPInstanceUID),
            "post_contrast_series_uid": post[0].series_uid, "unit": "%",
            "slices": [_slice_summary(r, s) for r, s in zip(results, post)]})
    return output
