"""Automatic LV myocardium of one short-axis slice, from a native T1 map, the LV blood pool and, when there is
one, a post-contrast T1 map of the same slice.

Radial profiles are cast from the blood pool's centroid. Along each ray:
- the endocardium is where native T1 falls below the midpoint between blood and myocardium. Native T1
  separates blood from myocardium, infarct included (its native T1 rises by 10-20 %; Messroghli et al.,
  JCMR 2017;19:75);
- the ray leaves the wall where native R1 leaves the myocardial band (blood-like below; fat, liver, chest
  wall above), or where the post-contrast R1 change relative to blood's (ECV / (1 - Hct)) falls well below
  the myocardium's: tissue with the myocardium's native T1 but less extracellular space (skeletal muscle)
  is told apart only there;
- the epicardium is the steepest step of the profile that caused the exit, found on R1, where a voxel
  shared by two tissues lies half-way, rather than at a fixed level that a thin, blurred wall never reaches;
- a wall more than 1.5 times the median thickness of the rays that ended on a border takes that median
  (the wall-thickness prior), capped at MAX_WALL_MM.
Both borders are median-smoothed over angle, so one noisy ray cannot cut a notch.

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
MIN_WALL_MM = 3.0            # thinner than a thinned infarct scar
OUTSIDE_MM = 3.0             # how far past a ray's exit from the band its epicardial step is looked for
CONTRAST_BAND_LOW = 0.6      # fraction of myocardial R1 change below which a ray has left the myocardium
MYOCARDIAL_BAND_LOW = 0.88   # fraction of myocardial T1 below which a ray has left the myocardium (fat, liver)
SMOOTHING_RAYS = 9           # angular median filter width (rays, 2 degrees each)
WALL_LEVEL_RAYS = 15         # rays over which a wall's own R1 level is smoothed (30 degrees)


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


def _band_leaves(profiles, contrast, low, high, contrast_low):
    """Per sample: outside the myocardial band, by native R1 (blood below; fat, liver, chest wall above) or by the
    post-contrast contrast (tissue with less extracellular space than myocardium: skeletal muscle, fat). High
    contrast is not a border: an infarct's is as high as blood's."""
    outside = (profiles < low) | (profiles > high)
    if contrast is not None:
        outside |= contrast < contrast_low
    return outside & np.roll(outside, -1, axis=1)     # two consecutive samples (1 px) out of the band


def _steepest_edge(profiles, endo, exit_, outside_samples, low, high, radii_px):
    """Per ray, the radius of the steepest fall (or rise) of the profile around the ray's exit from the band:
    the border of a blurred step, wherever the levels on either side lie. A fixed level cuts a thin, blurred
    wall short, because the wall never reaches its plateau. Rays whose exit this profile did not cause keep
    the exit."""
    index = np.arange(profiles.shape[1])
    beyond = (index[None, :] >= exit_[:, None]) & (index[None, :] <= (exit_ + outside_samples)[:, None])
    below = np.where(beyond, profiles, np.inf).min(axis=1) < low
    above = np.where(beyond, profiles, -np.inf).max(axis=1) > high
    slope = np.gradient(profiles, axis=1) * np.where(below, -1.0, 1.0)[:, None]    # positive towards the outside
    # from the wall's outer half on: the endocardial step can be the steeper one (blood to wall in contrast)
    start = np.maximum(exit_ - 2, (endo + exit_) // 2 + 1)
    window = (index[None, :] >= start[:, None]) & (index[None, :] <= (exit_ + outside_samples)[:, None])
    peak = np.where(window, slope, -np.inf).argmax(axis=1)
    rays = np.arange(len(peak))
    left, centre = slope[rays, np.maximum(peak - 1, 0)], slope[rays, peak]
    right = slope[rays, np.minimum(peak + 1, profiles.shape[1] - 1)]
    curvature = left - 2 * centre + right
    offset = np.where(curvature < 0, np.clip(0.5 * (left - right) / np.where(curvature < 0, curvature, -1), -0.5, 0.5), 0)
    step = radii_px[1] - radii_px[0]
    return np.where(below | above, radii_px[peak] + offset * step, radii_px[exit_])


def _thickness_prior(endo_r, epi_r, capped, pixel_mm):
    """Epicardial radii held to the wall's own thickness: a ray whose wall is more than 1.5 times the median
    thickness of the rays that ended on a border (or hit the cap) takes that median, so tissue of the
    myocardium's T1 and contrast touching the epicardium over an arc is not taken as wall."""
    thickness = epi_r - endo_r
    ended = ~capped
    typical = float(np.median(thickness[ended])) if ended.sum() >= len(thickness) // 4 else MAX_WALL_MM / 2 / pixel_mm
    typical = float(np.clip(typical, MIN_WALL_MM / pixel_mm, MAX_WALL_MM / pixel_mm))
    too_thick = thickness > 1.5 * typical
    return np.where(too_thick, endo_r + typical, epi_r)


