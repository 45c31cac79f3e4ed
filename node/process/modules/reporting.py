"""What every module does with its regions: a SEG of the automatic ones and a TID 1500 report.

The regions a module measured in are sent as a DICOM SEG (so a reader sees
exactly which voxels a number came from), and the numbers as a Measurement
Report whose groups reference those segments. results.json gets the same
groups under "measurements".
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from pydicom.dataset import Dataset

import node
from analysis.myocardium import Myocardium, MyocardiumNotFound, find_lv_myocardium
from dicom_out import codes
from dicom_out.descriptions import description_with_suffix
from dicom_out.report import RegionGroup, build_measurement_report, median
from dicom_out.segmentation import Segment, build_segmentation
from dicom_out.uids import derived_uid
from node.process.modules import MODULES, ModuleInput, ModuleOutput
from node.process.modules.output_series import OUTPUT_SERIES, OutputSeries

LV_MYOCARDIUM_SEGMENT = Segment("LV myocardium", codes.ANATOMICAL_STRUCTURE, codes.LV_MYOCARDIUM)
LV_BLOOD_SEGMENT = Segment("LV blood pool", codes.TISSUE, codes.BLOOD)
INFARCT_SEGMENT = Segment("Infarct", codes.ABNORMAL_STRUCTURE, codes.MYOCARDIAL_INFARCTION)
MVO_SEGMENT = Segment("Microvascular obstruction", codes.ABNORMAL_STRUCTURE, codes.MVO)
# no SNOMED concept for myocardium away from an infarct: the LV myocardium's, told apart by its label
REMOTE_SEGMENT = Segment("Remote myocardium", codes.ANATOMICAL_STRUCTURE, codes.LV_MYOCARDIUM)


@dataclass
class LvRegions:
    """Per slice: myocardium (None where it was not found) and the LV blood pool used."""
    myocardium: list[Myocardium | None]
    blood_pool: list[np.ndarray]
    flags: list[str]

    def masks(self) -> np.ndarray:
        """(slices, rows, cols, 2) bool: segment 1 LV myocardium, segment 2 LV blood pool."""
        return np.stack([np.stack([m.mask if m is not None else np.zeros_like(b), b], axis=-1)
                         for m, b in zip(self.myocardium, self.blood_pool)])


def lv_regions(native_t1_ms: list[np.ndarray], blood_pools: list[np.ndarray], pixel_mm: list[float],
               positions_mm: list[float], post_t1_ms: list[np.ndarray]) -> LvRegions:
    """The LV myocardium of each slice from its native T1 map (ms) and LV blood pool, with a post-contrast T1 map
    (ms) of the same slice on the same grid: its contrast holds the epicardial border."""
    found, flags = [], []
    for t1, pool, spacing, position, post in zip(native_t1_ms, blood_pools, pixel_mm, positions_mm, post_t1_ms):
        try:
            found.append(find_lv_myocardium(t1, pool, spacing, t1_post_ms=post))
        except MyocardiumNotFound as exc:
            found.append(None)
            flags.append(f"LV myocardium not found on the slice at {position:.1f} mm: {exc}")
    return LvRegions(myocardium=found, blood_pool=list(blood_pools), flags=flags)


LV_SEGMENTS = (LV_MYOCARDIUM_SEGMENT, LV_BLOOD_SEGMENT)    # segments 1 and 2 of lv_segmentation
MORE_SEGMENTS_FROM = len(LV_SEGMENTS) + 1


def lv_segmentation(regions: LvRegions, sources: list, inp: ModuleInput, name: str, series: OutputSeries,
                    index: int = 0, more: tuple[tuple[Segment, np.ndarray], ...] = (), manual: bool = False):
    """The SEG of the LV myocardium (segment 1; manual: as a person drew it) and blood pool (2), and of more
    (segment, (slices, rows, cols) mask) from segment MORE_SEGMENTS_FROM on, in their order."""
    masks = regions.masks()
    if more:
        masks = np.concatenate([masks, np.stack([mask for _, mask in more], axis=-1)], axis=-1)
    myocardium = replace(LV_MYOCARDIUM_SEGMENT, manual=manual)
    return build_segmentation(
        masks, sources, [myocardium, LV_BLOOD_SEGMENT, *(segment for segment, _ in more)],
        series_uid=derived_uid(inp.job_key, name, "seg-series"), sop_uid=derived_uid(inp.job_key, name, "seg"),
        series_number=series.number(index), series_description=series.describe(), software_version=node.__version__)


FIELD_OF_VIEW_REGION = "Whole field of view, every fitted voxel (not a tissue region)"


def fitted_voxels_group(values: np.ndarray, residuals: np.ndarray, failed: np.ndarray, value_pm, residual_pm,
                        quantity, residual_quantity) -> RegionGroup:
    """Whole-image summary of a relaxometry fit: median value and median relative residual of every fitted
    voxel, air and chest wall included. Labelled as an image region, so that no registry reads it as
    myocardium."""
    ok = ~failed
    return RegionGroup(
        FIELD_OF_VIEW_REGION, codes.IMAGE_REGION, images=[value_pm],
        measures=[median(quantity.quantity, quantity.unit, values[ok], decimals=1, source=value_pm),
                  median(residual_quantity.quantity, residual_quantity.unit, residuals[ok], source=residual_pm)]
        if ok.any() else [])


def voxel_ml(frame) -> float:
    """Volume of one voxel (mL) of a frame (node/scanner/frames.Frame): pixel spacing and slice thickness (mm);
    0 when the thickness is unknown."""
    rows, cols = frame.pixel_mm
    return rows * cols * frame.slice_thickness_mm / 1000.0


def add_report(output: ModuleOutput, inp: ModuleInput, module: str, groups: list[RegionGroup],
               source_images: list[Dataset], description: str, evidence: list[Dataset] = ()) -> None:
    """Append the module's TID 1500 report to output, and its groups to results.json.

    evidence: objects the groups reference that the module did not make (a received SEG)."""
    sr = build_measurement_report(
        groups, source_images=source_images, derived=list(output.datasets) + list(evidence), algorithm_name=f"cmr-node {module}",
        algorithm_version=MODULES[module].version, series_uid=derived_uid(inp.job_key, module, "sr-series"),
        sop_uid=derived_uid(inp.job_key, module, "sr"), series_number=OUTPUT_SERIES[f"{module}.report"].number(),
        series_description=description_with_suffix(description, OUTPUT_SERIES[f"{module}.report"].describe(),
                                                   source_images[0] if source_images else None),
        software_version=node.__version__)
    output.datasets.append(sr)
    output.reingest.append(str(sr.SOPInstanceUID))   # the study summary reads it back, like anyone's report
    output.results["measurements"] = [g.as_dict() for g in groups]
    output.results["report_sop_instance_uid"] = str(sr.SOPInstanceUID)
