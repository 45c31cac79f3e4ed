"""One image frame of a received file, whatever the scanner wrote: a classic single-frame MR image, or one
frame of an enhanced multi-frame MR image (Siemens XA, Philips), with the attributes that apply to it.

An attribute of a frame is looked up in its Per-frame Functional Groups item, then in the Shared
Functional Groups item (in each, directly or in the first item of one of its functional group
sequences), then at the top level of the dataset (PS3.3 C.7.6.16). Values keep the units DICOM gives
them: ms for times, mm for geometry; pixel values come out scaled to their real-world unit.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from analysis.geometry import normal, position_along_normal_mm

MR_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.4": "MR Image",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image",
}
# A nominal field strength above this is in gauss (older GE software writes 15000 for 1.5 T); PS3.3 C.8.13.2
# says tesla, and no MR magnet has 100 T.
GAUSS_THRESHOLD = 100.0
MAX_TIME_MS = 10000.0   # inversion and preparation times beyond this are not plausible (Philips wrote 1.797e308)


# vendor: (test on the upper-case Manufacturer, word in its software's private creators)
_MAKERS = (("siemens", lambda m: "SIEMENS" in m, "SIEMENS"),
           ("philips", lambda m: "PHILIPS" in m, "PHILIPS"),
           ("ge", lambda m: m == "GE" or m.startswith("GE ") or "GENERAL ELECTRIC" in m, "GEMS_"))


def vendor_of(ds: Dataset) -> str:
    """'siemens', 'philips', 'ge' or 'other', from Manufacturer or, where an anonymizer emptied it, from the
    private creators the vendor's software writes."""
    maker = str(ds.get("Manufacturer", "") or "").strip().upper()
    creators = "" if maker else " ".join(str(e.value).upper() for e in ds if e.tag.is_private_creator)
    for vendor, made_by, creator_word in _MAKERS:
        if made_by(maker) or (not maker and creator_word in creators):
            return vendor
    return "other"


def field_strength_t(ds: Dataset) -> float | None:
    """Magnetic Field Strength (0018,0087) in tesla; a value written in gauss is converted."""
    value = ds.get("MagneticFieldStrength")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if value <= 0:
        return None
    return value / 10000.0 if value > GAUSS_THRESHOLD else value


def private_value(ds: Dataset, group: int, creator: str, offset: int, binary_format: str):
    """A private element located through its creator (never by a fixed tag number), as a number.

    binary_format: struct format of the value when it arrives as raw bytes (implicit VR, unknown to pydicom)."""
    for element in ds.group_dataset(group):
        if element.tag.is_private_creator and str(element.value).strip().upper() == creator.upper():
            tag = (group << 16) | ((element.tag.element & 0xFF) << 8) | offset
            if tag not in ds:
                return None
            value = ds[tag].value
            if isinstance(value, (bytes, bytearray)):
                size = struct.calcsize(binary_format)
                return struct.unpack(binary_format, value[:size])[0] if len(value) >= size else None
            if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
                return value[0] if len(value) else None
            return value
    return None


def parse_datetime(text: str, date: str | None = None) -> datetime | None:
    """A DICOM DT value (PS3.5 6.2), or a TM value on date (DA); the time-zone suffix is ignored.
    None when the text is not one of these."""
    text = str(text).strip().split("+")[0]
    if date is not None and len(text.split(".")[0]) <= 6:   # TM: HH, HHMM or HHMMSS[.F]
        text = f"{date}{text}"
    if len(text) > 8 and "-" in text[8:]:
        text = text[:8] + text[8:].split("-")[0]
    digits, _, fraction = text.partition(".")
    # by length: strptime alone would read "202603141015" as 10:01:05
    fmt = {14: "%Y%m%d%H%M%S", 12: "%Y%m%d%H%M", 10: "%Y%m%d%H"}.get(len(digits))
    if fmt is None or not digits.isdigit() or (fraction and (len(digits) != 14 or not fraction.isdigit())):
        return None
    try:
        return datetime.strptime(f"{digits}.{fraction[:6]}" if fraction else digits, fmt + (".%f" if fraction else ""))
    except ValueError:
        return None


