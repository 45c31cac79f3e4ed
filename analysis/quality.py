"""Quality checks that do not depend on an operator: numbers in, findings out.

Each check returns the measured value and, when it fails its limit, a `Finding` saying what and by how
much. The limits are the caller's (site settings); the checks are:
- motion: the largest in-plane shift found between maps of one slice (mm);
- fit: the median R^2 of a model fit in the myocardium;
- SNR of magnitude images: mean signal of the tissue over the noise SD, the SD from the mean of the
  background, whose magnitude noise is Rayleigh distributed: sigma = mean / sqrt(pi / 2) (Henkelman,
  Med Phys 1985;12:232; NEMA MS 1);
- blood T1: the native T1 of the LV blood pool within a physiological range for the field strength;
- missing parts of a protocol (said by the caller).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from analysis.blood_pool import otsu_threshold

MOTION, FIT, SNR, BLOOD_T1, MISSING, REGION = "motion", "fit", "snr", "blood_t1", "missing", "region"

# Native blood T1 (ms) a healthy or sick heart can show, by field strength (T): 1.5 T about 1570 +- 120 ms
# (Kammerlander et al., Wien Klin Wochenschr 2018;130:190, 513 patients), 1.5-2.5 times that SD either side
# for anaemia and polycythaemia; 3 T about 1800-1900 ms (carotid blood, Look-Locker), widened the same way.
BLOOD_T1_RANGE_MS = {1.5: (1300.0, 1900.0), 3.0: (1550.0, 2200.0)}


@dataclass(frozen=True)
class Finding:
    check: str      # MOTION, FIT, SNR, BLOOD_T1, MISSING or REGION
    message: str    # for a person: what was measured, against which limit


def motion(shifts_mm, limit_mm: float, what: str) -> tuple[float, Finding | None]:
    """Largest of the shifts (mm) found between maps; a finding above limit_mm."""
    largest = float(np.max(shifts_mm)) if np.size(shifts_mm) else 0.0
    if largest > limit_mm:
        return largest, Finding(MOTION, f"{what}: moved {largest:.1f} mm between maps (limit {limit_mm:g} mm)")
    return largest, None


def fit(r_squared: np.ndarray, minimum: float, what: str) -> tuple[float | None, Finding | None]:
    """Median R^2 over a region; a finding below minimum."""
    values = np.asarray(r_squared, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    median = float(np.median(values))
    if median < minimum:
        return median, Finding(FIT, f"{what}: median fit R2 {median:.2f} in the myocardium (minimum {minimum:g})")
    return median, None


def magnitude_snr(image: np.ndarray) -> float | None:
    """SNR of one magnitude image: mean of the tissue (above Otsu's threshold) over the Rayleigh-corrected
    mean of the background (below it, 3 pixels or more from any tissue); None when the background is
    blank (masked to 0 by the scanner) or too small to measure."""
    image = np.nan_to_num(np.asarray(image, dtype=float))
    if image.max() <= 0:
        return None
    tissue = image > otsu_threshold(image[image > 0] if (image > 0).sum() > 100 else image.ravel())
    background = ~ndimage.binary_dilation(tissue, iterations=3)
    if background.sum() < 100 or not tissue.any():
        return None
    noise_mean = float(image[background].mean())
    if noise_mean <= 0:
        return None
    return float(image[tissue].mean() / (noise_mean / np.sqrt(np.pi / 2.0)))


def snr(images: np.ndarray, minimum: float, what: str) -> tuple[float | None, Finding | None]:
    """SNR of the brightest of a series' magnitude images (the most recovered inversion, the shortest T2
    preparation); a finding below minimum."""
    images = np.asarray(images, dtype=float)
    brightest = images[int(np.argmax(images.reshape(len(images), -1).mean(axis=1)))]
    value = magnitude_snr(brightest)
    if value is None:
        return None, None
    if value < minimum:
        return value, Finding(SNR, f"{what}: SNR {value:.0f} (minimum {minimum:g})")
    return value, None


def blood_t1_range_ms(field_t: float | None) -> tuple[float, float] | None:
    """The plausible native blood T1 range at the nearest tabulated field strength (within 0.5 T)."""
    if field_t is None:
        return None
    nearest = min(BLOOD_T1_RANGE_MS, key=lambda f: abs(f - field_t))
    return BLOOD_T1_RANGE_MS[nearest] if abs(nearest - field_t) <= 0.5 else None


def blood_t1(t1_ms: float, field_t: float | None, what: str) -> Finding | None:
    """A finding when native blood T1 lies outside the range for the field strength (none when unknown)."""
    limits = blood_t1_range_ms(field_t)
    if limits is None or limits[0] <= t1_ms <= limits[1]:
        return None
    return Finding(BLOOD_T1, f"{what}: native blood T1 {t1_ms:.0f} ms outside {limits[0]:.0f}-{limits[1]:.0f} ms "
                             f"for {field_t:g} T")