def find_lv_myocardium(t1_native_ms: np.ndarray, blood_pool: np.ndarray, pixel_mm: float,
                       t1_post_ms: np.ndarray | None = None) -> Myocardium:
    """LV myocardium of one slice. t1_native_ms: native T1 map (ms); blood_pool: LV blood mask; pixel_mm in mm;
    t1_post_ms: a post-contrast T1 map (ms) of the same slice, when there is one."""
    if not blood_pool.any():
        raise MyocardiumNotFound("empty blood pool")
    t1_image = ndimage.median_filter(np.nan_to_num(t1_native_ms.astype(float)), size=3)
    image = ndimage.median_filter(_r1_per_s(t1_native_ms), size=3)
    blood_r1 = float(np.median(image[blood_pool]))
    centre = np.argwhere(blood_pool).mean(axis=0)
    step_px = 0.5
    pool_radius_px = np.sqrt(blood_pool.sum() / np.pi)
    radii_px = np.arange(0.0, pool_radius_px * 2.0 + MAX_WALL_MM / pixel_mm + 10.0, step_px)
    angles = np.linspace(0.0, 2 * np.pi, RAYS, endpoint=False)
    profiles = _profiles(image, centre, radii_px, angles)
    t1_profiles = _profiles(t1_image, centre, radii_px, angles)
    contrast_image = _contrast(t1_native_ms, t1_post_ms, blood_pool)
    contrast = None if contrast_image is None else _profiles(contrast_image, centre, radii_px, angles)
    inside_pool = _profiles(blood_pool.astype(float), centre, radii_px, angles) > 0.5
    pool_edge = np.where(inside_pool.all(axis=1), len(radii_px) - 1, (~inside_pool).argmax(axis=1))

    # the first level estimate 1-4 mm past where T1 first drops well below blood's: a blood pool found small
    # (eroded, refined away from enhancing tissue) must not put the estimate inside the cavity
    first_wall = radii_px[_first_crossing(t1_profiles < 0.8 * 1000.0 / blood_r1, (0.6 * pool_edge).astype(int),
                                          len(radii_px) - 1)]
    ring = (radii_px[None, :] >= first_wall[:, None] + 1.0 / pixel_mm) & \
           (radii_px[None, :] <= first_wall[:, None] + 4.0 / pixel_mm)
    if not ring.any():
        raise MyocardiumNotFound("T1 nowhere drops below 80 % of blood's around the blood pool")
    myocardial_r1 = float(np.median(profiles[ring]))
    myocardial_contrast = None if contrast is None else float(np.median(contrast[ring]))
    for _ in range(2):   # refine the myocardial level on the wall found with the previous estimate
        if not blood_r1 / 0.95 < myocardial_r1 < blood_r1 / 0.2:
            raise MyocardiumNotFound(f"no myocardial T1 level around the blood pool (blood {1000 / blood_r1:.0f} ms, "
                                     f"wall {1000 / myocardial_r1:.0f} ms)")
        # the endocardium half-way in T1, not R1: an infarct's native T1 (10-20 % above myocardium's) stays
        # well below this level, and the wall's blood-side voxels are left out rather than in
        blood_side_t1 = 500.0 / blood_r1 + 500.0 / myocardial_r1
        blood_side = 1000.0 / blood_side_t1
        outer_side = myocardial_r1 / MYOCARDIAL_BAND_LOW
        # searched from well inside the pool: a pool that leaked into enhancing infarct must not push the
        # endocardium out; isolated inner crossings (papillary muscles) are what the angular median removes
        endo = _first_crossing(t1_profiles < blood_side_t1, (0.6 * pool_edge).astype(int), len(radii_px) - 1)
        contrast_low = None if myocardial_contrast is None else CONTRAST_BAND_LOW * myocardial_contrast
        leaves = _band_leaves(profiles, contrast, blood_side, outer_side, contrast_low)
        cap = endo + int(MAX_WALL_MM / pixel_mm / step_px)
        exit_ = _first_crossing(leaves, endo + 1, len(radii_px) - 1)
        capped = exit_ >= cap
        exit_ = np.minimum(exit_, cap)
        outside = int(OUTSIDE_MM / pixel_mm / step_px)
        epi_r = _steepest_edge(profiles, endo, exit_, outside, blood_side, outer_side, radii_px)
        if contrast is not None:
            epi_r = np.minimum(epi_r, _steepest_edge(contrast, endo, exit_, outside, contrast_low, np.inf, radii_px))
        endo_r = _circular_median(_subsample_crossing(t1_profiles, endo, blood_side_t1, radii_px), SMOOTHING_RAYS)
        epi_r = _thickness_prior(endo_r, epi_r, capped, pixel_mm)
        epi_r = np.maximum(_circular_median(epi_r, SMOOTHING_RAYS), endo_r + 2.0 / pixel_mm)
        # levels from the middle third of the wall: its edges are blurred with blood, fat or the neighbour
        core = (radii_px[None, :] >= (endo_r + (epi_r - endo_r) / 3)[:, None]) & \
               (radii_px[None, :] <= (epi_r - (epi_r - endo_r) / 3)[:, None])
        myocardial_r1 = float(np.median(profiles[core]))
        if contrast is not None:
            myocardial_contrast = float(np.median(contrast[core]))
    endo_r = _endocardium_in_r1(profiles, core, blood_r1, (0.6 * pool_edge).astype(int), radii_px)
    epi_r = np.maximum(epi_r, endo_r + 2.0 / pixel_mm)
    return _rasterise(image.shape, centre, angles, endo_r, epi_r, 1000.0 / myocardial_r1, 1000.0 / blood_r1)


