"""dDCE regional parameters with 95 % intervals (analysis/ddce_uncertainty.py), and what follows from them.

Per slice, the LV myocardium's ve, vp, ve + vp, PS, Fp and mean lag, each with its profile-likelihood
interval. A parameter whose interval reaches a physiological limit is not identified: results.json gives
its bound and `"identifiable": false` with `"value": null`; the report gives, next to the voxel statistics
of its map, the qualitative evaluation "... identifiable: No" and the bound under a private concept
instead of a regional value.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.ddce import TISSUE_DENSITY_G_PER_ML, DdceResult, region_inputs
from analysis.ddce_uncertainty import Estimate, profile_region
from analysis.errors import AnalysisError
from dicom_out import codes
from dicom_out.report import Evaluation, Measure
from highdicom.sr import CodedConcept


@dataclass(frozen=True)
class Reported:
    key: str                 # results.json name, unit in the name where there is one
    scale: float             # from the analysis unit (fraction, 1/min, min)
    concept: CodedConcept
    unit: CodedConcept
    text: str                # for the one-line bound ("PS >= 0.43 mL/min/g")


PER_GRAM = 1.0 / TISSUE_DENSITY_G_PER_ML
REGIONAL = {
    "ve": Reported("ve", 1.0, codes.VE, codes.UNIT_NONE, "ve"),
    "vp": Reported("vp", 1.0, codes.VP, codes.UNIT_NONE, "vp"),
    "ve_plus_vp": Reported("ve_plus_vp", 1.0, codes.VE_PLUS_VP, codes.UNIT_NONE, "ve + vp"),
    "ps": Reported("ps_ml_per_min_per_g", PER_GRAM, codes.PS, codes.UNIT_ML_PER_MIN_PER_G, "PS"),
    "fp": Reported("fp_ml_per_min_per_g", PER_GRAM, codes.FP, codes.UNIT_ML_PER_MIN_PER_G, "Fp"),
    "mean_lag_min": Reported("mean_lag_s", 60.0, codes.MEAN_LAG, codes.UNIT_S, "mean lag"),
}
UNITS_SHOWN = {"ps": " mL/min/g", "fp": " mL/min/g", "mean_lag_min": " s"}


def slice_estimates(results: list[DdceResult], myocardium: np.ndarray) -> list[dict[str, Estimate]]:
    """Per slice, the window's LV myocardium estimates; {} where the region or the blood pool is too small.
    results: one DdceResult per slice (one window each); myocardium: (slices, rows, cols) bool."""
    estimates = []
    for result, mask in zip(results, myocardium):
        window = result.windows[0]
        try:
            inputs = region_inputs(result, window, mask)
        except AnalysisError:
            estimates.append({})
            continue
        estimates.append(profile_region(*inputs, aif_start=window.aif, names=tuple(REGIONAL)))
    return estimates


def bound_text(name: str, estimate: Estimate) -> str | None:
    """'PS >= 0.43 mL/min/g' for a parameter the data bound on one side only; None otherwise."""
    r, unit = REGIONAL[name], UNITS_SHOWN.get(name, "")
    low, high = (None if x is None else round(x * r.scale, 3) for x in estimate.ci95)
    if estimate.identified or (low is None and high is None):
        return None
    return f"{r.text} >= {low}{unit}" if high is None else f"{r.text} <= {high}{unit}"


def results_entry(estimates: dict[str, Estimate], position_mm: float) -> dict:
    """A slice's LV myocardium for results.json: each parameter {value, ci95, identifiable} (+ bound)."""
    entry: dict = {"region": "lv_myocardium", "position_mm": round(position_mm, 2)}
    for name, e in estimates.items():
        entry[REGIONAL[name].key] = e.as_dict(REGIONAL[name].scale)
        if (text := bound_text(name, e)) is not None:
            entry[REGIONAL[name].key]["bound"] = text
    return entry


def identified_everywhere(estimates: list[dict[str, Estimate]], name: str) -> bool:
    return bool(estimates) and all(name in e and e[name].identified for e in estimates)


def report_items(estimates: list[dict[str, Estimate]]) -> tuple[list[Measure], list[Evaluation]]:
    """Measures and evaluations of the window's LV myocardium group. One slice: the regional value with its
    interval (TID 310), or the bound under its own concept; several slices: only the evaluations (the
    intervals are per slice, in results.json)."""
    measures, evaluations = [], []
    for name, r in REGIONAL.items():
        everywhere = identified_everywhere(estimates, name)
        evaluations.append(Evaluation(codes.identifiable(r.concept), codes.YES if everywhere else codes.NO))
        if len(estimates) != 1 or name not in estimates[0]:
            continue
        e = estimates[0][name]
        low, high = (None if x is None else round(x * r.scale, 4) for x in e.ci95)
        if e.identified and e.value is not None and low is not None and high is not None:
            measures.append(Measure(r.concept, round(e.value * r.scale, 4), r.unit, interval=(low, high)))
            continue
        for end, upper in ((low, False), (high, True)):
            if end is not None:
                measures.append(Measure(codes.confidence_limit(r.concept, upper), end, r.unit))
    return measures, evaluations
