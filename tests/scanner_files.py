"""Files as vendors write them, for tests of the conventions in node/inputs/vendors.py.

Built from the short-axis ECV phantom (analysis/phantoms) with the MOLLI forward model, and written the
way each vendor's software writes its series (sources in vendors.py):
- Philips (Ingenia 1.5 T): raw MOLLI images `ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE` without Inversion Time, the
  inversion time of each image in Inversion Delay Time (2005,xx72) of "Philips MR Imaging DD 006", the
  same Trigger Time on every image, Rescale Slope and the private Scale Slope (2005,100E), a few hundred
  private elements, and the inline map `ORIGINAL\\PRIMARY\\T1 MAP\\T1\\UNSPECIFIED` in the same series with
  a Real World Value Mapping in ms. The agent is on every series once entered, native ones too.
  Interleaved 3(3)3(3)5 inversion times.
- GE (1.5 T, older software): Magnetic Field Strength in gauss, Private Image Type (0043,102F) for
  magnitude (0) and phase (1) with a generic Image Type, inline maps in series named MOLLI_<source>.
- Enhanced MR (Siemens XA / Philips enhanced export): one multi-frame instance per series, per-frame
  Frame Type, plane position, Frame Acquisition DateTime and MR Modifier Inversion Times; a Philips
  enhanced object that holds the raw frames and the map frame together.
Patient data is invented.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from analysis.phantoms.molli import molli_images
from analysis.phantoms.t1_ecv import ecv_phantom

ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
RR_MS = 893.0
# Philips MOLLI 3(3)3(3)5 at 67 bpm: three inversions whose first inversion times differ
PHILIPS_INVERSIONS = ((350.0, 3), (266.0, 3), (231.0, 5))
START = datetime(2026, 11, 24, 10, 0, 0)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


class Study:
    """Identity shared by every series of one imitated study."""
    def __init__(self, manufacturer: str, model: str, field: float, patient: str = "VENDOR^TEST"):
        self.uid, self.frame_of_reference = generate_uid(), generate_uid()
        self.manufacturer, self.model, self.field, self.patient = manufacturer, model, field, patient

    def header(self, description: str, number: int, acquired: datetime, sop_class: str = MRImageStorage) -> Dataset:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = self.patient, "VT-0001", "19600101", "F"
        ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = self.uid, "1", "A1", ""
        ds.StudyDate, ds.StudyTime = START.strftime("%Y%m%d"), START.strftime("%H%M%S")
        ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "MR", self.manufacturer, self.model
        ds.SeriesDescription = ds.ProtocolName = description
        ds.SeriesNumber = number
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = self.frame_of_reference, ""
        ds.BodyPartExamined, ds.PatientPosition = "HEART", "HFS"
        ds.MagneticFieldStrength = self.field
        ds.AcquisitionDate = ds.ContentDate = ds.SeriesDate = acquired.strftime("%Y%m%d")
        ds.AcquisitionTime = ds.ContentTime = ds.SeriesTime = acquired.strftime("%H%M%S.%f")[:13]
        ds.MRAcquisitionType, ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength = "2D", 1.1, 2.6, 1
        ds.FlipAngle, ds.ImagedNucleus = 35, "1H"
        return ds


def _plane(ds: Dataset, rows: int, cols: int, pixel_mm: float, z_mm: float) -> None:
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-cols * pixel_mm / 2, -rows * pixel_mm / 2, z_mm]
    ds.PixelSpacing, ds.SliceThickness, ds.SliceLocation = [pixel_mm, pixel_mm], 8.0, z_mm


def _pixels(ds: Dataset, stored: np.ndarray) -> None:
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.clip(np.round(stored), 0, 4095).astype(np.uint16).tobytes()


def molli_scheme(inversions=PHILIPS_INVERSIONS, rr_ms: float = RR_MS) -> list[tuple[float, float]]:
    """(inversion time, ms after the first inversion) of every image, in acquisition order; 3 rest beats."""
    images, start = [], 0.0
    for first_ti, count in inversions:
        images += [(first_ti + k * rr_ms, start + first_ti + k * rr_ms) for k in range(count)]
        start += (count + 3) * rr_ms
    return images


# ---- Philips ------------------------------------------------------------------------------------------
PHILIPS_CREATORS = {0x10: "Philips MR Imaging DD 001", 0x11: "Philips MR Imaging DD 002",
                    0x15: "Philips MR Imaging DD 006"}


def _philips_private(ds: Dataset, inversion_delay: float | None, scale_slope: float) -> None:
    for block, creator in PHILIPS_CREATORS.items():
        ds.add_new((0x2005, block), "LO", creator)
    ds.add_new((0x2005, 0x100E), "FL", scale_slope)              # Scale Slope (DD 001)
    for k in range(0x20, 0x20 + 120):                             # what a Philips header carries besides
        ds.add_new((0x2005, 0x1000 + k), "FL", float(k))
        ds.add_new((0x2005, 0x1100 + k), "SS", k)
    if inversion_delay is not None:
        ds.add_new((0x2005, 0x1572), "FL", inversion_delay)       # Inversion Delay Time (DD 006)


def philips_molli_series(study: Study, t1_ms: np.ndarray, description: str, number: int, acquired: datetime,
                         z_mm: float, pixel_mm: float, agent: str | None, seed: int,
                         noise_fraction: float = 0.03) -> list[Dataset]:
    """Raw MOLLI images and the inline T1 map of one slice, in one series, as a Philips Ingenia writes them."""
    scheme = molli_scheme()
    images = molli_images(t1_ms, ti_ms=[ti for ti, _ in scheme], amplitude=1500.0, noise_fraction=noise_fraction,
                          seed=seed)
    series_uid = generate_uid()
    rescale = 1.31                                                 # Philips rescales raw images too
    datasets = []
    for k, ((ti, after_ms), image) in enumerate(zip(scheme, images)):
        ds = study.header(description, number, acquired)           # one Acquisition Time for the whole series
        ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, k + 1
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "SS", "CG"
        ds.TriggerTime = 520.0                                     # the same on every image
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = rescale, 0, "normalized"
        if agent:
            ds.ContrastBolusAgent = agent
        _plane(ds, *image.shape, pixel_mm, z_mm)
        _pixels(ds, image / rescale)
        _philips_private(ds, ti, 0.0871)
        datasets.append(ds)
    ds = study.header(description, number, acquired)
    ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, len(scheme) + 1
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "T1 MAP", "T1", "UNSPECIFIED"]
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "SS", "CG"
    ds.TriggerTime = 520.0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 2.0, 0, "ms"
    mapping = Dataset()
    mapping.LUTLabel, mapping.LUTExplanation = "T1", "T1 (ms)"
    mapping.RealWorldValueFirstValueMapped, mapping.RealWorldValueLastValueMapped = 0, 4095
    mapping.RealWorldValueSlope, mapping.RealWorldValueIntercept = 2.0, 0.0
    mapping.MeasurementUnitsCodeSequence = [_code("ms", "UCUM", "millisecond")]
    ds.RealWorldValueMappingSequence = [mapping]
    if agent:
        ds.ContrastBolusAgent = agent
    _plane(ds, *t1_ms.shape, pixel_mm, z_mm)
    _pixels(ds, t1_ms / 2.0)
    _philips_private(ds, None, 0.2941)
    datasets.append(ds)
    return datasets


def philips_study(directory: Path) -> tuple[Study, object, list[Path]]:
    """The Philips cardiac study of the issue: T1_native, T1_enhanced (slice 0 mm), LL-NATIVO, LL-POST
    (slice 10 mm), each raw MOLLI + inline map in one series, and an LGE series IR_TFE_BH."""
    study = Study("Philips Medical Systems", "Ingenia", 1.5)
    phantom = ecv_phantom(noise_fraction=0.0)
    injection = START + timedelta(minutes=10)
    files = []
    for description, number, acquired, z, post, seed in (
            ("T1_native", 301, START + timedelta(minutes=4), 0.0, False, 11),
            ("LL-NATIVO", 401, START + timedelta(minutes=6), 10.0, False, 12),
            ("T1_enhanced", 1101, injection + timedelta(minutes=15), 0.0, True, 13),
            ("LL-POST", 1201, injection + timedelta(minutes=17), 10.0, True, 14)):
        t1 = phantom.t1_post_ms if post else phantom.t1_pre_ms
        # the agent is entered before the scan: every series carries it, native ones too
        series = philips_molli_series(study, t1, description, number, acquired, z, phantom.pixel_mm,
                                      agent="Gadovist", seed=seed)
        files += save(series, directory / description)
    files += save(philips_lge_series(study, phantom, injection + timedelta(minutes=20)), directory / "IR_TFE_BH")
    return study, phantom, files


def philips_lge_series(study: Study, phantom, acquired: datetime) -> list[Dataset]:
    """IR-TFE LGE: one magnitude image per slice at TI 280 ms, and the phase-sensitive real image."""
    datasets = []
    series_uid = generate_uid()
    for k, z in enumerate((0.0, 10.0, 20.0)):
        for image_type in (["ORIGINAL", "PRIMARY", "M_IR", "M", "IR"], ["ORIGINAL", "PRIMARY", "R_IR", "R", "IR"]):
            ds = study.header("IR_TFE_BH", 1301, acquired + timedelta(seconds=12 * k))
            ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, len(datasets) + 1
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.ImageType = image_type
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = ["GR", "IR"], "SS", "CG"
            ds.InversionTime, ds.TriggerTime, ds.ContrastBolusAgent = 280.0, 600.0, "Gadovist"
            _plane(ds, *phantom.labels.shape, phantom.pixel_mm, z)
            _pixels(ds, np.where(phantom.labels > 0, 300.0, 5.0))
            _philips_private(ds, None, 0.1)
            datasets.append(ds)
    return datasets


# ---- GE -----------------------------------------------------------------------------------------------
def _ge_private(ds: Dataset, image_kind: int) -> None:
    ds.add_new((0x0043, 0x0010), "LO", "GEMS_PARM_01")
    ds.add_new((0x0043, 0x102F), "SS", image_kind)               # 0 magnitude, 1 phase, 2 real, 3 imaginary


def ge_study(directory: Path) -> tuple[Study, object, list[Path]]:
    """GE 1.5 T with field strength in gauss: raw MOLLI magnitude and phase series of one acquisition, and the
    inline maps (MOLLI_<source>) of a native and a post-contrast acquisition."""
    study = Study("GE MEDICAL SYSTEMS", "Signa HDxt", 15000)
    phantom = ecv_phantom(noise_fraction=0.0)
    scheme = molli_scheme(((100.0, 5), (180.0, 3)), 1000.0)
    files = []
    for description, number, acquired, post in (("SAX_MOLLI_PRE_BH", 5, START + timedelta(minutes=4), False),
                                                 ("SAX_MOLLI_POST_BH", 15, START + timedelta(minutes=25), True)):
        t1 = phantom.t1_post_ms if post else phantom.t1_pre_ms
        images = molli_images(t1, ti_ms=[ti for ti, _ in scheme], amplitude=1500.0, noise_fraction=0.02, seed=number)
        for kind, offset in ((0, 0), (1, 1)):                      # magnitude series, then its phase series
            series_uid = generate_uid()
            for k, ((ti, after), image) in enumerate(zip(scheme, images)):
                ds = study.header(description, number + offset, acquired + timedelta(milliseconds=after))
                ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, k + 1
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
                ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = ["GR", "IR"], "SS", ["FAST_GEMS", "CG"]
                ds.InversionTime, ds.TriggerTime = ti, 400.0
                _plane(ds, *image.shape, phantom.pixel_mm, 0.0)
                _pixels(ds, image if kind == 0 else np.full(image.shape, 2048.0))
                _ge_private(ds, kind)
                files.append(save_one(ds, directory / f"{description}_{kind}"))
        map_ds = study.header(f"MOLLI_{description}", number + 100, acquired)
        map_ds.SeriesInstanceUID = generate_uid()
        map_ds.SOPInstanceUID = map_ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        map_ds.InstanceNumber = 1
        map_ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
        map_ds.ScanningSequence, map_ds.SequenceVariant, map_ds.ScanOptions = "RM", "NONE", ""
        _plane(map_ds, *t1.shape, phantom.pixel_mm, 0.0)
        _pixels(map_ds, np.clip(t1, 0, 4095))
        _ge_private(map_ds, 0)
        files.append(save_one(map_ds, directory / f"MOLLI_{description}"))
    return study, phantom, files


# ---- enhanced (multi-frame) MR ------------------------------------------------------------------------
def _frame_item(position: list[float], acquired: datetime, frame_type: list[str], inversion_ms: float | None,
                mapping: Dataset | None = None) -> Dataset:
    item = Dataset()
    content = Dataset()
    content.FrameAcquisitionDateTime = acquired.strftime("%Y%m%d%H%M%S.%f")
    content.FrameReferenceDateTime = content.FrameAcquisitionDateTime
    content.FrameAcquisitionDuration = 200.0
    item.FrameContentSequence = [content]
    plane = Dataset()
    plane.ImagePositionPatient = position
    item.PlanePositionSequence = [plane]
    kind = Dataset()
    kind.FrameType = frame_type
    kind.PixelPresentation, kind.VolumetricProperties, kind.VolumeBasedCalculationTechnique = \
        "MONOCHROME", "VOLUME", "NONE"
    kind.ComplexImageComponent = "MAGNITUDE"
    kind.AcquisitionContrast = "T1" if inversion_ms is not None else "UNKNOWN"
    item.MRImageFrameTypeSequence = [kind]
    modifier = Dataset()
    modifier.InversionRecovery = "YES" if inversion_ms is not None else "NO"
    if inversion_ms is not None:
        modifier.InversionTimes = [inversion_ms]
    item.MRModifierSequence = [modifier]
    if mapping is not None:
        item.RealWorldValueMappingSequence = [mapping]
    return item


def enhanced_instance(study: Study, description: str, number: int, acquired: datetime, frames: list[tuple],
                      pixel_mm: float, image_type: list[str]) -> Dataset:
    """One Enhanced MR Image: frames are (stored image, z mm, acquired, Frame Type, TI or None, RWVM or None)."""
    ds = study.header(description, number, acquired, sop_class=ENHANCED_MR_STORAGE)
    for keyword in ("MRAcquisitionType", "EchoTime", "RepetitionTime", "EchoTrainLength", "FlipAngle",
                    "AcquisitionDate", "AcquisitionTime", "ImagedNucleus", "MagneticFieldStrength"):
        delattr(ds, keyword)
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber, ds.ImageType = 1, image_type
    ds.AcquisitionDateTime = acquired.strftime("%Y%m%d%H%M%S.%f")
    ds.ContentQualification, ds.MagneticFieldStrength, ds.ResonantNucleus = "PRODUCT", study.field, "1H"
    ds.DeviceSerialNumber, ds.SoftwareVersions = "12345", "XA31"
    rows, cols = frames[0][0].shape
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [pixel_mm, pixel_mm], 8.0
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    transform = Dataset()
    transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = 0, 1, "US"
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [orientation]
    shared.PixelValueTransformationSequence = [transform]
    anatomy = Dataset()
    anatomy.FrameLaterality, anatomy.AnatomicRegionSequence = "U", [_code("80891009", "SCT", "Heart")]
    shared.FrameAnatomySequence = [anatomy]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = Sequence([
        _frame_item([-cols * pixel_mm / 2, -rows * pixel_mm / 2, z], when, frame_type, ti, mapping)
        for _, z, when, frame_type, ti, mapping in frames])
    ds.NumberOfFrames = len(frames)
    _pixels(ds, np.stack([f[0] for f in frames]))
    return ds


def t1_mapping(slope: float = 1.0) -> Dataset:
    mapping = Dataset()
    mapping.LUTLabel, mapping.LUTExplanation = "T1", "T1 (ms)"
    mapping.RealWorldValueFirstValueMapped, mapping.RealWorldValueLastValueMapped = 0, 4095
    mapping.RealWorldValueSlope, mapping.RealWorldValueIntercept = slope, 0.0
    mapping.MeasurementUnitsCodeSequence = [_code("ms", "UCUM", "millisecond")]
    return mapping


def enhanced_study(directory: Path) -> tuple[Study, object, list[Path]]:
    """Siemens XA: a raw MOLLI 5(3)3 enhanced instance (native) and enhanced T1 maps of 2 slices, native and
    post-contrast; Philips: one enhanced instance holding post-contrast raw frames and the map frame."""
    study = Study("Siemens Healthineers", "MAGNETOM Sola", 1.5)
    phantom = ecv_phantom(noise_fraction=0.0)
    scheme = molli_scheme(((100.0, 5), (180.0, 3)), 1000.0)
    raw_type = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    files = []
    native_at = START + timedelta(minutes=4)
    images = molli_images(phantom.t1_pre_ms, ti_ms=[ti for ti, _ in scheme], amplitude=1500.0, noise_fraction=0.02,
                          seed=21)
    raw = enhanced_instance(study, "MOLLI_native", 20, native_at,
                            [(img, 0.0, native_at + timedelta(milliseconds=after), raw_type, ti, None)
                             for (ti, after), img in zip(scheme, images)], phantom.pixel_mm, raw_type)
    files.append(save_one(raw, directory / "raw"))
    map_type = ["DERIVED", "PRIMARY", "T1_MAP", "NONE"]
    for description, number, when, t1 in (("MOLLI_native_MOCO_T1", 21, native_at, phantom.t1_pre_ms),
                                          ("MOLLI_post_MOCO_T1", 31, START + timedelta(minutes=25), phantom.t1_post_ms)):
        maps = enhanced_instance(study, description, number, when,
                                 [(t1, z, when + timedelta(seconds=15 * k), map_type, None, t1_mapping())
                                  for k, z in enumerate((0.0, 10.0))], phantom.pixel_mm, map_type)
        files.append(save_one(maps, directory / description))
    philips = Study("Philips Medical Systems", "Ingenia Elition", 1.5)
    philips.uid, philips.frame_of_reference = study.uid, study.frame_of_reference
    post_at = START + timedelta(minutes=27)
    images = molli_images(phantom.t1_post_ms, ti_ms=[ti for ti, _ in scheme], amplitude=1500.0, noise_fraction=0.02,
                          seed=22)
    mixed_frames = [(img, 0.0, post_at + timedelta(milliseconds=after), ["ORIGINAL", "PRIMARY", "M_FFE", "M"], ti,
                     None) for (ti, after), img in zip(scheme, images)]
    mixed_frames.append((phantom.t1_post_ms / 2.0, 0.0, post_at, ["ORIGINAL", "PRIMARY", "T1_MAP", "T1"], None,
                         t1_mapping(2.0)))
    mixed = enhanced_instance(philips, "T1_post_enhanced", 41, post_at, mixed_frames, phantom.pixel_mm,
                              ["ORIGINAL", "PRIMARY", "MIXED", "NONE"])
    files.append(save_one(mixed, directory / "philips_mixed"))
    return study, phantom, files


def save_one(ds: Dataset, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def save(datasets: list[Dataset], directory: Path) -> list[Path]:
    return [save_one(ds, directory) for ds in datasets]
