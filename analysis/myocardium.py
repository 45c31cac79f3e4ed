"""Automatic LV myocardium of one short-axis slice, from a native T1 map and the LV blood pool.

Radial profiles of the (3x3 median-filtered) native T1 map are cast from the
blood pool's centroid. Along each ray the endocardium is where T1 falls below
the midpoint between blood and myocardium, and the epicardium where it leaves
the myocardial band (below 88 % of myocardial T1: fat, liver, chest wall; or
above the blood midpoint: RV blood), capped at MAX_WALL_MM. Both borders are
median-smoothed over angle, so one noisy ray cannot cut a notch. Native T1 is
used because it separates blood, myocardium (infarct included: its native T1
rises by 10-20 %) and surroundings before contrast confounds them
(Messroghli et al., JCMR 2017;19:75, normal ranges).

The result also gives each myocardial pixel its depth through the wall
(0 endocardium .. 1 epicardium) and its angle, for transmurality.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from analysis.errors import AnalysisError


RAYS = 180
MAX_WALL_MM = 20.0           # thicker than any LV wall short of severe hypertrophy
MYOCARDIAL_BAND_LOW = 0.88   # fraction of myocardial T1 below which a ray has left the myocardium
SMOOTHING_RAYS = 9           # angular median filter width (rays, 2 degrees each)


class MyocardiumNotFound(AnalysisError):
    pass


@dataclass
class Myocardium:
    mask: np.ndarray          # bool (rows, cols): LV myocardium
    cavity: np.ndarray        # bool (rows, cols): inside the endocardial border
    depth: np.ndarray         # float (rows, cols): 0 at endocardium .. 1 at epicardium, NaN outside the wall
    angle_deg: np.ndarray     # float (rows, cols): angle about the LV centre, counter-clockwise from image +x
    myocardial_t1_ms: float   # median native T1 of the found wall
    blood_t1_ms: float


def _profiles(image: np.ndarray, centre: np.ndarray, radii_px: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(rays, samples) of image along rays from centre (row, col); angles counter-clockwise from +x."""
    rows = centre[0] - np.outer(np.sin(angles), radii_px)
    cols = centre[1] + np.outer(np.cos(angles), radii_px)
    return ndimage.map_coordinates(image, [rows, cols], order=1, cval=0.0)


def _first_crossing(condition: np.ndarray, start: np.ndarray, default: int) -> np.ndarray:
    """Per ray, the first sample index >= start where condition holds (default if none)."""
    index = np.arange(condition.shape[1])
    hit = condition & (index[None, :] >= start[:, None])
    return np.where(hit.any(axis=1), hit.argmax(axis=1), default)


def _subsample_crossing(profiles: np.ndarray, index: np.ndarray, level: float, radii_px: np.ndarray) -> np.ndarray:
    """Radius where each profile crosses level, interpolated between the samples before and at index."""
    rays = np.arange(len(index))
    before, at = profiles[rays, np.maximum(index - 1, 0)], profiles[rays, index]
    fraction = np.clip((before - level) / np.where(before != at, before - at, 1.0), 0.0, 1.0)
    step = radii_px[1] - radii_px[0]
    return radii_px[index] - step + fraction * step * (index > 0) + step * (index == 0)


def _circular_median(values: np.ndarray, width: int) -> np.ndarray:
    return ndimage.median_filter(values, size=width, mode="wrap")


