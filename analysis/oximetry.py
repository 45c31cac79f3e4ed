"""MR oximetry: blood T2 -> oxygen saturation, then myocardial oxygen consumption and efficiency.

Calibration: 1/T2 = A + B (1 - Y) + C (1 - Y)^2 (1/T2 in 1/s, Y the saturation
fraction) with A = a1 + a2 Hct + a3 Hct^2, B = b1 Hct + b2 Hct^2,
C = c1 Hct (1 - Hct): Lu et al., MRM 2012;67:42 (bovine blood, 3 T, 37 C,
CPMG refocusing interval 10 ms). Calibrations depend on field strength and on
the refocusing interval of the T2 preparation, so they are entries in a table
that a site extends with its own.

MVO2 by the Fick principle: MVO2 = MBF x (SaO2 - SbO2) x [Hb] x 1.36 mL O2/g Hb.
Myocardial external efficiency: MEE = LV external work per minute / (MVO2 x LV
mass x energy equivalent of oxygen), with stroke work = stroke volume x mean
arterial pressure, 1 mL mmHg = 1.333e-4 J, and 20.1 J per mL O2 (Knaapen et al.,
Circulation 2007;115:918). A number whose inputs are missing is left out and
the missing inputs are named, never guessed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    name: str
    field_strength_t: float
    refocusing_interval_ms: float
    a: tuple[float, float, float]     # a1, a2, a3
    b: tuple[float, float]            # b1, b2
    c: float                          # c1
    source: str

    def coefficients(self, hematocrit: float) -> tuple[float, float, float]:
        h = hematocrit
        return (self.a[0] + self.a[1] * h + self.a[2] * h * h, self.b[0] * h + self.b[1] * h * h,
                self.c * h * (1.0 - h))

    def r2_per_s(self, saturation, hematocrit: float):
        """Predicted blood 1/T2 (1/s) for saturation fraction(s)."""
        a, b, c = self.coefficients(hematocrit)
        x = 1.0 - np.asarray(saturation, dtype=float)
        return a + b * x + c * x * x


CALIBRATIONS = {
    "lu2012_3T": Calibration(name="lu2012_3T", field_strength_t=3.0, refocusing_interval_ms=10.0,
                             a=(-13.5, 80.2, -75.9), b=(-0.5, 3.4), c=247.4,
                             source="Lu et al., MRM 2012;67:42 (bovine blood, 37 C, tau_CPMG 10 ms)"),
}


def saturation_from_t2(t2_ms, hematocrit: float, calibration: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """(oxygen saturation fraction, within-calibration flag) for blood T2 in ms."""
    a, b, c = calibration.coefficients(hematocrit)
    t2 = np.asarray(t2_ms, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(t2 > 0, 1000.0 / t2, np.nan)
        discriminant = b * b - 4.0 * c * (a - r2)
        x = (-b + np.sqrt(np.maximum(discriminant, 0.0))) / (2.0 * c)      # 1 - Y, the root >= 0
    y = 1.0 - x
    valid = np.isfinite(y) & (discriminant >= 0) & (y >= 0.0) & (y <= 1.0)
    return np.clip(np.nan_to_num(y, nan=0.0), 0.0, 1.0), valid


O2_PER_G_HB_ML = 1.36             # mL O2 bound per g haemoglobin (Huefner factor as used clinically)
J_PER_ML_MMHG = 1.333e-4           # 1 mL x 1 mmHg in joule
J_PER_ML_O2 = 20.1                 # energy equivalent of oxygen


@dataclass
class OxygenResult:
    mvo2_ml_per_min_per_g: float | None       # mL O2 / min / g
    mvo2_ml_per_min: float | None             # whole LV, mL O2 / min
    mee_percent: float | None
    missing: list[str]


def oxygen_consumption(*, mbf_ml_per_min_per_g=None, sao2=None, sbo2=None, hb_g_per_dl=None,
                       stroke_volume_ml=None, mean_arterial_pressure_mmhg=None, heart_rate_per_min=None,
                       lv_mass_g=None) -> OxygenResult:
    """MVO2 and MEE from what is known; saturations as fractions."""
    needed_mvo2 = {"mbf_ml_per_min_per_g": mbf_ml_per_min_per_g, "sao2": sao2, "sbo2": sbo2,
                   "hb_g_per_dl": hb_g_per_dl}
    missing = [k for k, v in needed_mvo2.items() if v is None]
    mvo2: float | None = None
    if not missing:
        # Hb in g/dL -> g/mL (/100): mL O2 per mL blood extracted, times flow per gram
        mvo2 = mbf_ml_per_min_per_g * (sao2 - sbo2) * hb_g_per_dl / 100.0 * O2_PER_G_HB_ML
    needed_mee = {"stroke_volume_ml": stroke_volume_ml, "mean_arterial_pressure_mmhg": mean_arterial_pressure_mmhg,
                  "heart_rate_per_min": heart_rate_per_min, "lv_mass_g": lv_mass_g}
    missing_mee = [k for k, v in needed_mee.items() if v is None]
    total = mvo2 * lv_mass_g if mvo2 is not None and lv_mass_g is not None else None
    mee: float | None = None
    if mvo2 is not None and total is not None and not missing_mee and mvo2 > 0:
        work_j_per_min = stroke_volume_ml * mean_arterial_pressure_mmhg * J_PER_ML_MMHG * heart_rate_per_min
        mee = 100.0 * work_j_per_min / (total * J_PER_ML_O2)
    return OxygenResult(mvo2_ml_per_min_per_g=mvo2, mvo2_ml_per_min=total, mee_percent=mee,
                        missing=missing + [k for k in missing_mee if k not in missing])
