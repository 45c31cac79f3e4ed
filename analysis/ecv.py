"""Extracellular volume fraction (ECV) from native and post-contrast T1.

ECV = (1 - Hct) * dR1_tissue / dR1_blood, with dR1 = 1/T1_post - 1/T1_pre
(Messroghli et al., SCMR/EACVI T1 mapping consensus, JCMR 2017;19:75; after
Arheden et al., Radiology 1999;211:698). The blood value is the median over an
automatically found LV blood pool, drawn on the relative R1 change.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.blood_pool import find_blood_pool
from analysis.errors import AnalysisError


MIN_T1_MS = 50.0      # below this a T1 map pixel is background or a failed fit
MAX_T1_MS = 5000.0


@dataclass
class EcvResult:
    ecv: np.ndarray             # fraction, float32; 0 where invalid
    valid: np.ndarray           # bool: pixel has usable pre and post T1
    blood_pool: np.ndarray      # bool mask used for blood dR1
    blood_t1_pre_ms: float
    blood_t1_post_ms: float
    blood_delta_r1_per_s: float
    hematocrit: float


def _valid_t1(t1_ms: np.ndarray) -> np.ndarray:
    return np.isfinite(t1_ms) & (t1_ms > MIN_T1_MS) & (t1_ms < MAX_T1_MS)


def relative_r1_change(t1_pre_ms: np.ndarray, t1_post_ms: np.ndarray) -> np.ndarray:
    """(R1_post - R1_pre) / R1_pre = T1_pre / T1_post - 1; NaN where either map is invalid."""
    valid = _valid_t1(t1_pre_ms) & _valid_t1(t1_post_ms)
    out = np.full(t1_pre_ms.shape, np.nan)
    out[valid] = t1_pre_ms[valid] / t1_post_ms[valid] - 1.0
    return out


def ecv_map(t1_pre_ms: np.ndarray, t1_post_ms: np.ndarray, hematocrit: float, pixel_mm: float,
            blood_pool: np.ndarray | None = None) -> EcvResult:
    """ECV of one slice. T1 maps in ms on the same grid; hematocrit as a fraction; pixel_mm in mm."""
    if t1_pre_ms.shape != t1_post_ms.shape:
        raise ValueError(f"pre and post T1 maps differ in size: {t1_pre_ms.shape} vs {t1_post_ms.shape}")
    if not 0.0 < hematocrit < 1.0:
        raise ValueError(f"hematocrit must be a fraction, got {hematocrit}")
    valid = _valid_t1(t1_pre_ms) & _valid_t1(t1_post_ms)
    if blood_pool is None:
        blood_pool = find_blood_pool(relative_r1_change(t1_pre_ms, t1_post_ms), pixel_mm)
    blood = blood_pool & valid
    blood_pre = float(np.median(t1_pre_ms[blood]))
    blood_post = float(np.median(t1_post_ms[blood]))
    d_r1_blood = 1.0 / blood_post - 1.0 / blood_pre            # 1/ms
    if d_r1_blood <= 0:
        raise AnalysisError("blood R1 did not rise after contrast: are pre and post swapped?")
    d_r1 = np.zeros(t1_pre_ms.shape)
    d_r1[valid] = 1.0 / t1_post_ms[valid] - 1.0 / t1_pre_ms[valid]
    ecv = np.where(valid, (1.0 - hematocrit) * d_r1 / d_r1_blood, 0.0)
    return EcvResult(ecv=ecv.astype(np.float32), valid=valid, blood_pool=blood_pool,
                     blood_t1_pre_ms=blood_pre, blood_t1_post_ms=blood_post,
                     blood_delta_r1_per_s=d_r1_blood * 1000.0, hematocrit=hematocrit)


def blood_t1_ratio(t1_a_ms: np.ndarray, t1_b_ms: np.ndarray, pixel_mm: float) -> float | None:
    """Median blood T1 of map a over map b (same slice, ms), in the LV blood pool found where the two differ
    most (|ln(T1_a / T1_b)|: gadolinium shortens blood T1 most); None when no blood pool is found.
    Before contrast blood T1 is about 1400-2000 ms, minutes after it well under 1000 ms (Messroghli et al.,
    JCMR 2017;19:75), so a ratio far from 1 tells which map was acquired before the contrast."""
    valid = _valid_t1(t1_a_ms) & _valid_t1(t1_b_ms)
    feature = np.full(t1_a_ms.shape, np.nan)
    feature[valid] = np.abs(np.log(t1_a_ms[valid] / t1_b_ms[valid]))
    try:
        pool = find_blood_pool(feature, pixel_mm) & valid
    except ValueError:
        return None
    return float(np.median(t1_a_ms[pool]) / np.median(t1_b_ms[pool])) if pool.any() else None