def _endocardium_in_r1(profiles, core, blood_r1, start, radii_px):
    """The endocardium half-way in R1 between blood and the ray's own wall (the median of its core, smoothed
    over angle): unbiased on a blurred wall, where the T1 midpoint lets blood-filled voxels in, and an
    infarct's lower R1 lowers its own ray's level, so it stays in the wall."""
    wall_r1 = np.full(len(profiles), np.nan)
    has_core = core.any(axis=1)        # a ray whose wall is under a sample thick has none
    wall_r1[has_core] = np.nanmedian(np.where(core[has_core], profiles[has_core], np.nan), axis=1)
    wall_r1 = _circular_median(np.where(has_core, wall_r1, np.median(wall_r1[has_core])), WALL_LEVEL_RAYS)
    level = 0.5 * (blood_r1 + wall_r1)
    endo = _first_crossing(profiles > level[:, None], start, profiles.shape[1] - 1)
    return _circular_median(_subsample_crossing(profiles, endo, level, radii_px), SMOOTHING_RAYS)


def _r1_per_s(t1_ms: np.ndarray) -> np.ndarray:
    """R1 (1/s) of a T1 map (ms); 0 where there is no T1. Borders are found on R1, not T1: a voxel shared by two
    tissues relaxes at roughly the mean of their rates, so a blurred border lies half-way in R1, while in T1 a
    little fat pulls a wall voxel far down and a little blood hardly moves it."""
    t1 = np.nan_to_num(t1_ms.astype(float))
    return np.divide(1000.0, t1, out=np.zeros_like(t1), where=t1 > 0)


def _contrast(t1_native_ms, t1_post_ms, blood_pool) -> np.ndarray | None:
    """The R1 change relative to blood's, (3x3 median-filtered): 1 in blood, ECV / (1 - Hct) in tissue
    (Messroghli et al., JCMR 2017;19:75); None without a post-contrast map."""
    if t1_post_ms is None:
        return None
    native, post = _r1_per_s(t1_native_ms), _r1_per_s(t1_post_ms)
    delta_r1 = np.where((native > 0) & (post > 0), post - native, 0.0)
    blood = float(np.median(delta_r1[blood_pool]))
    if blood <= 0:
        return None
    return ndimage.median_filter(delta_r1 / blood, size=3)


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


def myocardium_from_mask(mask: np.ndarray, t1_native_ms: np.ndarray) -> Myocardium:
    """A Myocardium from a drawn wall (bool (rows, cols), e.g. a received SEG): the cavity is what the wall
    encloses, angles are about the cavity's centroid, depth runs from the cavity (0) to the outside (1)."""
    if not mask.any():
        raise MyocardiumNotFound("no LV myocardium on the slice")
    filled = ndimage.binary_fill_holes(mask)
    cavity = filled & ~mask
    if not cavity.any():
        raise MyocardiumNotFound("the drawn LV myocardium encloses no cavity (not a closed ring)")
    centre = np.argwhere(cavity).mean(axis=0)
    yy, xx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]].astype(float)
    return Myocardium(mask=mask, cavity=cavity, depth=wall_depth(mask, cavity),
                      angle_deg=np.degrees(np.arctan2(centre[0] - yy, xx - centre[1]) % (2 * np.pi)),
                      myocardial_t1_ms=float(np.median(t1_native_ms[mask])),
                      blood_t1_ms=float(np.median(t1_native_ms[cavity])))


def wall_depth(myocardium: np.ndarray, cavity: np.ndarray) -> np.ndarray:
    """Outer edge of each myocardial voxel across the wall: 1/n .. 1 from endocardium to epicardium."""
    from_endo = ndimage.distance_transform_edt(~cavity)
    from_epi = ndimage.distance_transform_edt(ndimage.binary_fill_holes(myocardium | cavity))
    wall = np.maximum(from_endo + from_epi - 1.0, 1.0)
    return np.where(myocardium, np.clip(from_endo / wall, 0.0, 1.0), np.nan)
