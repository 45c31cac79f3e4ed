"""Derived MR images that look like a scanner's inline maps (MR Image Storage, uint16 with units in ms).

Every PACS viewer shows these, and cmr-node's own ECV and dDCE modules read them exactly like a scanner's
T1 map. They stand on their own: patient, study, frame of reference, contrast and the acquisition's
sequence description come from the source by a list of attributes; geometry from the source plane;
everything else (Image Type DERIVED\\PRIMARY\\<kind>, Rescale, window, Source Image Sequence, Derivation
Description) is set here. Nothing else is copied: no private elements (a vendor's private scale slope
would make readers such as dcm2niix rescale our ms), no Real World Value Mapping of the source, no
inversion or trigger time of one source image, no laterality.

A source plane is anything with `header` (the source instance's Dataset), `number` (frame number in a
multi-frame source, None for single-frame), `position`, `orientation` (mm, direction cosines),
`position_mm` (along the slice normal), `pixel_mm`, `slice_thickness_mm` and `field_strength_t` (tesla,
None when unknown; older GE software writes gauss): node/scanner/frames.Frame is one.
"""
from __future__ import annotations

import datetime

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage, PYDICOM_IMPLEMENTATION_UID

from dicom_out.parametric_map import MANUFACTURER, MODEL_NAME
from dicom_out.sources import PATIENT_STUDY_TYPE2
from dicom_out.uids import derived_uid

# Copied only when the source has them (Type 3, or the Contrast/Bolus module of a post-contrast acquisition).
COPIED_WHEN_PRESENT = ("SpecificCharacterSet", "IssuerOfPatientID", "PatientAge", "PatientSize", "PatientWeight",
                       "StudyDescription", "BodyPartExamined", "AcquisitionDate", "AcquisitionTime",
                       "AcquisitionDateTime", "ContrastBolusAgent", "ContrastBolusAgentSequence",
                       "ContrastBolusRoute", "ContrastBolusVolume", "ContrastBolusStartTime",
                       "ContrastBolusTotalDose", "ContrastBolusIngredient", "ContrastBolusIngredientConcentration",
                       "SequenceName", "ImagedNucleus", "ImagingFrequency", "FlipAngle")
# MR Image module: (keyword, Type, value when the source has none); Type 1 needs a value.
MR_SEQUENCE = (("ScanningSequence", 1, "RM"), ("SequenceVariant", 1, "NONE"), ("ScanOptions", 2, None),
               ("MRAcquisitionType", 2, None), ("RepetitionTime", 2, None), ("EchoTime", 2, None),
               ("EchoTrainLength", 2, None))


def _reference(plane) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = plane.header.SOPClassUID
    item.ReferencedSOPInstanceUID = plane.header.SOPInstanceUID
    if plane.number is not None:
        item.ReferencedFrameNumber = plane.number
    return item


def _copy_identity(ds: Dataset, source: Dataset) -> None:
    for keyword in PATIENT_STUDY_TYPE2:
        setattr(ds, keyword, source.get(keyword, "") or "")
    for keyword in COPIED_WHEN_PRESENT:
        if source.get(keyword) not in (None, ""):
            setattr(ds, keyword, source[keyword].value)
    ds.StudyInstanceUID = source.StudyInstanceUID
    # Type 1; an export that lost it still gives the maps of one study one frame of reference
    ds.FrameOfReferenceUID = source.get("FrameOfReferenceUID") or derived_uid(str(source.StudyInstanceUID),
                                                                              "frame of reference")
    ds.PositionReferenceIndicator = source.get("PositionReferenceIndicator", "") or ""
    ds.PatientPosition = source.get("PatientPosition", "") or ""   # Type 2C: required for MR
    for keyword, kind, default in MR_SEQUENCE:
        value = source.get(keyword)
        if value in (None, "") and kind == 1:
            value = default
        setattr(ds, keyword, value if value not in (None, "") else None)
    # Type 2C: present but empty, as a map has no single inversion time (required with IR) nor trigger time
    # (required with cardiac or peripheral pulse gating)
    if "IR" in _values(ds.ScanningSequence):
        ds.InversionTime = None
    if {"CG", "PPG"} & set(_values(ds.ScanOptions)):
        ds.TriggerTime = None


def _values(value) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else [str(v) for v in value]


def derived_map_images(values: np.ndarray, sources: list[list], *, series_uid: str, sop_uids: list[str],
                       series_number: int, series_description: str, image_type_value3: str,
                       derivation: str, window: tuple[float, float], software_version: str,
                       rescale: tuple[float, float] = (1.0, 0.0)) -> list[Dataset]:
    """One image per slice: values (slices, rows, cols); sources[i] are the source planes slice i came from,
    the first of which gives the geometry.

    rescale: (slope, intercept) with value = stored * slope + intercept; window in values."""
    now = datetime.datetime.now()
    images = []
    for k, (plane_values, slice_sources) in enumerate(zip(values, sources)):
        plane = slice_sources[0]
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = MRImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = UID(sop_uids[k])
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        _copy_identity(ds, plane.header)
        if plane.field_strength_t:
            ds.MagneticFieldStrength = plane.field_strength_t   # DICOM's unit, whatever the source wrote
        ds.Modality = "MR"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series_uid, series_number, k + 1
        ds.SeriesDescription = series_description
        ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
        ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
        ds.ImageType = ["DERIVED", "PRIMARY", image_type_value3]
        ds.DerivationDescription = derivation[:1024]
        ds.SourceImageSequence = [_reference(s) for s in slice_sources]
        ds.Manufacturer, ds.ManufacturerModelName = MANUFACTURER, MODEL_NAME
        ds.SoftwareVersions = software_version
        ds.ImagePositionPatient = [float(v) for v in plane.position]
        ds.ImageOrientationPatient = [float(v) for v in plane.orientation]
        ds.PixelSpacing = [float(v) for v in plane.pixel_mm]
        ds.SliceThickness = plane.slice_thickness_mm or None
        ds.SliceLocation = round(plane.position_mm, 4)
        rows, cols = plane_values.shape
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        slope, intercept = rescale
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{intercept:g}", f"{slope:g}", "US"
        ds.WindowCenter, ds.WindowWidth = window
        stored = np.clip(np.round((plane_values - intercept) / slope), 0, 65535).astype(np.uint16)
        ds.add_new(0x7FE00010, "OW", stored.tobytes())
        images.append(ds)
    return images
