"""One home for slice geometry and DICOM date-time, checked against highdicom and PS3.5."""
from datetime import datetime

import numpy as np
import pytest
from highdicom.spatial import PixelToReferenceTransformer, ReferenceToPixelTransformer, get_normal_vector

from analysis.geometry import (group_by_slice, normal, patient_mm_to_pixels, pixels_to_patient_mm,
                               position_along_normal_mm, same_slice)
from node.inputs.frames import parse_datetime

# An oblique short-axis plane as a scanner plans it: rows and columns 1.4 and 1.6 mm apart.
POSITION = np.array([-120.3, -95.8, 47.2])
ORIENTATION = np.array([0.8, 0.6, 0.0, -0.36, 0.48, 0.8])
SPACING = np.array([1.4, 1.6])   # row spacing, column spacing (PS3.3 C.7.6.2.1.1)


def test_pixel_to_patient_agrees_with_highdicom():
    rows_cols = np.array([[0, 0], [10, 0], [0, 10], [123, 45]])
    ours = pixels_to_patient_mm(rows_cols, POSITION, ORIENTATION, SPACING)
    reference = PixelToReferenceTransformer(list(POSITION), list(ORIENTATION), list(SPACING))(
        rows_cols[:, ::-1])  # (column, row)
    np.testing.assert_allclose(ours, reference, atol=1e-9)


def test_patient_to_pixel_agrees_with_highdicom_and_inverts():
    points = pixels_to_patient_mm(np.array([[7.0, 3.0], [100.0, 80.0]]), POSITION, ORIENTATION, SPACING)
    ours = patient_mm_to_pixels(points, POSITION, ORIENTATION, SPACING)
    np.testing.assert_allclose(ours, [[7.0, 3.0], [100.0, 80.0]], atol=1e-9)
    reference = ReferenceToPixelTransformer(list(POSITION), list(ORIENTATION), list(SPACING))(points)   # (column, row, 0), rounded
    np.testing.assert_array_equal(np.round(ours).astype(int), reference[:, 1::-1])


def test_the_normal_is_row_cross_column_as_highdicom_has_it():
    np.testing.assert_allclose(normal(ORIENTATION), get_normal_vector(ORIENTATION), atol=1e-12)
    assert position_along_normal_mm(POSITION, ORIENTATION) == pytest.approx(float(POSITION @ normal(ORIENTATION)))


def test_one_rule_for_the_same_slice_including_grouping():
    """10.4 and 10.6 mm are one slice (rounding to the millimetre used to split them); 12 mm is another."""
    assert same_slice(10.4, 10.6) and same_slice(10.0, 11.0) and not same_slice(10.0, 11.01)
    groups = group_by_slice([10.6, 12.0, 10.4, -3.0], lambda p: p)
    assert groups == [[-3.0], [10.4, 10.6], [12.0]]


@pytest.mark.parametrize("text, date, expected", [
    ("20260314101530", None, datetime(2026, 3, 14, 10, 15, 30)),
    ("20260314101530.25", None, datetime(2026, 3, 14, 10, 15, 30, 250000)),
    ("20260314101530+0100", None, datetime(2026, 3, 14, 10, 15, 30)),        # offset suffix (PS3.5 DT)
    ("20260314101530.5-0500", None, datetime(2026, 3, 14, 10, 15, 30, 500000)),
    ("101530", "20260314", datetime(2026, 3, 14, 10, 15, 30)),               # TM on the study date
    ("1015", "20260314", datetime(2026, 3, 14, 10, 15)),                     # TM may stop after minutes
    ("101530.123", "20260314", datetime(2026, 3, 14, 10, 15, 30, 123000)),
    ("half past ten", "20260314", None),
    ("", None, None),
])
def test_dicom_date_time(text, date, expected):
    assert parse_datetime(text, date) == expected


def _short_axis_orientation():
    """A standard short-axis view (viewed from the apex, anterior up) of an LV whose axis runs base to apex
    towards left, anterior and inferior: returns (row cosines, column cosines) and the septal direction."""
    u = np.array([0.61, -0.51, -0.61])
    u /= np.linalg.norm(u)
    anterior = np.array([0.0, -1.0, 0.0]) - np.dot([0.0, -1.0, 0.0], u) * u
    anterior /= np.linalg.norm(anterior)
    right_on_screen = np.cross(anterior, u)       # screen (right, up, towards the viewer) = (R, anterior, u)
    return right_on_screen, -anterior, np.cross(u, anterior)


def test_the_standard_short_axis_view_runs_from_anterior_to_septum_counter_clockwise():
    from analysis.geometry import anterior_to_septum, base_to_apex_sign
    row, column, septum = _short_axis_orientation()
    assert np.dot(septum, [-1.0, 0.0, 0.0]) > 0          # the septum faces the patient's right, towards the RV
    assert np.dot(septum, -row) > 0.99                   # and lies on the viewer's left
    assert anterior_to_septum(np.concatenate([row, column])) == 1
    assert base_to_apex_sign(np.concatenate([row, column])) == -1   # the normal points from apex to base
    assert anterior_to_septum(np.concatenate([-row, column])) == -1  # stored mirrored
    assert base_to_apex_sign([1, 0, 0, 0, 1, 0]) == -1   # axial slices: higher z is nearer the base


def test_same_plane_holds_for_a_transposed_image_away_from_the_origin():
    """A transposed image (rows and columns swapped) has the reversed normal: its position along its own normal
    is the negative of the other's, yet it is the same plane. Positions are compared along one normal."""
    from analysis.geometry import same_plane
    axial, transposed = np.array([1.0, 0, 0, 0, 1, 0]), np.array([0.0, 1, 0, 1, 0, 0])
    assert same_plane(axial, np.array([-120.0, -120.0, 30.0]), transposed, np.array([-119.0, -119.0, 30.4]))
    assert not same_plane(axial, np.array([-120.0, -120.0, 30.0]), transposed, np.array([-119.0, -119.0, 32.0]))
    tilted = np.array([1.0, 0, 0, 0, np.cos(0.1), np.sin(0.1)])     # 6 degrees: another plane
    assert not same_plane(axial, np.array([0.0, 0, 30.0]), tilted, np.array([0.0, 0, 30.0]))
