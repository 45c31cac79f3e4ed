import numpy as np
import pytest

from analysis.blood_pool import BloodPoolNotFound, find_blood_pool, otsu_threshold
from analysis.ecv import ecv_map, relative_r1_change
from analysis.phantoms import Region, SliceGeometry
from analysis.phantoms.t1_ecv import ecv_phantom


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_blood_pool_is_lv_blood_only(seed):
    p = ecv_phantom(seed=seed)
    mask = find_blood_pool(relative_r1_change(p.t1_pre_ms, p.t1_post_ms), p.pixel_mm)
    assert mask.sum() > 200
    assert np.all(p.labels[mask] == Region.LV_BLOOD)  # no infarct touching the cavity, no RV


def test_blood_pool_without_mvo_and_with_transmural_infarct():
    p = ecv_phantom(SliceGeometry(infarct_transmurality=1.0, mvo_width_deg=0.0))
    mask = find_blood_pool(relative_r1_change(p.t1_pre_ms, p.t1_post_ms), p.pixel_mm)
    assert np.all(p.labels[mask] == Region.LV_BLOOD)


def test_blood_pool_not_found_in_noise():
    rng = np.random.default_rng(0)
    with pytest.raises(BloodPoolNotFound):
        find_blood_pool(rng.normal(size=(64, 64)), pixel_mm=1.5)


def test_otsu_separates_two_classes():
    values = np.concatenate([np.full(100, 1.0), np.full(100, 5.0)])
    assert 1.0 < otsu_threshold(values) < 5.0


def test_ecv_matches_truth_per_region():
    p = ecv_phantom(noise_fraction=0.03)
    result = ecv_map(p.t1_pre_ms, p.t1_post_ms, p.hematocrit, p.pixel_mm)
    for region, truth in ((Region.REMOTE, 0.25), (Region.INFARCT, 0.55), (Region.MVO, 0.30),
                          (Region.OTHER_TISSUE, 0.20)):
        assert abs(np.median(result.ecv[p.labels == region]) - truth) < 0.02, region
    assert abs(result.blood_t1_post_ms - 400) < 10
    assert np.all(result.ecv[p.labels == Region.AIR] == 0)  # no NaN, background flagged invalid
    assert not result.valid[p.labels == Region.AIR].any()


def test_ecv_noise_free_is_exact():
    p = ecv_phantom(noise_fraction=0.0)
    result = ecv_map(p.t1_pre_ms, p.t1_post_ms, p.hematocrit, p.pixel_mm)
    tissue = ~np.isnan(p.ecv_truth)
    np.testing.assert_allclose(result.ecv[tissue], p.ecv_truth[tissue], atol=1e-5)


def test_ecv_scales_with_hematocrit():
    p = ecv_phantom(noise_fraction=0.0)
    a = ecv_map(p.t1_pre_ms, p.t1_post_ms, 0.40, p.pixel_mm).ecv
    b = ecv_map(p.t1_pre_ms, p.t1_post_ms, 0.50, p.pixel_mm).ecv
    remote = p.labels == Region.REMOTE
    assert np.allclose(b[remote] / a[remote], 0.5 / 0.6, rtol=1e-4)


def test_swapped_pre_post_is_an_error():
    p = ecv_phantom()
    with pytest.raises(ValueError, match="swapped|blood"):
        ecv_map(p.t1_post_ms, p.t1_pre_ms, p.hematocrit, p.pixel_mm,
                blood_pool=p.labels == Region.LV_BLOOD)


def test_mismatched_grids_are_an_error():
    p = ecv_phantom()
    with pytest.raises(ValueError, match="differ"):
        ecv_map(p.t1_pre_ms, p.t1_post_ms[:-1], p.hematocrit, p.pixel_mm)
