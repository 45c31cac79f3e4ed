"""AHA segments on the short-axis phantom: the anterior infarct lands in the anterior segments, the septum
against the RV, whichever way round the image is stored (Cerqueira et al., Circulation 2002;105:539)."""
import numpy as np
import pytest

from analysis.aha_segments import SeptumNotFound, find_septum, segment_labels, slice_levels
from analysis.ecv import ecv_map, relative_r1_change
from analysis.myocardium import find_lv_myocardium
from analysis.phantoms import SliceGeometry
from analysis.phantoms.t1_ecv import ecv_phantom


def _segments(level, mirror=False, geometry=SliceGeometry()):
    p = ecv_phantom(geometry, seed=5)
    pre, post = (np.fliplr(m) if mirror else m for m in (p.t1_pre_ms, p.t1_post_ms))
    result = ecv_map(pre, post, p.hematocrit, p.pixel_mm)
    myocardium = find_lv_myocardium(pre, result.blood_pool, p.pixel_mm, t1_post_ms=post)
    septum = find_septum(myocardium, relative_r1_change(pre, post), p.pixel_mm)
    labels = segment_labels(myocardium, septum, level, anterior_to_septum=-1 if mirror else 1)
    ecv = {n: float(np.median(result.ecv[labels == n])) for n in np.unique(labels) if n}
    return septum, labels, ecv


def test_the_septum_is_where_the_rv_lies_and_the_anterior_infarct_is_in_the_anterior_segment():
    septum, labels, ecv = _segments("mid")
    # the phantom's RV is on the image's left (180 degrees), its infarct centred at 90 degrees (anterior)
    assert abs((septum.mid_deg - 180 + 180) % 360 - 180) < 15
    assert sorted(ecv) == list(range(7, 13))
    assert max(ecv, key=ecv.get) == 7                      # mid anterior
    for remote in (9, 10, 11):                             # inferoseptal, inferior, inferolateral: remote, 25 %
        assert abs(ecv[remote] - 0.25) < 0.02
    assert (labels > 0).sum() > 0 and all((labels == n).sum() > 0.1 * (labels > 0).sum() / 6 for n in ecv)


def test_a_mirrored_image_gives_the_same_segments():
    _, _, straight = _segments("basal")
    _, _, mirrored = _segments("basal", mirror=True)
    assert sorted(straight) == sorted(mirrored) == list(range(1, 7))
    assert max(mirrored, key=mirrored.get) == 1
    for n in straight:
        assert abs(straight[n] - mirrored[n]) < 0.02


def test_apical_slices_have_four_segments():
    _, _, ecv = _segments("apical")
    assert sorted(ecv) == [13, 14, 15, 16]
    assert max(ecv, key=ecv.get) == 13
    assert abs(ecv[15] - 0.25) < 0.02


def test_levels_split_the_slices_into_thirds_base_to_apex():
    assert slice_levels(3) == ["basal", "mid", "apical"]
    assert slice_levels(6) == ["basal", "basal", "mid", "mid", "apical", "apical"]
    assert slice_levels(1) == ["mid"]


def test_no_rv_no_segments():
    p = ecv_phantom(SliceGeometry(), seed=6)
    result = ecv_map(p.t1_pre_ms, p.t1_post_ms, p.hematocrit, p.pixel_mm)
    myocardium = find_lv_myocardium(p.t1_pre_ms, result.blood_pool, p.pixel_mm)
    bright = relative_r1_change(p.t1_pre_ms, p.t1_post_ms)
    bright[~(myocardium.cavity | myocardium.mask)] = 0.0         # nothing bright outside the LV
    with pytest.raises(SeptumNotFound):
        find_septum(myocardium, bright, p.pixel_mm)


def test_a_drawn_ring_gives_its_cavity_angles_and_depth_and_an_open_one_is_refused():
    """analysis.myocardium.myocardium_from_mask: angles counter-clockwise from the image's +column direction
    about the cavity's centre (the convention of find_lv_myocardium), depth 0-1 from cavity to outside."""
    from analysis.myocardium import MyocardiumNotFound, myocardium_from_mask
    rows, cols = np.mgrid[0:81, 0:81]
    r = np.hypot(rows - 40, cols - 40)
    ring = (r >= 12) & (r < 18)
    wall = myocardium_from_mask(ring, np.full(ring.shape, 1000.0))
    assert np.array_equal(wall.cavity, r < 12)
    assert abs(wall.angle_deg[40, 55] - 0.0) < 1e-6 and abs(wall.angle_deg[25, 40] - 90.0) < 1e-6   # right, up
    assert abs(wall.angle_deg[40, 25] - 180.0) < 1e-6 and abs(wall.angle_deg[55, 40] - 270.0) < 1e-6
    assert wall.depth[40, 52] < 0.25 and wall.depth[40, 57] == 1.0
    with pytest.raises(MyocardiumNotFound, match="closed ring"):
        myocardium_from_mask(ring & (cols < 45), np.full(ring.shape, 1000.0))      # a crescent
    with pytest.raises(MyocardiumNotFound, match="no LV myocardium"):
        myocardium_from_mask(np.zeros_like(ring), np.full(ring.shape, 1000.0))
