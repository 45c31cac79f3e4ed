"""Image planes in patient coordinates, arrays in and out: the one home for slice position and pixel <-> mm.

An image plane is given by Image Position (Patient) (mm, centre of the first pixel), Image Orientation
(Patient) (row direction cosines, then column direction cosines) and Pixel Spacing (row spacing, column
spacing; mm) (DICOM PS3.3 C.7.6.2.1.1). Slices of different series are the same slice when their positions
along the normal differ by no more than POSITION_TOLERANCE_MM; grouping uses the same rule.
"""
from __future__ import annotations

from typing import Callable, Iterable, TypeVar

import numpy as np
from scipy import ndimage

POSITION_TOLERANCE_MM = 1.0   # scanners repeat a planned slice to well under a millimetre

T = TypeVar("T")


def normal(orientation: np.ndarray) -> np.ndarray:
    """Slice normal: row direction × column direction (right-handed, as highdicom's get_normal_vector)."""
    orientation = np.asarray(orientation, dtype=float)
    return np.cross(orientation[:3], orientation[3:])


def position_along_normal_mm(position: np.ndarray, orientation: np.ndarray) -> float:
    """Where the plane lies along its normal (mm); equal for every slice of one plane."""
    return float(np.dot(normal(orientation), np.asarray(position, dtype=float)))


def same_slice(a_mm: float, b_mm: float) -> bool:
    """Two positions along one normal (mm) that are one slice."""
    return abs(a_mm - b_mm) <= POSITION_TOLERANCE_MM


def group_by_slice(items: Iterable[T], position_mm: Callable[[T], float]) -> list[list[T]]:
    """Items grouped into slices, in order of position: a slice holds the items within the tolerance of its
    first (lowest) one."""
    groups: list[list[T]] = []
    for item in sorted(items, key=position_mm):
        if groups and same_slice(position_mm(groups[-1][0]), position_mm(item)):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def pixels_to_patient_mm(rows_cols: np.ndarray, position: np.ndarray, orientation: np.ndarray,
                         spacing: np.ndarray) -> np.ndarray:
    """(n, 3) patient coordinates (mm) of (n, 2) (row, column) pixel positions on the plane."""
    rows_cols = np.asarray(rows_cols, dtype=float)
    o, spacing = np.asarray(orientation, dtype=float), np.asarray(spacing, dtype=float)
    return (np.asarray(position, dtype=float) + np.outer(rows_cols[:, 1] * spacing[1], o[:3])
            + np.outer(rows_cols[:, 0] * spacing[0], o[3:]))


def patient_mm_to_pixels(points_mm: np.ndarray, position: np.ndarray, orientation: np.ndarray,
                         spacing: np.ndarray) -> np.ndarray:
    """(n, 2) (row, column) positions of (n, 3) patient points (mm) projected on the plane."""
    o, spacing = np.asarray(orientation, dtype=float), np.asarray(spacing, dtype=float)
    offset = np.asarray(points_mm, dtype=float) - np.asarray(position, dtype=float)
    return np.column_stack([offset @ o[3:] / spacing[0], offset @ o[:3] / spacing[1]])


def same_plane(orientation_a: np.ndarray, position_a: np.ndarray, orientation_b: np.ndarray,
               position_b: np.ndarray) -> bool:
    """Two images lie in one plane: parallel (normals within about 1 degree, either way round: a transposed
    image's normal is reversed) and one's position within POSITION_TOLERANCE_MM of the other's plane.
    positions: Image Position (Patient), mm."""
    n = normal(orientation_a)
    return bool(abs(float(np.dot(n, normal(orientation_b)))) > 0.9998) and \
        abs(float(np.dot(n, np.asarray(position_b, float) - np.asarray(position_a, float)))) <= POSITION_TOLERANCE_MM


def resample_onto(values: np.ndarray, source: tuple, target: tuple, target_shape: tuple[int, int],
                  order: int = 1) -> np.ndarray:
    """values of one image plane at the pixel centres of another in the same plane (0 outside). source and
    target: (Image Position (Patient), Image Orientation (Patient), Pixel Spacing); order 1 linear (values),
    0 nearest (masks)."""
    rows, cols = np.mgrid[0:target_shape[0], 0:target_shape[1]]
    points = pixels_to_patient_mm(np.column_stack([rows.ravel(), cols.ravel()]), *target)
    where = patient_mm_to_pixels(points, *source).T
    out = ndimage.map_coordinates(np.asarray(values, dtype=float), where, order=order, cval=0.0, mode="constant")
    return out.reshape(target_shape)


# The LV long axis runs from base to apex towards the patient's left, anterior and inferior: +x, -y, -z in
# DICOM's LPS patient coordinates (PS3.3 C.7.6.2.1.1).
LV_BASE_TO_APEX_LPS = np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)


def base_to_apex_sign(orientation: np.ndarray) -> float:
    """+1 when positions along the slice normal increase from base to apex, -1 when they decrease."""
    return 1.0 if float(np.dot(normal(orientation), LV_BASE_TO_APEX_LPS)) > 0 else -1.0


def anterior_to_septum(orientation: np.ndarray) -> int:
    """+1 when image angles (counter-clockwise on the displayed image) increase from the LV's anterior wall
    towards the septum, -1 when the image is stored the other way round. Anterior to septum is a right-handed
    turn about the base-to-apex axis (counter-clockwise seen from the apex); counter-clockwise on the display
    is a right-handed turn about minus the normal (row x column), so the two agree when the normal points
    from apex to base, as in the standard short-axis view."""
    return 1 if base_to_apex_sign(orientation) < 0 else -1
