"""Binary DICOM Segmentations (highdicom) with coded segments."""
from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

from dicom_out.descriptions import description_with_suffix
from dicom_out.parametric_map import MANUFACTURER, MODEL_NAME
from dicom_out.sources import source_arguments


@dataclass(frozen=True)
class Segment:
    label: str                    # <= 64 characters
    category: CodedConcept        # CID 7150, e.g. SCT 91723000 Anatomical Structure
    property_type: CodedConcept   # e.g. SCT 90219004 Coronary sinus
    manual: bool = False          # drawn by a person (MANUAL) or by cmr-node (AUTOMATIC)


def build_segmentation(masks: np.ndarray, source_images: list, segments: list[Segment], *,
                       series_uid: str, sop_uid: str, series_number: int, series_description: str,
                       software_version: str) -> hd.seg.Segmentation:
    """masks: (frames, rows, cols, segments) bool, frame i on source_images[i] (a Dataset or a source plane)."""
    sources, geometry = source_arguments(source_images)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n + 1, segment_label=s.label, segmented_property_category=s.category,
            segmented_property_type=s.property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL if s.manual
            else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            # cmr-node's own segmentations are thresholds and morphology (CID 7162, DCM 123104)
            algorithm_identification=None if s.manual else hd.AlgorithmIdentificationSequence(
                name="cmr-node", version=software_version, family=codes.DCM.MorphologicalOperations))
        for n, s in enumerate(segments)]
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=np.asarray(masks, dtype=bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=series_uid, series_number=series_number, sop_instance_uid=sop_uid, instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME, software_versions=software_version,
        device_serial_number="0", content_creator_name="cmr-node^", series_description=description_with_suffix(series_description, "", sources[0]),
        omit_empty_frames=False, **geometry)
