"""dDCE regional parameters with 95 % intervals (analysis/ddce_uncertainty.py), and what follows from them.

Per slice, the LV myocardium's ve, vp, ve + vp, PS, Fp and mean lag, each with its profile-likelihood
interval. A parameter whose interval reaches a physiological limit is not identified: results.json gives
its bound and `"identifiable": false` with `"value": null`; the report gives, next to the voxel statistics
of its map, the qualitative evaluation "... identifiable: No" and the bound under a private concept
instead of a regional value.

Per voxel of the LV myocardium, the same test decides where each map's parameter is identified
(analysis/ddce_identification.py): a SEG per window with one segment per parameter identified somewhere,
and the share of the myocardium in results.json. A map whose parameter is identified in fewer than
MIN_IDENTIFIED_FRACTION of the myocardium's voxels is not sent as a measurement (setting
`ddce_unidentified_maps`): withheld, or sent with "NOT IDENTIFIED" in its Series Description.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import node
from analysis.ddce import TISSUE_DENSITY_G_PER_ML, DdceResult, region_inputs, voxel_identification
from analysis.ddce_identification import MAP_PARAMETERS
from analysis.ddce_uncertainty import QUANTITY, Estimate, profile_region
from analysis.errors import AnalysisError
from dicom_out import codes
from dicom_out.report import Evaluation, Measure
from dicom_out.segmentation import Segment, build_segmentation
from dicom_out.uids import derived_uid
from highdicom.sr import CodedConcept
from node.process.modules.output_series import OUTPUT_SERIES


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
    # blood flow per mL of tissue (1/min): Fp / (1 - Hct), from the joint first-pass fit only
    "mbf": Reported("mbf_ml_per_min_per_g", PER_GRAM, codes.MBF, codes.UNIT_ML_PER_MIN_PER_G, "MBF"),
}
IDENTIFIED_AS = {"mbf": "fp"}    # a map identified where this other parameter is
UNITS_SHOWN = {"ps": " mL/min/g", "fp": " mL/min/g", "mbf": " mL/min/g", "mean_lag_min": " s"}


PROFILED = tuple(n for n in REGIONAL if n in QUANTITY)


def slice_estimates(results: list[DdceResult], region: np.ndarray, min_voxels: int = 2,
                    names: tuple[str, ...] = PROFILED) -> list[dict[str, Estimate]]:
    """Per slice, the window's estimates of names for a region; {} where the region has fewer than min_voxels
    fitted voxels or the blood pool is too small. results: one DdceResult per slice (one window each); region:
    (slices, rows, cols) bool."""
    estimates = []
    for result, mask in zip(results, region):
        window = result.windows[0]
        try:
            if (mask & result.valid).sum() < min_voxels:
                raise AnalysisError("too few voxels")
            inputs = region_inputs(result, window, mask)
        except AnalysisError:
            estimates.append({})
            continue
        estimates.append(profile_region(*inputs, aif_start=window.aif, names=names))
    return estimates


def bound_text(name: str, estimate: Estimate) -> str | None:
    """'PS >= 0.43 mL/min/g' for a parameter the data bound on one side only; None otherwise."""
    r, unit = REGIONAL[name], UNITS_SHOWN.get(name, "")
    low, high = (None if x is None else round(x * r.scale, 3) for x in estimate.ci95)
    if estimate.identified or (low is None and high is None):
        return None
    return f"{r.text} >= {low}{unit}" if high is None else f"{r.text} <= {high}{unit}"


def results_entry(estimates: dict[str, Estimate], position_mm: float, region: str = "lv_myocardium") -> dict:
    """A slice's region for results.json: each parameter {value, ci95, identifiable} (+ bound)."""
    entry: dict = {"region": region, "position_mm": round(position_mm, 2)}
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
    present = {name for e in estimates for name in e}
    for name, r in REGIONAL.items():
        if name not in present:
            continue    # not estimated by this fit (MBF without a first pass, the mean lag with one)
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


