"""Short-axis slices whose LV wall is hard to find (issue 16): a thin wall, a neighbour with the myocardium's
native T1 touching the epicardium, epicardial fat, an infarct. Render them with
t1_ecv.ecv_phantom(..., noise_fraction=0.05, supersample=4) for partial volume at every border, and
psf_fwhm_mm for the blur of a map acquired at lower resolution than it is shown at."""
from __future__ import annotations

from dataclasses import replace

from analysis.phantoms.short_axis import SliceGeometry

NO_INFARCT = SliceGeometry(infarct_width_deg=0.0, mvo_width_deg=0.0)
THIN = replace(NO_INFARCT, pixel_mm=1.6, lv_endo_radius_mm=20.0, lv_epi_radius_mm=25.5, epicardial_fat_mm=3.0)  # 5.5 mm

HARD_WALLS = {
    "thin wall": THIN,
    "similar-T1 neighbour, no fat": replace(NO_INFARCT, neighbour_width_deg=120.0),
    # thinner than half the wall: the wall-thickness prior alone would keep it
    "thin similar-T1 neighbour": replace(NO_INFARCT, neighbour_width_deg=120.0, neighbour_mm=4.0),
    "thin wall and neighbour": replace(THIN, neighbour_width_deg=120.0),
    "thin wall, neighbour and infarct": replace(THIN, neighbour_width_deg=100.0, neighbour_center_deg=-30.0,
                                                infarct_width_deg=SliceGeometry.infarct_width_deg,
                                                mvo_width_deg=SliceGeometry.mvo_width_deg),
}
