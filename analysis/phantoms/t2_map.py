"""A T2 map of the short-axis phantom (ms), on its own grid: what a scanner's inline T2 map of the ECV
phantom's slice shows. Values are typical of T2-prepared bSSFP mapping at 1.5 T (myocardium about 50 ms,
Giri et al., JCMR 2009;11:56; oedema in acute infarction 60-70 ms; blood 200-250 ms). Noise is
multiplicative Gaussian, as for the T1 maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.phantoms.short_axis import Region, SliceGeometry, short_axis_labels

T2_MS = {Region.AIR: 0.0, Region.OTHER_TISSUE: 35.0, Region.LV_BLOOD: 250.0, Region.RV_BLOOD: 220.0,
         Region.REMOTE: 50.0, Region.INFARCT: 65.0, Region.MVO: 45.0, Region.FAT: 60.0, Region.NEIGHBOUR: 40.0}


@dataclass
class T2Phantom:
    labels: np.ndarray       # (rows, cols) Region values on the T2 map's grid
    t2_ms: np.ndarray        # (rows, cols) float, 0 in air
    pixel_mm: float


def t2_map_phantom(geometry: SliceGeometry = SliceGeometry(), noise_fraction: float = 0.03,
                   seed: int = 3) -> T2Phantom:
    """The phantom slice's T2 map with geometry's matrix and pixel size (the T1 maps' geometry in mm)."""
    labels = short_axis_labels(geometry)
    t2 = np.zeros(labels.shape)
    for region, value in T2_MS.items():
        t2[labels == region] = value
    noise = 1.0 + noise_fraction * np.random.default_rng(seed).standard_normal(t2.shape)
    return T2Phantom(labels=labels, t2_ms=t2 * noise, pixel_mm=geometry.pixel_mm)