@dataclass
class Instance:
    """A file read once; its pixel data is decoded at most once, on demand."""
    path: str
    dataset: Dataset
    _pixels: np.ndarray | None = field(default=None, repr=False)

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.get("SOPInstanceUID", ""))

    @property
    def sop_class_uid(self) -> str:
        return str(self.dataset.get("SOPClassUID", ""))

    @property
    def is_mr_image(self) -> bool:
        return self.sop_class_uid in MR_IMAGE_SOP_CLASSES

    @property
    def is_multi_frame(self) -> bool:
        return "PerFrameFunctionalGroupsSequence" in self.dataset or int(self.dataset.get("NumberOfFrames", 1) or 1) > 1

    def stored_pixels(self) -> np.ndarray:
        """(frames, rows, cols) stored values; reads the file again when it was read without pixels."""
        if self._pixels is None:
            ds = self.dataset if "PixelData" in self.dataset else pydicom.dcmread(self.path)
            pixels = ds.pixel_array
            self._pixels = pixels[np.newaxis] if pixels.ndim == 2 else pixels
        return self._pixels

    def frames(self) -> list["Frame"]:
        if not self.is_mr_image:
            return []
        ds = self.dataset
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or [None]
        shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
        numbered = int(ds.get("NumberOfFrames", 1) or 1) > 1
        return [Frame(self, item, shared, k + 1 if numbered else None) for k, item in enumerate(per_frame)]


def _in_group(item: Dataset | None, keyword: str):
    """keyword directly in a functional groups item, or in the first item of one of its macros."""
    if item is None:
        return None
    if keyword in item:
        return item[keyword].value
    for element in item:
        if element.VR == "SQ" and element.value and keyword in element.value[0]:
            return element.value[0][keyword].value
    return None


