"""Oximetry module: T2-prepared images (+ a coronary sinus ROI) -> SO2 map, SbO2, MVO2 and MEE.

- Blood T2 -> SO2 through the calibration named by [inputs] oximetry_calibration
  (analysis/oximetry.py); the SO2 map covers the bright blood (S0 above the
  body's Otsu threshold) where the calibration applies; other voxels are 0.
- Coronary sinus: a DICOM SEG of the study (its Series Description must match
  the route) with a segment whose type is SCT 90219004 "Coronary sinus" (or is
  labelled so), or an RT Structure Set with an ROI named so (node/inputs/roi.py). SbO2 comes from fitting the ROI-mean signal. Without it the SO2
  map is still sent and the result carries the flag "coronary sinus ROI missing";
  the route (study-so-far) runs again when the SEG arrives.
- MVO2 and MEE from SbO2 and the clinical inputs ([inputs] or `cmr-node inputs
  set`); what cannot be computed is left out and its missing inputs are listed.
"""
from __future__ import annotations

import numpy as np

import node
from analysis.blood_pool import otsu_threshold
from analysis.oximetry import CALIBRATIONS, oxygen_consumption, saturation_from_t2
from analysis.quality import MISSING, Finding
from analysis.relaxometry import fit_t2
from dicom_out import codes
from dicom_out.parametric_map import build_parametric_map
from dicom_out.quantities import QUANTITIES
from dicom_out.uids import derived_uid
from node.settings import CLINICAL_INPUTS
from node.process.modules.quality import raw_images_snr
from node.inputs.kinds import sop_classes
from node.process.modules import ModuleInput, ModuleOutput
from node.process.modules.t2map import fit_prepared_slices
from dicom_out.report import Evaluation, Measure, RegionGroup, segmentation_method
from node.process.modules.reporting import add_report
from node.inputs.roi import RTSTRUCT_SOP_CLASS, SEG_SOP_CLASS, RoiSource, rtstruct_masks, seg_masks
from node.errors import InputError
from node.process.modules.output_series import OUTPUT_SERIES

CORONARY_SINUS_CODE = "90219004"
CORONARY_SINUS_NAME = r"(?i)coronary\s*sinus|\bCS\b"
SO2 = QUANTITIES["so2"]


def _coronary_sinus_masks(roi_files: dict[str, str], slices) -> tuple[dict[float, np.ndarray], list[RoiSource]]:
    """Coronary sinus mask per slice position, from SEG segments or RT Structure Set contours, and their sources."""
    position_of = {str(d.SOPInstanceUID): s.position_mm for s in slices for d in s.datasets}
    images = [d for s in slices for d in s.datasets]
    masks: dict[float, np.ndarray] = {}
    sources = []
    for path, sop_class in roi_files.items():   # each ROI file read once, for every image it references
        if sop_class == SEG_SOP_CLASS:
            found, source = seg_masks(path, CORONARY_SINUS_CODE, CORONARY_SINUS_NAME, images)
        else:
            found, source = rtstruct_masks(path, CORONARY_SINUS_NAME, images)
        if source is not None:
            sources.append(source)
        for uid, mask in found.items():
            position = position_of[uid]
            masks[position] = masks.get(position, np.zeros_like(mask)) | mask
    return masks, sources


def _groups(sbo2_entry: dict | None, roi: RoiSource | None, oxygen, hematocrit: float, slices, pm) -> list[RegionGroup]:
    """Coronary sinus (T2, SbO2) and, when its inputs exist, LV myocardial O2 consumption and efficiency."""
    images = [d for s in slices for d in s.datasets]
    if sbo2_entry is None:   # no ROI (or no usable fit): the SO2 map alone, rated below standard
        return [RegionGroup("SO2 map", codes.BLOOD, category=codes.TISSUE, images=[pm],
                            evaluations=[Evaluation(codes.ANALYSIS_QUALITY, codes.QUALITY_UNUSABLE if roi
                                                    else codes.QUALITY_BELOW_STANDARD)])]
    segment = (roi.dataset, roi.segment_number) if roi.segment_number is not None else None
    sinus = RegionGroup(
        "Coronary sinus", codes.BLOOD, site=codes.CORONARY_SINUS, category=codes.TISSUE, segment=segment,
        images=[] if segment else images,
        measures=[Measure(codes.T2, sbo2_entry["coronary_sinus_t2_ms"], codes.UNIT_MS),
                  Measure(codes.VENOUS_OXYGEN_SATURATION, sbo2_entry["sbo2_percent"], codes.UNIT_PERCENT),
                  Measure(codes.HEMATOCRIT, round(hematocrit * 100, 1), codes.UNIT_PERCENT)],
        evaluations=[segmentation_method(roi.manual)])
    groups = [sinus]
    # per gram and whole LV in separate groups: one concept twice in a group would be ambiguous by code alone
    for label, values in (("LV myocardium (oxygen consumption)",
                           [(oxygen.mvo2_ml_per_min_per_g, codes.OXYGEN_CONSUMPTION, codes.UNIT_ML_PER_MIN_PER_G),
                            (oxygen.mee_percent, codes.EXTERNAL_EFFICIENCY, codes.UNIT_PERCENT)]),
                          ("LV myocardium, whole (oxygen consumption)",
                           [(oxygen.mvo2_ml_per_min, codes.OXYGEN_CONSUMPTION, codes.UNIT_ML_PER_MIN)])):
        measures = [Measure(name, value, unit) for value, name, unit in values if value is not None]
        if measures:
            groups.append(RegionGroup(label, codes.LV_MYOCARDIUM, category=codes.ANATOMICAL_STRUCTURE,
                                      images=images, measures=measures))
    return groups


