"""Scanner-like MR T1-map series for phantoms, demos and tests.

Written the way a Siemens MyoMaps inline map arrives (MR Image Storage, one
slice per file, ImageType DERIVED\\PRIMARY\\T1 MAP, T1 in ms as unsigned 16-bit
with Rescale Slope 1), so the node's input path is exercised as in a hospital.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from dicom_out.uids import derived_uid


@dataclass
class SyntheticStudy:
    """Identity of a synthetic study. The patient data is invented (a phantom)."""
    patient_name: str = "PHANTOM^CMRNODE"
    patient_id: str = "CMRN-PHANTOM-0001"
    patient_birth_date: str = "20150101"
    study_uid: str = field(default_factory=generate_uid)
    frame_of_reference_uid: str = field(default_factory=generate_uid)
    accession_number: str = "CMRN0001"
    study_datetime: datetime = datetime(2026, 11, 24, 10, 0, 0)
    field_strength_t: float = 1.5


def _slice_geometry(ds: Dataset, rows: int, cols: int, pixel_mm: float, z_mm: float) -> None:
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-cols * pixel_mm / 2, -rows * pixel_mm / 2, z_mm]
    ds.PixelSpacing = [pixel_mm, pixel_mm]
    ds.SliceThickness = 8.0
    ds.SliceLocation = z_mm


def t1_map_series(t1_ms: np.ndarray, study: SyntheticStudy, *, series_description: str, series_number: int,
                  acquired: datetime, pixel_mm: float, slice_gap_mm: float = 10.0,
                  contrast_agent: str | None = None, bolus_start: datetime | None = None,
                  map_type: str = "T1") -> list[Dataset]:
    """One dataset per slice of t1_ms (slices, rows, cols) in ms; map_type "T2" makes it a T2 map (Image Type
    value 3 "T2 MAP", as Siemens MyoMaps write it)."""
    t1_ms = t1_ms if t1_ms.ndim == 3 else t1_ms[np.newaxis]
    series_uid = derived_uid(study.study_uid, series_description, series_number)
    datasets = []
    for k, plane in enumerate(t1_ms):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = derived_uid(series_uid, k)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName, ds.PatientID = study.patient_name, study.patient_id
        ds.PatientBirthDate, ds.PatientSex = study.patient_birth_date, "O"
        ds.StudyInstanceUID, ds.StudyID = study.study_uid, "1"
        ds.StudyDate = study.study_datetime.strftime("%Y%m%d")
        ds.StudyTime = study.study_datetime.strftime("%H%M%S")
        ds.AccessionNumber, ds.ReferringPhysicianName = study.accession_number, ""
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "MR", series_uid, series_number
        ds.SeriesDescription = ds.ProtocolName = series_description
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = study.frame_of_reference_uid, ""
        ds.BodyPartExamined, ds.PatientPosition = "HEART", "HFS"
        ds.Manufacturer, ds.ManufacturerModelName = "cmr-node synthetic", "phantom"
        ds.InstanceNumber = k + 1
        ds.ImageType = ["DERIVED", "PRIMARY", f"{map_type} MAP", map_type]
        ds.AcquisitionDate = ds.ContentDate = acquired.strftime("%Y%m%d")
        ds.AcquisitionTime = ds.ContentTime = acquired.strftime("%H%M%S.%f")[:13]
        ds.SeriesDate, ds.SeriesTime = ds.AcquisitionDate, ds.AcquisitionTime
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "SP", ""
        ds.MRAcquisitionType, ds.SequenceName = "2D", "*tfl2d1r106"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = 2.7, 1.1, 1
        ds.ImagedNucleus, ds.MagneticFieldStrength = "1H", study.field_strength_t
        ds.FlipAngle = 35
        if contrast_agent:
            ds.ContrastBolusAgent = contrast_agent
            if bolus_start:
                ds.ContrastBolusStartTime = bolus_start.strftime("%H%M%S")
        rows, cols = plane.shape
        _slice_geometry(ds, rows, cols, pixel_mm, k * slice_gap_mm)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
        ds.WindowCenter, ds.WindowWidth = 1000, 1600
        ds.PixelData = np.clip(np.round(plane), 0, 65535).astype(np.uint16).tobytes()
        datasets.append(ds)
    return datasets


def molli_series(images: np.ndarray, ti_ms, study: SyntheticStudy, *, series_description: str, series_number: int,
                 acquired: datetime, pixel_mm: float, contrast_agent: str | None = None,
                 bolus_start: datetime | None = None) -> list[Dataset]:
    """Raw MOLLI magnitude images of one slice, (n_TI, rows, cols), one instance per inversion time."""
    datasets = []
    for k, (image, ti) in enumerate(zip(images, ti_ms)):
        ds = t1_map_series(image, study, series_description=series_description, series_number=series_number,
                           acquired=acquired + timedelta(milliseconds=float(ti)), pixel_mm=pixel_mm,
                           contrast_agent=contrast_agent, bolus_start=bolus_start)[0]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = derived_uid(ds.SeriesInstanceUID, "ti", k)
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.ScanningSequence, ds.SequenceVariant = ["GR", "IR"], ["SP", "MP"]
        ds.InversionTime = float(ti)
        ds.WindowCenter, ds.WindowWidth = 500, 1000
        datasets.append(ds)
    return datasets


def t2prep_series(images: np.ndarray, te_ms, study: SyntheticStudy, *, series_description: str,
                  series_number: int, acquired: datetime, pixel_mm: float) -> list[Dataset]:
    """Raw T2-prepared bSSFP images of one slice (n_TE, rows, cols), the preparation time in Image Comments."""
    datasets = []
    for k, (image, te) in enumerate(zip(images, te_ms)):
        ds = t1_map_series(image, study, series_description=series_description, series_number=series_number,
                           acquired=acquired + timedelta(seconds=4 * k), pixel_mm=pixel_mm)[0]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = derived_uid(ds.SeriesInstanceUID, "te", k)
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.ImageComments = f"T2prep {te:g} ms"
        ds.MagneticFieldStrength = 3.0
        ds.WindowCenter, ds.WindowWidth = 700, 1400
        datasets.append(ds)
    return datasets


PERFUSION_SIGNAL_SCALE = 4000.0   # stored value per unit of phantom signal (a fully recovered voxel ~ 4000 sin a)


def perfusion_series(frames: np.ndarray, times_s, study: SyntheticStudy, *, injection: datetime, ts_ms: float,
                     flip_deg: float, pd_frames: np.ndarray | None = None, pd_flip_deg: float = 5.0,
                     series_description: str = "PERF_SR_FirstPass", series_number: int = 90, pixel_mm: float,
                     ts_in: str = "InversionTime") -> list[Dataset]:
    """A first-pass perfusion series of one slice as a saturation-recovery sequence writes it: one instance
    per heartbeat, proton-density frames (no saturation, small flip angle) first, the saturation delay in
    Inversion Time or, with ts_in="ImageComments", as "TS 100 ms" in Image Comments (Siemens-like)."""
    pd = np.zeros((0,) + frames.shape[1:]) if pd_frames is None else pd_frames
    rr = float(np.median(np.diff(times_s)))
    all_times = np.concatenate([times_s[0] - rr * np.arange(len(pd), 0, -1), times_s])
    datasets = []
    for k, (image, t) in enumerate(zip(np.concatenate([pd, frames]), all_times)):
        acquired = injection + timedelta(seconds=float(t))
        ds = t1_map_series(image * PERFUSION_SIGNAL_SCALE, study, series_description=series_description,
                           series_number=series_number, acquired=acquired, pixel_mm=pixel_mm,
                           contrast_agent="Gadobutrol", bolus_start=injection)[0]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = derived_uid(ds.SeriesInstanceUID, "fp", k)
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.ScanningSequence, ds.SequenceVariant = "GR", ["SP", "SK"]
        ds.SequenceName = "*tfl2d1_16"
        ds.TriggerTime = 300.0
        proton_density = k < len(pd)
        ds.FlipAngle = pd_flip_deg if proton_density else flip_deg
        if not proton_density:
            if ts_in == "InversionTime":
                ds.InversionTime = ts_ms
            else:
                ds.ImageComments = f"TS {ts_ms:g} ms"
        ds.WindowCenter, ds.WindowWidth = 400, 800
        datasets.append(ds)
    return datasets


def save_series(datasets: list[Dataset], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
