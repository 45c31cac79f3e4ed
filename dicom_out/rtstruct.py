"""A minimal RT Structure Set with closed planar contours, as contouring workstations send ROIs.

Used to give the phantoms an RTSTRUCT ROI (the oximetry module reads
coronary sinus contours from SEG or RTSTRUCT)."""
from __future__ import annotations

from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, RTStructureSetStorage

from analysis.geometry import pixels_to_patient_mm
from dicom_out.parametric_map import MANUFACTURER, MODEL_NAME

RTSTRUCT_SOP_CLASS = RTStructureSetStorage   # 1.2.840.10008.5.1.4.1.1.481.3
_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
           "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")


def _ref(image: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = image.SOPClassUID, image.SOPInstanceUID
    return item


def contour_points_mm(image: Dataset, rows_cols: np.ndarray) -> np.ndarray:
    """Patient coordinates (mm) of (row, col) pixel positions on the image plane."""
    return pixels_to_patient_mm(rows_cols, image.ImagePositionPatient, image.ImageOrientationPatient,
                                image.PixelSpacing)


def build_rtstruct(image: Dataset, roi_name: str, contour_rc: np.ndarray, *, series_uid: str, sop_uid: str,
                   series_number: int, when: datetime) -> Dataset:
    """One ROI with one closed contour, given as (row, col) vertices on image."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = UID(sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 100"
    for keyword in _COPIED:
        setattr(ds, keyword, image.get(keyword, ""))
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "RTSTRUCT", series_uid, series_number
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = image.FrameOfReferenceUID, ""
    ds.SeriesDescription = roi_name
    ds.Manufacturer, ds.ManufacturerModelName = MANUFACTURER, MODEL_NAME
    ds.OperatorsName = ""
    ds.InstanceNumber = 1
    ds.StructureSetLabel = roi_name[:16]
    ds.StructureSetDate, ds.StructureSetTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = image.SeriesInstanceUID
    series_ref.ContourImageSequence = [_ref(image)]
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"   # Detached Study Management (retired, as used)
    study_ref.ReferencedSOPInstanceUID = image.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = [series_ref]
    frame = Dataset()
    frame.FrameOfReferenceUID = image.FrameOfReferenceUID
    frame.RTReferencedStudySequence = [study_ref]
    ds.ReferencedFrameOfReferenceSequence = [frame]
    roi = Dataset()
    roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = 1, image.FrameOfReferenceUID, roi_name
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = [roi]
    contour = Dataset()
    contour.ContourImageSequence = [_ref(image)]
    contour.ContourGeometricType = "CLOSED_PLANAR"
    points = contour_points_mm(image, contour_rc)
    contour.NumberOfContourPoints = len(points)
    contour.ContourData = [round(float(v), 3) for v in points.ravel()]
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber = 1
    roi_contour.ROIDisplayColor = [255, 0, 0]
    roi_contour.ContourSequence = [contour]
    ds.ROIContourSequence = [roi_contour]
    observation = Dataset()
    observation.ObservationNumber, observation.ReferencedROINumber = 1, 1
    observation.RTROIInterpretedType, observation.ROIInterpreter = "ORGAN", ""
    ds.RTROIObservationsSequence = [observation]
    return ds
