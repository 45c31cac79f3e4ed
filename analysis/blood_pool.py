"""Automatic LV blood-pool finder for short-axis relaxation maps.

The caller gives a "bright blood" feature image, e.g. the relative R1 change
(R1_post - R1_pre) / R1_pre, in which the ventricular blood pools are the
brightest large structures. Candidates above an Otsu threshold are scored by
size, roundness and closeness to the image centre: the LV cavity is a round
blob near the centre, the RV a crescent. The chosen blob is then refined
around its deepest part (voxels within 3 robust SD of the core's median), which
drops enhancing tissue that touches the cavity (a subendocardial infarct),
and eroded to keep partial-volume voxels out of the blood value.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from analysis.errors import AnalysisError


MIN_AREA_MM2 = 150.0     # a 7 mm radius LV cavity (small child, end-systole)
MAX_AREA_MM2 = 8000.0    # a 50 mm radius dilated LV
MIN_ROUNDNESS = 0.4      # a disc is 1, the RV crescent about 0.3, noise specks far less


class BloodPoolNotFound(AnalysisError):
    pass


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (Otsu, IEEE Trans Syst Man Cybern 1979;9:62) of a 1-D sample."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(hist * centres) / np.maximum(weight_low, 1)
    mean_high = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centres[np.argmax(between)])


def _roundness(mask: np.ndarray) -> float:
    """Area over the area of the circle through its farthest pixel from the centroid (1 = disc)."""
    ys, xs = np.nonzero(mask)
    radius = np.sqrt(((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2).max()) + 0.5
    return float(mask.sum() / (np.pi * radius ** 2))


def _refine_around_core(image: np.ndarray, blob: np.ndarray) -> np.ndarray:
    """Keep the part of blob connected to its core whose values match the core's."""
    depth = ndimage.distance_transform_edt(blob)
    core = depth >= 0.6 * depth.max()
    values = image[core]
    median = np.median(values)
    robust_sd = 1.4826 * np.median(np.abs(values - median)) or 1e-6 * abs(median)
    similar = blob & (np.abs(np.nan_to_num(image, nan=np.inf) - median) <= 3.0 * robust_sd)
    labels, _ = ndimage.label(similar)
    keep = np.unique(labels[core & similar])
    refined = np.isin(labels, keep[keep > 0])
    return ndimage.binary_fill_holes(refined) & blob if refined.any() else blob


def find_blood_pool(bright_blood: np.ndarray, pixel_mm: float, erosion_mm: float = 2.0) -> np.ndarray:
    """Boolean mask of the LV blood pool in one 2-D slice. pixel_mm: in-plane spacing (mm)."""
    valid = np.isfinite(bright_blood)
    # a 3x3 median tames map noise, so that tissue enhancing nearly as much as blood (an infarct
    # late after contrast) stays apart from the cavity; the blood value itself is taken unfiltered.
    image = np.where(valid, ndimage.median_filter(np.nan_to_num(bright_blood), size=3), np.nan)
    if valid.sum() < 100:
        raise BloodPoolNotFound("too few valid pixels to look for a blood pool")
    threshold = otsu_threshold(image[valid])
    candidates, count = ndimage.label(valid & (np.nan_to_num(image, nan=-np.inf) > threshold))
    pixel_area = pixel_mm ** 2
    centre = np.array(image.shape) / 2.0
    best, best_score = None, 0.0
    for label in range(1, count + 1):
        blob = candidates == label
        area = blob.sum() * pixel_area
        if not MIN_AREA_MM2 <= area <= MAX_AREA_MM2:
            continue
        roundness = _roundness(blob)
        if roundness < MIN_ROUNDNESS:
            continue
        distance = np.linalg.norm(np.argwhere(blob).mean(axis=0) - centre) / image.shape[0]
        score = roundness ** 2 * np.nanmean(image[blob]) / (1.0 + 4.0 * distance)
        if score > best_score:
            best, best_score = blob, score
    if best is None:
        raise BloodPoolNotFound("no round, bright structure of blood-pool size near the centre")
    best = _refine_around_core(image, ndimage.binary_fill_holes(best))
    iterations = max(int(round(erosion_mm / pixel_mm)), 0)
    eroded = ndimage.binary_erosion(best, iterations=iterations) if iterations else best
    return eroded if eroded.sum() >= 10 else best
