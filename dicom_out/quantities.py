"""Every quantity the node writes as a Parametric Map: one table, keyed by the analysis name of the array.

Each row ties the unit the analysis/ array is in to the UCUM unit of the map (PS3.16 CID 7181 via codes.py)
and the factor between them, so that a unit cannot drift between the physics and the DICOM object
(tests/test_output_tables.py checks each row).
"""
from __future__ import annotations

from dataclasses import dataclass

from dicom_out import codes
from dicom_out.parametric_map import MapQuantity

_TWO_CX = codes.TWO_COMPARTMENT_EXCHANGE


@dataclass(frozen=True)
class OutputQuantity:
    analysis_unit: str     # unit of the analysis/ array: "ms", "fraction", "mL/min/g", "1"
    scale: float           # map value = analysis value × scale
    map: MapQuantity       # label, explanation, UCUM unit, quantity and method codes, default window


QUANTITIES: dict[str, OutputQuantity] = {
    "t1_ms": OutputQuantity("ms", 1.0, MapQuantity(
        "T1", "T1 from inversion recovery (ms)", codes.UNIT_MS, codes.T1, codes.T1_BY_INVERSION_RECOVERY,
        1000.0, 1600.0)),
    "t1_residual": OutputQuantity("1", 1.0, MapQuantity(
        "T1 residual", "RMS residual of the MOLLI fit relative to A", codes.UNIT_NONE, codes.FIT_RESIDUAL, None,
        0.05, 0.1)),
    "t2_ms": OutputQuantity("ms", 1.0, MapQuantity(
        "T2", "T2 from T2-prepared images, mono-exponential (ms)", codes.UNIT_MS, codes.T2, None, 50.0, 100.0)),
    "t2_residual": OutputQuantity("1", 1.0, MapQuantity(
        "T2 residual", "RMS residual of the T2 fit relative to S0", codes.UNIT_NONE, codes.FIT_RESIDUAL, None,
        0.05, 0.1)),
    "ecv": OutputQuantity("fraction", 100.0, MapQuantity(
        "ECV", "Extracellular volume fraction (percent)", codes.UNIT_PERCENT, codes.ECV, codes.ECV_FROM_T1,
        40.0, 60.0)),
    "so2": OutputQuantity("fraction", 100.0, MapQuantity(
        "SO2", "Blood oxygen saturation from blood T2 (percent)", codes.UNIT_PERCENT,
        codes.BLOOD_OXYGEN_SATURATION, None, 60.0, 80.0)),
    "ve": OutputQuantity("fraction", 1.0, MapQuantity(
        "ve", "Extravascular extracellular volume fraction (2CXM)", codes.UNIT_NONE, codes.VE, _TWO_CX, 0.3, 0.6)),
    "vp": OutputQuantity("fraction", 1.0, MapQuantity(
        "vp", "Plasma volume fraction (2CXM)", codes.UNIT_NONE, codes.VP, _TWO_CX, 0.1, 0.2)),
    "ve_plus_vp": OutputQuantity("fraction", 1.0, MapQuantity(
        "ve+vp", "Total distribution volume ve + vp (2CXM)", codes.UNIT_NONE, codes.VE_PLUS_VP, _TWO_CX, 0.4, 0.8)),
    "ps": OutputQuantity("mL/min/g", 1.0, MapQuantity(
        "PS", "Permeability surface area product (2CXM)", codes.UNIT_ML_PER_MIN_PER_G, codes.PS, _TWO_CX, 2.0, 4.0)),
    "fp": OutputQuantity("mL/min/g", 1.0, MapQuantity(
        "Fp", "Plasma flow (2CXM)", codes.UNIT_ML_PER_MIN_PER_G, codes.FP, _TWO_CX, 1.0, 2.0)),
    "mbf": OutputQuantity("mL/min/g", 1.0, MapQuantity(
        "MBF", "Myocardial blood flow Fp/(1-Hct), 2CXM first pass + delayed", codes.UNIT_ML_PER_MIN_PER_G,
        codes.MBF, _TWO_CX, 1.0, 2.0)),
    "r_squared": OutputQuantity("1", 1.0, MapQuantity(
        "R2", "Coefficient of determination of the 2CXM fit", codes.UNIT_NONE, codes.FIT_R2, _TWO_CX, 0.5, 1.0)),
}


def map_quantity(name: str) -> MapQuantity:
    return QUANTITIES[name].map
