"""Automatic LV myocardium from a native T1 map and the blood pool."""
from dataclasses import replace

import numpy as np
import pytest

from analysis.blood_pool import find_blood_pool
from analysis.ecv import ecv_map, relative_r1_change
from analysis.myocardium import MyocardiumNotFound, find_lv_myocardium
from analysis.phantoms import MYOCARDIUM, Region, SliceGeometry
from analysis.phantoms.hard_walls import HARD_WALLS, NO_INFARCT
from analysis.phantoms.t1_ecv import ecv_phantom


def _found(geometry, seed):
    p = ecv_phantom(geometry, seed=seed)
    pool = find_blood_pool(relative_r1_change(p.t1_pre_ms, p.t1_post_ms), p.pixel_mm)
    return p, find_lv_myocardium(p.t1_pre_ms, pool, p.pixel_mm)


@pytest.mark.parametrize("geometry,seed", [
    (SliceGeometry(), 1),
    (SliceGeometry(infarct_transmurality=1.0, mvo_width_deg=0.0), 2),
    (SliceGeometry(lv_endo_radius_mm=25.0, lv_epi_radius_mm=36.0), 3),
])
def test_myocardium_matches_phantom_wall(geometry, seed):
    p, found = _found(geometry, seed)
    truth = np.isin(p.labels, MYOCARDIUM)
    dice = 2 * (found.mask & truth).sum() / (found.mask.sum() + truth.sum())
    assert dice > 0.95          # README: about 0.95 (0.961-0.972 on these three)
    assert not (found.mask & np.isin(p.labels, [Region.LV_BLOOD, Region.RV_BLOOD])).any()
    # the infarct (native T1 raised) is inside the wall, not cut out
    assert (found.mask & (p.labels == Region.INFARCT)).sum() >= 0.9 * (p.labels == Region.INFARCT).sum()
    assert abs(found.myocardial_t1_ms - 1000) < 30


def test_depth_runs_from_endocardium_to_epicardium():
    p, found = _found(SliceGeometry(), 4)
    remote = found.mask & (p.labels == Region.REMOTE)
    assert np.nanmin(found.depth) >= 0 and np.nanmax(found.depth) <= 1
    # MVO sits in the inner 30 % of the wall
    assert np.nanmedian(found.depth[found.mask & (p.labels == Region.MVO)]) < 0.3
    assert 0.35 < np.nanmedian(found.depth[remote]) < 0.65
    assert found.cavity[p.labels == Region.LV_BLOOD].mean() > 0.95


def test_no_wall_around_a_pool_in_flat_tissue():
    t1 = np.full((96, 96), 1500.0)
    pool = np.zeros((96, 96), dtype=bool)
    pool[40:56, 40:56] = True
    with pytest.raises(MyocardiumNotFound):
        find_lv_myocardium(t1, pool, 1.5)


# Issue 16's phantoms (analysis/phantoms/hard_walls.py), with partial volume at every border and 5 % noise;
# expected values are the phantom's truth.
def _found_with_post(geometry, seed, psf_fwhm_mm):
    p = ecv_phantom(geometry, seed=seed, noise_fraction=0.05, supersample=4, psf_fwhm_mm=psf_fwhm_mm)
    result = ecv_map(p.t1_pre_ms, p.t1_post_ms, p.hematocrit, p.pixel_mm)
    return p, result, find_lv_myocardium(p.t1_pre_ms, result.blood_pool, p.pixel_mm, t1_post_ms=p.t1_post_ms)


@pytest.mark.parametrize("case", list(HARD_WALLS))
def test_thin_walls_and_similar_neighbours_give_the_true_wall_and_ecv(case):
    """Issue 16's target: Dice >= 0.85, mean myocardial ECV within 2 points of the true wall's."""
    p, result, found = _found_with_post(HARD_WALLS[case], 11, psf_fwhm_mm=0.0)
    truth = np.isin(p.labels, MYOCARDIUM)
    assert 2 * (found.mask & truth).sum() / (found.mask.sum() + truth.sum()) >= 0.85
    assert abs(np.mean(result.ecv[found.mask]) - np.mean(p.ecv_truth[truth])) <= 0.02
    assert (found.mask & (p.labels == Region.NEIGHBOUR)).sum() <= 0.05 * truth.sum()


@pytest.mark.parametrize("case", list(HARD_WALLS))
def test_a_blurred_thin_wall_is_still_found(case):
    """With a 2 mm point spread the wall is found (Dice >= 0.85) but its mean ECV reads 1.5-3.5 points high
    (blood in the endocardial voxels): README, 'Regions', states it; not the target yet."""
    p, result, found = _found_with_post(HARD_WALLS[case], 12, psf_fwhm_mm=2.0)
    truth = np.isin(p.labels, MYOCARDIUM)
    assert 2 * (found.mask & truth).sum() / (found.mask.sum() + truth.sum()) >= 0.85
    assert (found.mask & (p.labels == Region.NEIGHBOUR)).sum() <= 0.10 * truth.sum()   # its blurred border pixel


def test_without_the_post_contrast_map_a_similar_t1_neighbour_is_held_by_the_wall_thickness():
    p = ecv_phantom(replace(NO_INFARCT, neighbour_width_deg=90.0), seed=12, supersample=4)
    pool = find_blood_pool(relative_r1_change(p.t1_pre_ms, p.t1_post_ms), p.pixel_mm)
    found = find_lv_myocardium(p.t1_pre_ms, pool, p.pixel_mm)
    truth = np.isin(p.labels, MYOCARDIUM)
    assert found.mask.sum() <= 1.15 * truth.sum()
    assert 2 * (found.mask & truth).sum() / (found.mask.sum() + truth.sum()) >= 0.85