def find_lv_myocardium(t1_native_ms: np.ndarray, blood_pool: np.ndarray, pixel_mm: float) -> Myocardium:
    """LV myocardium of one slice. t1_native_ms: native T1 map (ms); blood_pool: LV blood mask; pixel_mm in mm."""
    if not blood_pool.any():
        raise MyocardiumNotFound("empty blood pool")
    image = ndimage.median_filter(np.nan_to_num(t1_native_ms.astype(float)), size=3)
    blood_t1 = float(np.median(image[blood_pool]))
    centre = np.argwhere(blood_pool).mean(axis=0)
    step_px = 0.5
    pool_radius_px = np.sqrt(blood_pool.sum() / np.pi)
    radii_px = np.arange(0.0, pool_radius_px * 2.0 + MAX_WALL_MM / pixel_mm + 10.0, step_px)
    angles = np.linspace(0.0, 2 * np.pi, RAYS, endpoint=False)
    profiles = _profiles(image, centre, radii_px, angles)
    inside_pool = _profiles(blood_pool.astype(float), centre, radii_px, angles) > 0.5
    pool_edge = np.where(inside_pool.all(axis=1), len(radii_px) - 1, (~inside_pool).argmax(axis=1))

    ring = (radii_px[None, :] >= radii_px[pool_edge][:, None] + 4.0 / pixel_mm) & \
           (radii_px[None, :] <= radii_px[pool_edge][:, None] + 7.0 / pixel_mm)
    myocardial_t1 = float(np.median(profiles[ring]))
    for _ in range(2):   # refine the myocardial level on the wall found with the previous estimate
        if not 0.2 * blood_t1 < myocardial_t1 < 0.95 * blood_t1:
            raise MyocardiumNotFound(f"no myocardial T1 level around the blood pool (blood {blood_t1:.0f} ms, "
                                     f"wall {myocardial_t1:.0f} ms)")
        upper = 0.5 * (blood_t1 + myocardial_t1)
        lower = MYOCARDIAL_BAND_LOW * myocardial_t1
        # searched from well inside the pool: a pool that leaked into enhancing infarct must not push the
        # endocardium out; isolated inner crossings (papillary muscles) are what the angular median removes
        endo = _first_crossing(profiles < upper, (0.6 * pool_edge).astype(int), len(radii_px) - 1)
        outside = (profiles < lower) | (profiles > upper)
        # the wall ends where two consecutive samples (1 px) leave the band
        leaves = outside & np.roll(outside, -1, axis=1)
        epi = _first_crossing(leaves, endo + 1, len(radii_px) - 1)
        epi = np.minimum(epi, endo + int(MAX_WALL_MM / pixel_mm / step_px))
        endo_r = _circular_median(_subsample_crossing(profiles, endo, upper, radii_px), SMOOTHING_RAYS)
        epi_r = np.maximum(_circular_median(radii_px[epi], SMOOTHING_RAYS), endo_r + 2.0 / pixel_mm)
        wall = (radii_px[None, :] >= endo_r[:, None]) & (radii_px[None, :] < epi_r[:, None])
        myocardial_t1 = float(np.median(profiles[wall]))
    return _rasterise(image.shape, centre, angles, endo_r, epi_r, myocardial_t1, blood_t1)


def _rasterise(shape, centre, angles, endo_r, epi_r, myocardial_t1, blood_t1) -> Myocardium:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    dy, dx = centre[0] - yy, xx - centre[1]
    r = np.hypot(dx, dy)
    angle = np.arctan2(dy, dx) % (2 * np.pi)
    position = angle / (2 * np.pi) * len(angles)   # fractional ray index; interpolate the borders between rays
    low = np.floor(position).astype(int) % len(angles)
    high = (low + 1) % len(angles)
    w = position - np.floor(position)
    endo = (1 - w) * endo_r[low] + w * endo_r[high]
    epi = (1 - w) * epi_r[low] + w * epi_r[high]
    mask = (r >= endo) & (r < epi)
    depth = np.where(mask, (r - endo) / np.maximum(epi - endo, 1e-6), np.nan)
    if mask.sum() < 20:
        raise MyocardiumNotFound("the wall found is too small")
    return Myocardium(mask=mask, cavity=r < endo, depth=depth, angle_deg=np.degrees(angle),
                      myocardial_t1_ms=myocardial_t1, blood_t1_ms=blood_t1)
