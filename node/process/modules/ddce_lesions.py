"""Remote myocardium, infarct and microvascular obstruction (MVO) for the dDCE regional intervals.

The regions are those the LGE module finds (analysis/lge.py): the synthetic LGE at the LGE target time
(`lge_target_minutes`) from the fit of the LGE fit window (`lge_fit_window_minutes`, else the shortest
window fitted), segmented by `lge_infarct_method` within the LV myocardium. Infarct excludes MVO. Remote
myocardium is the LV myocardium at least REMOTE_MARGIN_VOXELS from infarct and MVO: the border zone and
the partial-volume edge of the lesion belong to neither.

Each region is then its core: less its one-voxel edge, where the core keeps MIN_REGION_VOXELS on the slice
(else the whole region, and results.json says so). An edge voxel mixes tissues (partial volume, and the
interpolation that registration does), and a mixture of two exchange rates is no 2CXM curve yet fits one,
with an interval that is narrow and wrong: measured on the dDCE phantom with registration, the whole
infarct's 30-minute PS came out identified at 0.36-3.5 /min (truth 5.3, never identified on the phantom
without registration), its core's open above 0.44 as it should be. A region is fitted on a slice where it
has at least MIN_REGION_VOXELS fitted voxels (fewer give a standard error from a handful of voxels).
Without an infarct there are no such regions: remote myocardium would be the LV myocardium itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from analysis.ddce import DdceResult
from analysis.errors import AnalysisError
from analysis.lge import lge_slices, synthetic_t1
from dicom_out.segmentation import Segment
from node.process.modules.reporting import INFARCT_SEGMENT, MVO_SEGMENT, REMOTE_SEGMENT, LvRegions
from node.settings import ModuleSettings

REMOTE_MARGIN_VOXELS = 2
MIN_REGION_VOXELS = 10


# Each region's segment in the dDCE SEG, whose label, category and type its report group takes too. They are
# the voxels fitted (cores, remote without the border zone), not the infarct the LGE module measures: the label
# says so, and the report gives them no volume.
LESION_SEGMENTS = {name: Segment(f"{segment.label} (fitted voxels)", segment.category, segment.property_type)
                   for name, segment in (("remote", REMOTE_SEGMENT), ("infarct", INFARCT_SEGMENT),
                                         ("mvo", MVO_SEGMENT))}


@dataclass(frozen=True)
class Lesions:
    """name (LESION_SEGMENTS) -> (slices, rows, cols) bool, the voxels fitted; per name and slice whether that
    is the region's core (its edge left out); empty, with the reason, where there are none."""
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    cores: dict[str, list[bool]] = field(default_factory=dict)
    window_min: float | None = None
    reason: str | None = None

    def as_dict(self) -> dict:
        if not self.masks:
            return {"found": False, "reason": self.reason}
        return {"found": True, "from_window_min": self.window_min, "remote_margin_voxels": REMOTE_MARGIN_VOXELS,
                "min_region_voxels": MIN_REGION_VOXELS,
                "voxels": {name: int(mask.sum()) for name, mask in self.masks.items()},
                "edge_voxels_included": {name: [i for i, core in enumerate(cores) if not core]
                                         for name, cores in self.cores.items()}}


def _core(mask: np.ndarray) -> tuple[np.ndarray, bool]:
    """A slice's region less its one-voxel edge, where that keeps MIN_REGION_VOXELS; else the region (and
    False, unless there is no region on the slice)."""
    core = ndimage.binary_erosion(mask)
    return (core, True) if core.sum() >= MIN_REGION_VOXELS or not mask.any() else (mask, False)


def lesion_window(windows: list[float], settings: ModuleSettings) -> int | None:
    """Index of the window the regions come from: the LGE fit window where it was fitted, else the shortest."""
    if not windows:
        return None
    matching = [i for i, w in enumerate(windows) if abs(w - settings.lge_fit_window_minutes) < 1e-6]
    return matching[0] if matching else int(np.argmin(windows))


def blood_pool_in_cavity(results: list[DdceResult], cavity: np.ndarray) -> np.ndarray:
    """The fits' blood pools (slices, rows, cols) less what is not a voxel inside the cavity: a fit's pool may
    reach into an enhancing subendocardial infarct; one voxel inside the cavity may not."""
    return np.stack([r.blood_pool for r in results]) & np.stack([ndimage.binary_erosion(c) for c in cavity])


def find_lesions(results: list[DdceResult], window_min: float, native_t1_ms: np.ndarray, regions: LvRegions,
                 r1_per_mM_s: float, settings: ModuleSettings) -> Lesions:
    """The lesion regions of a study from one window's fits (one DdceResult per slice)."""
    if any(m is None for m in regions.myocardium):
        return Lesions(reason="the LV myocardium was not found on every slice")
    myocardium = np.stack([m.mask for m in regions.myocardium if m is not None])
    cavity = np.stack([m.cavity for m in regions.myocardium if m is not None])
    pools = blood_pool_in_cavity(results, cavity)
    try:
        t1 = synthetic_t1(native_t1_ms, results, myocardium, pools, r1_per_mM_s, settings.lge_target_minutes)
        synthetic, _ = lge_slices(t1, myocardium, cavity, settings.lge_infarct_method, settings.lge_n_sd)
    except AnalysisError as exc:
        return Lesions(reason=f"no synthetic LGE to find the infarct on: {exc}")
    infarct = np.stack([s.segmentation.infarct for s in synthetic])
    mvo = np.stack([s.segmentation.mvo for s in synthetic])
    lesion = infarct | mvo
    if not lesion.any():
        return Lesions(reason="no infarct on the synthetic LGE: remote myocardium is the LV myocardium")
    near = np.stack([ndimage.binary_dilation(s, iterations=REMOTE_MARGIN_VOXELS) for s in lesion])
    masks, cores = {}, {}
    for name, region in (("remote", myocardium & ~near), ("infarct", infarct), ("mvo", mvo)):
        per_slice = [_core(s) for s in region]
        masks[name], cores[name] = np.stack([m for m, _ in per_slice]), [core for _, core in per_slice]
    return Lesions(masks, cores, window_min)