class Frame:
    """One 2-D image: instance.frames()[k]. Attributes are computed on access from the header."""

    def __init__(self, instance: Instance, per_frame: Dataset | None, shared: Dataset | None, number: int | None):
        self.instance = instance
        self.per_frame = per_frame
        self.shared = shared
        self.number = number          # 1-based frame number in a multi-frame instance; None for single-frame

    # ---- generic access ----------------------------------------------------------------------------
    @property
    def header(self) -> Dataset:
        return self.instance.dataset

    def value(self, keyword: str):
        """The frame's value of an attribute: per-frame groups, shared groups, then the top level."""
        for item in (self.per_frame, self.shared):
            found = _in_group(item, keyword)
            if found is not None:
                return found
        return self.header[keyword].value if keyword in self.header else None

    def private_items(self) -> list[Dataset]:
        """Where a vendor's private per-frame values may be: items of the frame's private functional groups
        (Philips (2005,140F)), then the top level."""
        items = []
        for group_item in (self.per_frame, self.shared):
            for element in group_item or []:
                if element.tag.is_private and element.VR == "SQ" and element.value:
                    items.append(element.value[0])
        return items + [self.header]

    @property
    def key(self) -> tuple[str, int]:
        """(SOP Instance UID, frame number or 0): what references and digests name."""
        return self.instance.sop_instance_uid, self.number or 0

    @property
    def sop_instance_uid(self) -> str:
        return self.instance.sop_instance_uid

    @property
    def series_uid(self) -> str:
        return str(self.header.get("SeriesInstanceUID", ""))

    @property
    def series_description(self) -> str:
        return str(self.header.get("SeriesDescription", "") or "")

    @property
    def vendor(self) -> str:
        return vendor_of(self.header)

    @property
    def field_strength_t(self) -> float | None:
        return field_strength_t(self.header)

    # ---- what the frame shows ------------------------------------------------------------------------
    @property
    def image_type(self) -> tuple[str, ...]:
        """Frame Type (enhanced) or Image Type, upper case, each value stripped."""
        value = self.value("FrameType") if self.number is not None or self.per_frame is not None else None
        if value is None:
            value = self.header.get("ImageType")
        if value is None:
            return ()
        values = [value] if isinstance(value, str) else list(value)
        return tuple(str(v).strip().upper() for v in values)

    @property
    def complex_component(self) -> str | None:
        """Complex Image Component (0008,9208) of the frame (MAGNITUDE, PHASE, REAL, IMAGINARY), when given."""
        value = self.value("ComplexImageComponent")
        value = str(value).strip().upper() if value else None
        return None if value in (None, "", "MIXED") else value

    @property
    def comments(self) -> str:
        return str(self.value("ImageComments") or "")

    # ---- geometry ------------------------------------------------------------------------------------
    @property
    def position(self) -> np.ndarray | None:
        value = self.value("ImagePositionPatient")
        return np.asarray(value, dtype=float) if value is not None and len(value) == 3 else None

    @property
    def orientation(self) -> np.ndarray | None:
        value = self.value("ImageOrientationPatient")
        return np.asarray(value, dtype=float) if value is not None and len(value) == 6 else None

    @property
    def has_geometry(self) -> bool:
        return self.position is not None and self.orientation is not None and self.value("PixelSpacing") is not None

    @property
    def normal(self) -> np.ndarray:
        return normal(self.orientation)

    @property
    def position_mm(self) -> float:
        """Position along the slice normal (mm)."""
        return position_along_normal_mm(self.position, self.orientation)

    @property
    def plane_key(self) -> tuple:
        """Frames of one slice plane share this key: orientation and position along the normal, rounded."""
        if self.position is None or self.orientation is None:
            return ()
        return tuple(np.round(self.orientation, 2) + 0.0) + (round(self.position_mm),)

    @property
    def pixel_mm(self) -> tuple[float, float]:
        spacing = self.value("PixelSpacing")
        return float(spacing[0]), float(spacing[1])

    @property
    def slice_thickness_mm(self) -> float:
        return float(self.value("SliceThickness") or 0.0)

    # ---- timing --------------------------------------------------------------------------------------
    @property
    def acquired(self) -> datetime | None:
        """When the frame was acquired: Frame Acquisition DateTime (enhanced), Acquisition DateTime, Acquisition
        Date and Time (date from Series, Content or Study Date when only the time is there), Series Date/Time."""
        ds = self.header
        for text in (self.value("FrameAcquisitionDateTime"), ds.get("AcquisitionDateTime")):
            if text and (parsed := parse_datetime(text)):
                return parsed
        date = next((ds.get(k) for k in ("AcquisitionDate", "SeriesDate", "ContentDate", "StudyDate") if ds.get(k)),
                    None)
        for time_keyword in ("AcquisitionTime", "SeriesTime"):
            if date and ds.get(time_keyword) and (parsed := parse_datetime(ds.get(time_keyword), date)):
                return parsed
        return None

    def time_ms(self, keyword: str, upper: float = MAX_TIME_MS) -> float | None:
        """A time attribute (ms) of the frame, None when absent, empty, negative or not below upper (GE writes
        Trigger Time from the start of a dynamic series, up to a minute: pass upper=inf for it)."""
        value = self.value(keyword)
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            value = value[0] if len(value) else None
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        return value if 0.0 <= value < upper else None

    # ---- values --------------------------------------------------------------------------------------
    def real_world_mapping(self) -> tuple[float, float, str] | None:
        """(slope, intercept, unit code) of the frame's Real World Value Mapping with a linear mapping."""
        for item in self.value("RealWorldValueMappingSequence") or []:
            units = item.get("MeasurementUnitsCodeSequence") or []
            if units and "RealWorldValueSlope" in item:
                return (float(item.RealWorldValueSlope), float(item.get("RealWorldValueIntercept", 0.0) or 0.0),
                        str(units[0].get("CodeValue", "")))
        return None

    def rescale(self) -> tuple[float, float]:
        """(Rescale Slope, Rescale Intercept) of the frame (Pixel Value Transformation for enhanced images)."""
        slope, intercept = self.value("RescaleSlope"), self.value("RescaleIntercept")
        return float(slope) if slope not in (None, "") else 1.0, float(intercept) if intercept not in (None, "") else 0.0

    def stored(self) -> np.ndarray:
        """Stored pixel values of this frame (rows, cols)."""
        return self.instance.stored_pixels()[(self.number or 1) - 1]

    def values(self) -> np.ndarray:
        """Pixel values after Rescale Slope/Intercept (float)."""
        slope, intercept = self.rescale()
        return self.stored().astype(np.float64) * slope + intercept

    def values_ms(self) -> np.ndarray:
        """A relaxation-time map's values in ms: its Real World Value Mapping when that is in ms or s
        (Philips), else the rescaled values (Siemens and GE inline maps store ms)."""
        mapping = self.real_world_mapping()
        if mapping is not None and mapping[2] in ("ms", "s"):
            slope, intercept, unit = mapping
            return (self.stored().astype(np.float64) * slope + intercept) * (1000.0 if unit == "s" else 1.0)
        return self.values()


def read_instance(path, pixels: bool = False) -> Instance:
    """A DICOM file, header only unless pixels."""
    return Instance(str(path), pydicom.dcmread(str(path), stop_before_pixels=not pixels))


def read_frames(paths, pixels: bool = False) -> list[Frame]:
    """Every MR image frame of the files, in file order."""
    return [f for p in paths for f in read_instance(p, pixels).frames()]
