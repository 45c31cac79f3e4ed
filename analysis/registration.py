"""Rigid in-plane registration (translation) of relaxation maps taken in different breath-holds.

Maps before and after contrast differ in contrast, so the images are compared
through their normalised gradient magnitude (edges of body and heart keep their
place whatever the T1). The shift is found by phase correlation (Kuglin &
Hines, Proc IEEE Conf Cybernetics and Society 1975) with a parabolic sub-pixel
refinement, and applied with linear interpolation.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def _edges(image: np.ndarray) -> np.ndarray:
    clean = np.nan_to_num(image.astype(float))
    scale = np.percentile(clean[clean > 0], 95) if np.any(clean > 0) else 1.0
    magnitude = np.hypot(ndimage.sobel(clean / scale, 0), ndimage.sobel(clean / scale, 1))
    window = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
    return (magnitude - magnitude.mean()) * window


def _subpixel(values: np.ndarray, peak: int) -> float:
    left, centre, right = values[(peak - 1) % values.size], values[peak], values[(peak + 1) % values.size]
    denominator = left - 2 * centre + right
    return 0.0 if denominator == 0 else 0.5 * (left - right) / denominator


def estimate_shift(reference: np.ndarray, moving: np.ndarray, max_shift_px: float = 15.0) -> np.ndarray:
    """(row, col) shift in pixels that, applied to moving, aligns it with reference."""
    cross = np.fft.fft2(_edges(reference)) * np.conj(np.fft.fft2(_edges(moving)))
    correlation = np.real(np.fft.ifft2(cross / np.maximum(np.abs(cross), 1e-12)))
    correlation = ndimage.gaussian_filter(correlation, 1.0, mode="wrap")   # steadier peak with noisy maps
    row, col = (int(i) for i in np.unravel_index(np.argmax(correlation), correlation.shape))
    shift = np.array([row + _subpixel(correlation[:, col], row),
                      col + _subpixel(correlation[row, :], col)], dtype=float)
    size = np.array(correlation.shape)
    shift = np.where(shift > size / 2, shift - size, shift)
    return shift if np.all(np.abs(shift) <= max_shift_px) else np.zeros(2)


def align(reference: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Align every map of maps (T, rows, cols) with reference; return (aligned maps, shifts (T, 2) px)."""
    shifts = np.array([estimate_shift(reference, m) for m in maps])
    aligned = np.stack([ndimage.shift(m, s, order=1, mode="nearest") for m, s in zip(maps, shifts)])
    return aligned, shifts
