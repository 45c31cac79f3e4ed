"""Regions of interest received from elsewhere: DICOM SEG segments and RT Structure Set contours, as masks.

An RT Structure Set contour (patient coordinates, mm) is rasterised on the
image it references: pixel centres inside the closed polygon (even-odd rule).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from analysis.geometry import patient_mm_to_pixels
from node.inputs.kinds import sop_classes

log = logging.getLogger("cmr_node.inputs")
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


@dataclass
class RoiSource:
    """Where a region came from: a SEG and its segment number (None for an RT Structure Set), and who drew it."""
    dataset: Dataset
    segment_number: int | None
    manual: bool


def segmentations_apart(paths: list[str]) -> tuple[list[str], list[str]]:
    """(the DICOM SEG files, the others) among a module's inputs, by SOP class."""
    classes = sop_classes(paths)
    return [p for p in paths if classes[p] == SEG_SOP_CLASS], [p for p in paths if classes[p] != SEG_SOP_CLASS]


def roi_key(image) -> str:
    """How masks are keyed: the SOP Instance UID of a single-frame image (a Dataset or a single-frame
    node.inputs.frames.Frame), "UID/frame number" for a frame of an enhanced multi-frame image."""
    if isinstance(image, Dataset):
        return str(image.SOPInstanceUID)
    return image.sop_instance_uid if image.number is None else f"{image.sop_instance_uid}/{image.number}"


def _shape(image) -> tuple[int, int]:
    header = image if isinstance(image, Dataset) else image.header
    return int(header.Rows), int(header.Columns)


def seg_masks(path: str, property_code: str, label_pattern: str,
              images: list) -> tuple[dict[str, np.ndarray], RoiSource | None]:
    """Masks by roi_key of the images (Datasets, or node.inputs.frames.Frame for frames of multi-frame images),
    for segments of the coded type or matching label. A SEG highdicom cannot read per image (spatial locations
    not preserved, another matrix) or a mask whose matrix is not the image's gives nothing for that image: the
    module then uses its own region, and the SEG is named in the log."""
    try:
        seg = hd.seg.segread(path)
        numbers = [n for n in seg.get_segment_numbers()
                   if (d := seg.get_segment_description(n)).segmented_property_type.value == property_code
                   or re.search(label_pattern, d.segment_label)]
    except (ValueError, AttributeError, KeyError) as exc:
        log.warning("SEG %s not read: %s", path, exc)
        return {}, None
    if not numbers:
        return {}, None
    manual = seg.get_segment_description(numbers[0]).algorithm_type == hd.seg.SegmentAlgorithmTypeValues.MANUAL
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    masks = {}
    for image in images:
        uid = str(image.SOPInstanceUID) if isinstance(image, Dataset) else image.sop_instance_uid
        if uid not in referenced:
            continue
        try:
            if isinstance(image, Dataset) or image.number is None:
                pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=[uid], segment_numbers=numbers,
                                                           combine_segments=True)
            else:
                pixels = seg.get_pixels_by_source_frame(source_sop_instance_uid=uid,
                                                        source_frame_numbers=[image.number],
                                                        segment_numbers=numbers, combine_segments=True)
        except (RuntimeError, ValueError, KeyError) as exc:
            log.warning("SEG %s: no mask for image %s: %s", seg.SOPInstanceUID, roi_key(image), exc)
            continue
        mask = np.asarray(pixels[0]).astype(bool).squeeze()
        if not mask.any():       # referenced, nothing drawn on it: the module's own region there
            continue
        if mask.shape != _shape(image):
            log.warning("SEG %s: mask %s on an image of %s: not used", seg.SOPInstanceUID, mask.shape, _shape(image))
            continue
        masks[roi_key(image)] = mask
    return masks, RoiSource(seg, numbers[0], manual) if masks else None


def received_masks(seg_files: list[str], property_code: str, label_pattern: str,
                   images: list) -> tuple[dict[str, np.ndarray], RoiSource | None]:
    """seg_masks of the first SEG among seg_files that has such a segment on any of the images."""
    for path in seg_files:
        found, source = seg_masks(path, property_code, label_pattern, images)
        if found:
            return found, source
    return {}, None


def _polygon_mask(rows: int, cols: int, poly_rc: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)
    inside = np.zeros((rows, cols), dtype=bool)
    y, x = poly_rc[:, 0], poly_rc[:, 1]
    for i in range(len(poly_rc)):
        j = i - 1
        crosses = (y[i] > yy) != (y[j] > yy)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = (x[j] - x[i]) * (yy - y[i]) / (y[j] - y[i]) + x[i]
        inside ^= crosses & (xx < x_cross)
    return inside


def _to_pixels(points_mm: np.ndarray, image: Dataset) -> np.ndarray:
    """(row, col) of patient-coordinate points on the image plane."""
    return patient_mm_to_pixels(points_mm, image.ImagePositionPatient, image.ImageOrientationPatient,
                                image.PixelSpacing)


def rtstruct_masks(path: str, name_pattern: str,
                   images: list[Dataset]) -> tuple[dict[str, np.ndarray], RoiSource | None]:
    """Masks by referenced image SOP Instance UID, for ROIs whose name matches name_pattern."""
    ds = pydicom.dcmread(path)
    rois = [r for r in ds.get("StructureSetROISequence", []) if re.search(name_pattern, str(r.get("ROIName", "")))]
    wanted = {int(r.ROINumber) for r in rois}
    # ROI Generation Algorithm (3006,0036): MANUAL, SEMIAUTOMATIC or AUTOMATIC
    manual = bool(rois) and str(rois[0].get("ROIGenerationAlgorithm", "")).upper() == "MANUAL"
    by_uid = {str(i.SOPInstanceUID): i for i in images}
    masks: dict[str, np.ndarray] = {}
    for roi in ds.get("ROIContourSequence", []):
        if int(roi.ReferencedROINumber) not in wanted:
            continue
        for contour in roi.get("ContourSequence", []):
            refs = [str(r.ReferencedSOPInstanceUID) for r in contour.get("ContourImageSequence", [])]
            image = next((by_uid[u] for u in refs if u in by_uid), None)
            if image is None or contour.get("ContourGeometricType") != "CLOSED_PLANAR":
                continue
            points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            mask = _polygon_mask(int(image.Rows), int(image.Columns), _to_pixels(points, image))
            uid = str(image.SOPInstanceUID)
            masks[uid] = masks.get(uid, np.zeros_like(mask)) | mask
    return masks, (RoiSource(ds, None, manual) if masks else None)
