"""AHA segments 1-16 of short-axis slices (Cerqueira et al., Circulation 2002;105:539).

The LV is cut into basal, mid and apical thirds along its long axis; basal and mid slices have six 60-degree
segments (anterior, anteroseptal, inferoseptal, inferior, inferolateral, anterolateral), apical slices four
90-degree ones (anterior, septal, inferior, lateral). The septum is where the RV attaches: the arc of the LV
wall that RV blood lies against, between the two RV insertion points. As in ukbb_cardiac (Bai et al., JCMR
2018;20:65), segments keep their nominal widths about the mid-septum, the bisector of that arc.

Angles are those of analysis.myocardium (counter-clockwise on the image from +column). Which way round
the segments run depends on how the image is stored, so the caller says it: `anterior_to_septum` is +1 when
angles increase from the anterior wall towards the septum (the standard view from the apex), -1 when the
image is mirrored.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from analysis.blood_pool import otsu_threshold
from analysis.errors import AnalysisError
from analysis.myocardium import Myocardium

LEVELS = ("basal", "mid", "apical")
SEGMENT_NAMES = {
    1: "basal anterior", 2: "basal anteroseptal", 3: "basal inferoseptal", 4: "basal inferior",
    5: "basal inferolateral", 6: "basal anterolateral", 7: "mid anterior", 8: "mid anteroseptal",
    9: "mid inferoseptal", 10: "mid inferior", 11: "mid inferolateral", 12: "mid anterolateral",
    13: "apical anterior", 14: "apical septal", 15: "apical inferior", 16: "apical lateral"}
RV_REACH_MM = 10.0        # RV blood this close to the LV wall marks the septum
MIN_SEPTAL_ARC_DEG = 40.0


class SeptumNotFound(AnalysisError):
    pass


def slice_levels(count: int) -> list[str]:
    """Level of each of count slices ordered base to apex: equal thirds by rank (ukbb_cardiac); a lone slice
    is taken as mid-ventricular, the slice a single-slice T1 protocol acquires (Messroghli et al., JCMR
    2017;19:75)."""
    if count == 1:
        return ["mid"]
    return [LEVELS[min(2, int(3 * i / count))] for i in range(count)]


@dataclass
class Septum:
    mid_deg: float          # angle of the mid-septum (bisector of the RV insertion points)
    insertion_deg: tuple[float, float]   # the two insertion points, ends of the septal arc
    arc_deg: float


def find_septum(myocardium: Myocardium, bright_blood: np.ndarray | None, pixel_mm: float,
                rv_blood: np.ndarray | None = None) -> Septum:
    """The septal arc: angles at which RV blood lies within RV_REACH_MM of the LV wall. The RV blood is
    rv_blood where it is given (bool, e.g. a received segmentation; a drawn outline counts with what it
    encloses), else found as what is bright on bright_blood (e.g. the relative R1 change) outside the LV."""
    near_wall = ndimage.distance_transform_edt(~myocardium.mask) * pixel_mm <= RV_REACH_MM
    if rv_blood is not None:
        rv = ndimage.binary_fill_holes(rv_blood) & ~myocardium.mask & ~myocardium.cavity
        if (rv & near_wall).sum() * pixel_mm ** 2 < 20.0:
            raise SeptumNotFound("the RV segmentation does not reach the LV wall")
    elif bright_blood is None:
        raise SeptumNotFound("neither an RV segmentation nor an image with bright blood")
    else:
        rv = _rv_blood(myocardium, bright_blood, near_wall, pixel_mm)
    covered = np.zeros(360, dtype=bool)
    covered[np.floor(myocardium.angle_deg[rv & near_wall]).astype(int) % 360] = True
    covered = ndimage.binary_closing(np.concatenate([covered] * 3), iterations=5)[360:720]   # close 10-degree gaps
    return _longest_arc(covered)


def _rv_blood(myocardium: Myocardium, bright_blood: np.ndarray, near_wall: np.ndarray, pixel_mm: float) -> np.ndarray:
    """The bright blood outside the LV that lies most against its wall."""
    valid = np.isfinite(bright_blood)
    values = np.nan_to_num(bright_blood, nan=-np.inf)
    blood = valid & (values > otsu_threshold(bright_blood[valid])) & ~myocardium.mask & \
        ~ndimage.binary_dilation(myocardium.cavity, iterations=2)
    labels, count = ndimage.label(blood)
    if count == 0:
        raise SeptumNotFound("no blood outside the LV")
    touching = np.bincount(labels[near_wall & blood], minlength=count + 1)
    touching[0] = 0
    if touching.max() * pixel_mm ** 2 < 20.0:
        raise SeptumNotFound("no RV blood against the LV wall")
    return labels == int(np.argmax(touching))


def _longest_arc(covered: np.ndarray) -> Septum:
    if covered.all() or not covered.any():
        raise SeptumNotFound("RV blood all round the LV or nowhere near it")
    start = int(np.argmin(covered))            # begin on an uncovered degree, so no run wraps
    rolled = np.roll(covered, -start)
    runs, run_start = [], None
    for i, on in enumerate(np.append(rolled, False)):
        if on and run_start is None:
            run_start = i
        elif not on and run_start is not None:
            runs.append((run_start, i))
            run_start = None
    first, end = max(runs, key=lambda r: r[1] - r[0])
    arc = float(end - first)
    if arc < MIN_SEPTAL_ARC_DEG:
        raise SeptumNotFound(f"the RV touches the LV over {arc:.0f} degrees only")
    low, high = (first + start) % 360, (end + start) % 360
    return Septum(mid_deg=(low + arc / 2.0) % 360, insertion_deg=(float(low), float(high)), arc_deg=arc)


def segment_labels(myocardium: Myocardium, septum: Septum, level: str, anterior_to_septum: int) -> np.ndarray:
    """AHA segment number (1-16) of every myocardial pixel of one slice, 0 elsewhere (uint8)."""
    # phi: 0 at the mid-septum, negative towards the anterior wall, in (-180, 180]
    phi = (anterior_to_septum * (myocardium.angle_deg - septum.mid_deg) + 180.0) % 360.0 - 180.0
    if level == "apical":
        # septal [-45, 45), inferior [45, 135), lateral [135, 225), anterior [-135, -45)
        sector = np.floor((phi + 45.0) % 360.0 / 90.0).astype(int)          # 0 septal, 1 inferior, 2 lateral, 3 anterior
        numbers = np.array([14, 15, 16, 13])[sector]
    else:
        # anteroseptal [-60, 0), inferoseptal [0, 60), inferior, inferolateral, anterolateral, anterior [-120, -60)
        sector = np.floor((phi + 60.0) % 360.0 / 60.0).astype(int)          # 0 anteroseptal .. 5 anterior
        first = 1 if level == "basal" else 7
        numbers = first + np.array([1, 2, 3, 4, 5, 0])[sector]
    return np.where(myocardium.mask, numbers, 0).astype(np.uint8)
