"""Short-axis slices whose LV wall is hard to find (issue 16): a thin wall, a neighbour with the myocardium's
native T1 touching the epicardium, epicardial fat, an infarct. Render them with
t1_ecv.ecv_phantom(..., noise_fraction=0.05, supersample=4) for partial volume at every border, and
psf_fwhm_mm for the blur of a map acquired at lower resolution than it is shown at."""
from __future__ import annotations

from analysis.phantoms.short_axis import SliceGeometry

THIN = dict(pixel_mm=1.6, lv_endo_radius_mm=20.0, lv_epi_radius_mm=25.5, epicardial_fat_mm=3.0)   # 5.5 mm wall
NO_INFARCT = dict(infarct_width_deg=0.0, mvo_width_deg=0.0)

HARD_WALLS = {
    "thin wall": SliceGeometry(**THIN, **NO_INFARCT),
    "similar-T1 neighbour, no fat": SliceGeometry(neighbour_width_deg=120.0, **NO_INFARCT),
    # thinner than half the wall: the wall-thickness prior alone would keep it
    "thin similar-T1 neighbour": SliceGeometry(neighbour_width_deg=120.0, neighbour_mm=4.0, **NO_INFARCT),
    "thin wall and neighbour": SliceGeometry(**THIN, neighbour_width_deg=120.0, **NO_INFARCT),
    "thin wall, neighbour and infarct": SliceGeometry(**THIN, neighbour_width_deg=100.0, neighbour_center_deg=-30.0),
}