# A 95 % test at a limit closes a truly open interval in up to about 5 % of voxels by chance: a map whose
# parameter is identified in fewer voxels than that is identified nowhere in fact.
MIN_IDENTIFIED_FRACTION = 0.05
NOT_IDENTIFIED_LABEL = "NOT IDENTIFIED"


@dataclass(frozen=True)
class Identification:
    """Where a window's data identify each map's parameter: (slices, rows, cols) bool maps over the voxels
    assessed (the LV myocardium's fitted voxels)."""
    maps: dict[str, np.ndarray]
    assessed: np.ndarray
    assessed_in: str = "lv_myocardium"

    def fraction(self, name: str) -> float:
        return float(self.maps[name].sum() / max(int(self.assessed.sum()), 1))

    def shown(self, name: str) -> bool:
        """Whether the name's map is a measurement: not a 2CXM parameter (R^2), or identified widely enough."""
        name = IDENTIFIED_AS.get(name, name)
        return name not in self.maps or self.fraction(name) >= MIN_IDENTIFIED_FRACTION

    def as_dict(self) -> dict:
        return {"assessed_in": self.assessed_in, "assessed_voxels": int(self.assessed.sum()),
                "min_identified_fraction": MIN_IDENTIFIED_FRACTION,
                "parameters": {REGIONAL[name].key: {"identified_voxels": int(m.sum()),
                                                    "fraction": round(self.fraction(name), 4)}
                               for name, m in self.maps.items()}}


MAX_FALLBACK_VOXELS = 3000   # voxels assessed per slice where the LV myocardium was not found


def identify_voxels(results: list[DdceResult], myocardium: np.ndarray) -> Identification:
    """Per slice (one window each), the per-voxel identification of every map parameter in the myocardium;
    where no slice has a myocardium, in an even sample of the fitted voxels outside the blood pool."""
    fitted = np.stack([r.valid & (r.windows[0].maps["failed"] == 0) for r in results])
    masks, where = myocardium & fitted, "lv_myocardium"
    if not masks.any():
        tissue = fitted & ~np.stack([r.blood_pool for r in results])
        stride = max(1, int(np.ceil(tissue.sum() / (MAX_FALLBACK_VOXELS * len(results)))))
        masks = tissue & (np.cumsum(tissue.ravel()).reshape(tissue.shape) % stride == 0)
        where = f"fitted voxels outside the blood pool, 1 in {stride} (LV myocardium not found)"
    per_slice = [voxel_identification(r, r.windows[0], mask) for r, mask in zip(results, masks)]
    return Identification({name: np.stack([m[name] for m in per_slice]) for name in MAP_PARAMETERS}, masks, where)


def withheld_reason(identification: Identification, name: str) -> str:
    name = IDENTIFIED_AS.get(name, name)
    return (f"identified in {identification.fraction(name):.1%} of {int(identification.assessed.sum())} voxels "
            f"assessed ({identification.assessed_in}; fewer than {MIN_IDENTIFIED_FRACTION:.0%})")


def identification_segmentation(identification: Identification, sources: list, key: str, window: float,
                                index: int):
    """A SEG with one segment per parameter identified in at least one voxel; None when there is none."""
    names = [name for name in MAP_PARAMETERS if identification.maps[name].any()]
    if not names:
        return None
    segments = [Segment(f"{REGIONAL[name].text} identified", codes.SPATIAL_AND_RELATIONAL_CONCEPT,
                        codes.identifiable(REGIONAL[name].concept)) for name in names]
    series = OUTPUT_SERIES["ddce.identified"]
    return build_segmentation(
        np.stack([identification.maps[name] for name in names], axis=-1), sources, segments,
        series_uid=derived_uid(key, "identified", "series"), sop_uid=derived_uid(key, "identified", "instance"),
        series_number=series.number(index), series_description=series.describe(window=window),
        software_version=node.__version__)