def _roi_t2(s, mask: np.ndarray) -> float:
    """T2 (ms) of the ROI-mean signal: averaging first keeps noise out of the fit."""
    mean_signal = s.images[:, mask].mean(axis=1)
    fit = fit_t2(s.times_ms, mean_signal[None])
    if fit.failed[0]:
        raise InputError("the coronary sinus ROI signal could not be fitted")
    return float(fit.t2_ms[0])


def run(inp: ModuleInput) -> ModuleOutput:
    settings = inp.settings
    hematocrit = settings.hematocrit
    calibration = CALIBRATIONS[settings.oximetry_calibration]
    kinds = sop_classes(inp.files)
    roi_files = {f: k for f, k in kinds.items() if k in (SEG_SOP_CLASS, RTSTRUCT_SOP_CLASS)}
    slices, fits = fit_prepared_slices([f for f in kinds if f not in roi_files])
    masks, roi_sources = _coronary_sinus_masks(roi_files, slices)
    so2_maps, flags, slice_results = [], [], []
    sbo2, sbo2_entry = None, None
    for s, f in zip(slices, fits):
        body = ~f["failed"]
        bright = body & (f["s0"] > otsu_threshold(f["s0"][body])) if body.sum() > 10 else body
        so2, in_range = saturation_from_t2(f["t2_ms"], hematocrit, calibration)
        so2_maps.append(np.where(bright & in_range, so2 * SO2.scale, 0.0))
        entry = {"position_mm": s.position_mm, "blood_voxels": int((bright & in_range).sum())}
        if s.position_mm in masks and masks[s.position_mm].any():
            t2_cs = _roi_t2(s, masks[s.position_mm])
            y, ok = saturation_from_t2(np.array([t2_cs]), hematocrit, calibration)
            entry.update(coronary_sinus_voxels=int(masks[s.position_mm].sum()), coronary_sinus_t2_ms=round(t2_cs, 1),
                         sbo2_percent=round(float(y[0]) * 100, 1) if ok[0] else None)
            if ok[0] and sbo2 is None:
                sbo2, sbo2_entry = float(y[0]), entry
        slice_results.append(entry)
    quality = raw_images_snr(slices, settings.qc_min_snr, "raw T2-prepared images")
    if not masks:
        quality.add(Finding(MISSING, "coronary sinus ROI missing: no SbO2, MVO2 or MEE"))
    flags += quality.flags()
    clinical = {k: getattr(settings, k) for k in CLINICAL_INPUTS if getattr(settings, k) is not None}
    oxygen = oxygen_consumption(sbo2=sbo2, **clinical)
    first = [s.frames[0] for s in slices]
    pm = build_parametric_map(
        np.stack(so2_maps).astype(np.float32), first, SO2.map, series_uid=derived_uid(inp.job_key, "so2", "s"),
        sop_uid=derived_uid(inp.job_key, "so2", "i"), series_number=OUTPUT_SERIES["oximetry.so2"].number(),
        series_description=OUTPUT_SERIES["oximetry.so2"].describe(),
        content_label="SO2MAP", software_version=node.__version__,
        further_source_images=[f for s in slices for f in s.frames[1:]])
    output = ModuleOutput(datasets=[pm], results={
        "module": "oximetry", "calibration": calibration.source, "hematocrit": hematocrit,
        "sbo2_percent": None if sbo2 is None else round(sbo2 * 100, 1), "slices": slice_results,
        "mvo2_ml_per_min_per_g": oxygen.mvo2_ml_per_min_per_g, "mvo2_ml_per_min": oxygen.mvo2_ml_per_min,
        "mee_percent": oxygen.mee_percent, "missing_inputs": oxygen.missing, "quality_flags": flags,
        "inputs_used": clinical})
    groups = _groups(sbo2_entry, roi_sources[0] if roi_sources else None, oxygen, hematocrit, slices, pm)
    sources = [d for s in slices for d in s.datasets]
    add_report(output, inp, "oximetry", groups + [quality.group(sources)], sources, "Oximetry",
               evidence=[r.dataset for r in roi_sources])
    return output
