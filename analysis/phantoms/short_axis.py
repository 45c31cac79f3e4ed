"""A digital short-axis slice of a heart with a reperfused infarct (canine-sized).

Regions (label values in `Region`): air, other tissue (chest wall / liver),
LV and RV blood pools, remote myocardium, infarct with a given transmural
extent from the endocardium, and a microvascular-obstruction (MVO) core in the
subendocardial part of the infarct. Optional surroundings that make the
epicardial border hard to find: a layer of epicardial fat, and a neighbour
touching the epicardium over an arc with no fat between (skeletal muscle or
spleen: native T1 like myocardium's, less extracellular space). Geometry in
mm; the grid is square; labels are sampled at pixel centres, or at
`supersample`**2 points per pixel by callers that model partial volume.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Region(IntEnum):
    AIR = 0
    OTHER_TISSUE = 1
    LV_BLOOD = 2
    RV_BLOOD = 3
    REMOTE = 4
    INFARCT = 5     # infarct excluding the MVO core
    MVO = 6         # microvascular obstruction, inside the infarct
    FAT = 7         # epicardial fat
    NEIGHBOUR = 8   # tissue touching the epicardium with a native T1 like myocardium's


MYOCARDIUM = (Region.REMOTE, Region.INFARCT, Region.MVO)


@dataclass(frozen=True)
class SliceGeometry:
    matrix: int = 160                    # pixels per side
    pixel_mm: float = 1.5                # in-plane spacing (mm)
    lv_endo_radius_mm: float = 18.0
    lv_epi_radius_mm: float = 27.0
    infarct_center_deg: float = 90.0     # anterior wall (image "up")
    infarct_width_deg: float = 100.0     # angular extent of the infarct
    infarct_transmurality: float = 0.6   # fraction of wall thickness, from the endocardium
    mvo_width_deg: float = 40.0          # angular extent of the MVO core (0 = none)
    mvo_transmurality: float = 0.3       # fraction of wall thickness, from the endocardium
    epicardial_fat_mm: float = 0.0       # fat around the epicardium, except where the neighbour touches it
    neighbour_center_deg: float = 0.0    # lateral wall (image right)
    neighbour_width_deg: float = 0.0     # angular extent of the neighbour's contact (0 = no neighbour)
    neighbour_mm: float = 15.0           # its thickness, from the epicardium outwards


def short_axis_labels(geometry: SliceGeometry = SliceGeometry(), supersample: int = 1) -> np.ndarray:
    """Label image (uint8, values from Region) of one short-axis slice; with supersample k, (n*k, n*k)
    labels at k x k points per pixel (pixel (i, j) covers rows i*k..i*k+k-1)."""
    g = geometry
    n = g.matrix
    k = supersample
    yy, xx = (np.mgrid[0:n * k, 0:n * k].astype(float) + 0.5) / k - 0.5   # pixel coordinates of the points
    cx, cy = n * 0.52, n * 0.50                      # LV centre, slightly right of the image centre
    x_mm, y_mm = (xx - cx) * g.pixel_mm, (cy - yy) * g.pixel_mm   # y up (anterior)
    r = np.hypot(x_mm, y_mm)
    angle = np.degrees(np.arctan2(y_mm, x_mm)) % 360.0

    labels = np.full(xx.shape, Region.AIR, dtype=np.uint8)
    body = ((xx - n / 2) / (n * 0.47)) ** 2 + ((yy - n / 2) / (n * 0.40)) ** 2 <= 1.0
    labels[body] = Region.OTHER_TISSUE

    # RV: a crescent on the patient's right (image left) of the LV.
    rv_centre_x = -g.lv_epi_radius_mm * 0.9
    rv = (np.hypot((x_mm - rv_centre_x) / 1.25, y_mm) <= g.lv_epi_radius_mm * 0.95) & (r > g.lv_epi_radius_mm + 3)
    labels[rv] = Region.RV_BLOOD

    wall = g.lv_epi_radius_mm - g.lv_endo_radius_mm
    depth = (r - g.lv_endo_radius_mm) / wall            # 0 at endocardium, 1 at epicardium
    myocardium = (depth >= 0) & (depth <= 1)

    def in_sector(center_deg: float, width_deg: float) -> np.ndarray:
        delta = (angle - center_deg + 180.0) % 360.0 - 180.0
        return np.abs(delta) <= width_deg / 2.0

    beyond_epicardium = r - g.lv_epi_radius_mm
    neighbour = in_sector(g.neighbour_center_deg, g.neighbour_width_deg) & (beyond_epicardium > 0) & \
        (beyond_epicardium <= g.neighbour_mm) & (g.neighbour_width_deg > 0)
    labels[neighbour & body] = Region.NEIGHBOUR
    # no fat between the septum and the RV blood: that border is the RV's endocardium
    fat = (beyond_epicardium > 0) & (beyond_epicardium <= g.epicardial_fat_mm) & ~neighbour & ~in_sector(180.0, 120.0)
    labels[fat & body] = Region.FAT
    labels[r < g.lv_endo_radius_mm] = Region.LV_BLOOD
    labels[myocardium] = Region.REMOTE

    infarct = myocardium & in_sector(g.infarct_center_deg, g.infarct_width_deg) & (depth <= g.infarct_transmurality)
    labels[infarct] = Region.INFARCT
    if g.mvo_width_deg > 0:
        mvo = infarct & in_sector(g.infarct_center_deg, g.mvo_width_deg) & (depth <= g.mvo_transmurality)
        labels[mvo] = Region.MVO
    return labels


def region_masks(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks by lower-case region name."""
    return {region.name.lower(): labels == region for region in Region}
