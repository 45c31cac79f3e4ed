"""T2-prepared images of a short-axis slice with a coronary sinus of known oxygen saturation (3 T).

Blood T2 from the calibration itself (analysis/oximetry.py) for the given
saturations and hematocrit; myocardium 45 ms, other tissue 35 ms. The coronary
sinus is a 5 mm radius vessel in the posterior atrioventricular groove, beside
the LV. Signal S = S0 exp(-TE/T2), Gaussian noise relative to S0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.oximetry import CALIBRATIONS
from analysis.phantoms.short_axis import MYOCARDIUM, Region, SliceGeometry, short_axis_labels

T2PREP_MS = (0.0, 20.0, 40.0, 60.0, 80.0)
TISSUE_T2_MS = {"myocardium": 45.0, "other": 35.0}


@dataclass
class OximetryPhantom:
    labels: np.ndarray
    coronary_sinus: np.ndarray       # bool mask
    images: np.ndarray               # (n_TE, rows, cols)
    te_ms: tuple
    t2_ms: np.ndarray
    so2: dict                        # region -> saturation fraction
    hematocrit: float
    pixel_mm: float


def oximetry_phantom(cs_so2: float = 0.40, lv_so2: float = 0.97, rv_so2: float = 0.70, hematocrit: float = 0.42,
                     noise_fraction: float = 0.02, geometry: SliceGeometry = SliceGeometry(), seed: int = 3,
                     calibration: str = "lu2012_3T") -> OximetryPhantom:
    cal = CALIBRATIONS[calibration]
    labels = short_axis_labels(geometry)
    n = geometry.matrix
    yy, xx = np.mgrid[0:n, 0:n]
    cx, cy = n * 0.52, n * 0.50
    offset = (geometry.lv_epi_radius_mm + 7.0) / geometry.pixel_mm / np.sqrt(2)
    coronary_sinus = np.hypot(xx - (cx + offset), yy - (cy + offset)) * geometry.pixel_mm <= 5.0
    t2 = np.zeros(labels.shape)
    t2[labels == Region.OTHER_TISSUE] = TISSUE_T2_MS["other"]
    t2[np.isin(labels, MYOCARDIUM)] = TISSUE_T2_MS["myocardium"]
    for region, so2 in ((Region.LV_BLOOD, lv_so2), (Region.RV_BLOOD, rv_so2)):
        t2[labels == region] = 1000.0 / cal.r2_per_s(so2, hematocrit)
    t2[coronary_sinus] = 1000.0 / cal.r2_per_s(cs_so2, hematocrit)
    s0 = np.where(t2 > 0, 1000.0, 0.0)
    s0[(labels == Region.LV_BLOOD) | (labels == Region.RV_BLOOD) | coronary_sinus] = 1500.0   # bright blood (bSSFP)
    te = np.asarray(T2PREP_MS)[:, None, None]
    clean = s0 * np.exp(-te / np.where(t2 > 0, t2, 1.0))
    rng = np.random.default_rng(seed)
    images = np.abs(clean + noise_fraction * 1000.0 * rng.standard_normal(clean.shape))
    return OximetryPhantom(labels=labels, coronary_sinus=coronary_sinus, images=images, te_ms=T2PREP_MS, t2_ms=t2,
                           so2={"coronary_sinus": cs_so2, "lv_blood": lv_so2, "rv_blood": rv_so2},
                           hematocrit=hematocrit, pixel_mm=geometry.pixel_mm)
