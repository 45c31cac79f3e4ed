"""The study summary a physician reads in any PACS viewer: bullseye plots of the AHA segments, the key
numbers with units and reference ranges, the quality findings, the software version and the site's
disclaimer, burned into one RGB Secondary Capture; the same page as an Encapsulated PDF when a site asks.

Bullseye layout (Cerqueira et al., Circulation 2002;105:539): basal segments 1-6 in the outer ring, mid 7-12
in the middle one, apical 13-16 inside, seen from the apex with the anterior wall (1, 7, 13) at the top and
the septum (2-3, 8-9, 14) on the left.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from datetime import datetime

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_out.parametric_map import MANUFACTURER, MODEL_NAME
from dicom_out.sources import complete_type2
from dicom_out.uids import derived_uid
from dicom_out.viewer_images import viridis

WIDTH, HEIGHT = 1200, 900
BULLSEYE_RADIUS = 150
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
NO_VALUE = (90, 90, 90)
WHITE, GREY, AMBER = (255, 255, 255), (170, 170, 170), (255, 200, 0)


@dataclass
class Bullseye:
    title: str                           # e.g. "Native T1 (ms)"
    values: dict[int, float]             # AHA segment -> value
    low: float                           # colour scale
    high: float
    decimals: int = 0
    missing: str = "not measured"        # what a segment without a value means


@dataclass
class KeyNumber:
    label: str                           # e.g. "Myocardial ECV (mean)"
    value: float | None
    unit: str
    reference: tuple[float, float] | None = None
    note: str = ""                       # e.g. the interval, or the bound of what is not identified
    missing: str = "not measured"        # what no value means

    def outside(self) -> str:
        if self.value is None or self.reference is None:
            return ""
        return "above" if self.value > self.reference[1] else "below" if self.value < self.reference[0] else ""


@dataclass
class StudySummary:
    heading: str                         # e.g. "CMR quantification, 1.5 T, study of 2026-11-24"
    bullseyes: list[Bullseye] = field(default_factory=list)
    numbers: list[KeyNumber] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)       # quality findings, sentences
    sources: list[str] = field(default_factory=list)        # the reports it was made from, by description
    disclaimer: str = ""
    software: str = ""


def _font(size: int):
    return ImageFont.load_default(size=size)


def _segment_arc(number: int) -> tuple[int, float, float]:
    """(ring: 0 basal outside .. 2 apical inside, start, end): degrees counter-clockwise from the viewer's right."""
    if number <= 12:
        k = (number - 1) % 6
        start = 60.0 + 60.0 * k            # 1 and 7 anterior at 60-120, then counter-clockwise to the septum
        return (0 if number <= 6 else 1), start, start + 60.0
    start = 45.0 + 90.0 * (number - 13)    # 13 anterior at 45-135, 14 septal, 15 inferior, 16 lateral
    return 2, start, start + 90.0


def _segment_colour(b: Bullseye, number: int) -> tuple[int, ...]:
    value = b.values.get(number)
    return NO_VALUE if value is None else tuple(int(c) for c in viridis(np.array([value]), b.low, b.high)[0])


def draw_bullseye(draw: ImageDraw.ImageDraw, centre: tuple[int, int], b: Bullseye,
                  radius: float = BULLSEYE_RADIUS) -> None:
    """The 16 segments with their values, rings painted from the outside in."""
    cx, cy = centre
    radii = (radius, radius * 2 / 3, radius / 3, radius / 9)
    for ring in range(3):
        r = radii[ring]
        for number in (n for n in range(1, 17) if _segment_arc(n)[0] == ring):
            _, start, end = _segment_arc(number)
            # PIL measures angles clockwise from +x
            draw.pieslice([cx - r, cy - r, cx + r, cy + r], -end, -start, fill=_segment_colour(b, number),
                          outline=(0, 0, 0), width=2)
    draw.ellipse([cx - radii[3], cy - radii[3], cx + radii[3], cy + radii[3]], fill=(0, 0, 0))
    for number in range(1, 17):
        ring, start, end = _segment_arc(number)
        middle, angle = (radii[ring] + radii[ring + 1]) / 2, math.radians((start + end) / 2)
        value = b.values.get(number)
        draw.text((cx + middle * math.cos(angle), cy - middle * math.sin(angle)),
                  "-" if value is None else f"{value:.{b.decimals}f}", fill=WHITE, font=_font(15), anchor="mm",
                  stroke_width=2, stroke_fill=(0, 0, 0))
    draw.text((cx, cy - BULLSEYE_RADIUS - 22), b.title, fill=WHITE, font=_font(18), anchor="mm")
    draw.text((cx, cy + BULLSEYE_RADIUS + 16), f"colour {b.low:.{b.decimals}f} to {b.high:.{b.decimals}f}; "
              f"- {b.missing}", fill=GREY, font=_font(13), anchor="mm")


def render(summary: StudySummary) -> np.ndarray:
    """(HEIGHT, WIDTH, 3) uint8: the summary page."""
    canvas = Image.new("RGB", (WIDTH, HEIGHT), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((20, 14), summary.heading, fill=WHITE, font=_font(24))
    y = 60
    if summary.bullseyes:
        step = WIDTH // len(summary.bullseyes)
        radius = min(BULLSEYE_RADIUS, step // 2 - 12)     # four or more side by side get smaller
        for k, b in enumerate(summary.bullseyes):
            draw_bullseye(draw, (step * k + step // 2, y + 40 + BULLSEYE_RADIUS), b, radius)
        draw.text((20, y + 2 * BULLSEYE_RADIUS + 80), "AHA segments seen from the apex: anterior at the top, "
                  "septum on the left; basal outside, apical inside", fill=GREY, font=_font(13))
        y += 2 * BULLSEYE_RADIUS + 110
    else:
        draw.text((20, y), "No AHA segments in the study's reports", fill=GREY, font=_font(16))
        y += 36
    for label, x in (("", 20), ("value", 460), ("reference", 640), ("", 820)):
        draw.text((x, y), label, fill=GREY, font=_font(14))
    y += 22
    for n in summary.numbers:
        value = n.missing if n.value is None else f"{n.value:g} {n.unit}"
        reference = f"{n.reference[0]:g}-{n.reference[1]:g} {n.unit}" if n.reference else ""
        colour = AMBER if n.outside() else WHITE
        draw.text((20, y), n.label, fill=WHITE, font=_font(16))
        draw.text((460, y), value, fill=colour, font=_font(16))
        draw.text((640, y), reference, fill=GREY, font=_font(16))
        draw.text((820, y), " ".join(filter(None, [n.outside(), n.note])), fill=colour, font=_font(14))
        y += 24
    y += 10
    draw.text((20, y), "Quality control", fill=WHITE, font=_font(18))
    y += 26
    for line in summary.findings or ["no quality finding"]:
        draw.text((30, y), f"- {line}"[:150], fill=AMBER if summary.findings else WHITE, font=_font(14))
        y += 20
    draw.text((20, HEIGHT - 64), "From: " + "; ".join(summary.sources)[:170], fill=GREY, font=_font(13))
    draw.text((20, HEIGHT - 44), summary.software, fill=GREY, font=_font(13))
    draw.text((20, HEIGHT - 24), summary.disclaimer, fill=AMBER, font=_font(16))
    return np.asarray(canvas)


def page_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def summary_image(pixels: np.ndarray, reference: Dataset, *, job_key: str, series_number: int,
                  description: str, summary: StudySummary) -> hd.sc.SCImage:
    """The page as an RGB Secondary Capture of the reference's study (patient and study copied from it)."""
    sc = hd.sc.SCImage.from_ref_dataset(
        complete_type2(reference), pixels, "RGB", 8, "PATIENT",
        series_instance_uid=derived_uid(job_key, "summary", "series"), series_number=series_number,
        sop_instance_uid=derived_uid(job_key, "summary", "sc"), instance_number=1, manufacturer=MANUFACTURER,
        patient_orientation=("L", "P"), transfer_syntax_uid=ExplicitVRLittleEndian)
    sc.SeriesDescription = description
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES"
    sc.BodyPartExamined = "HEART"   # an unpaired organ: General Series Laterality (2C) is then not required
    sc.DerivationDescription = f"Study summary by {MODEL_NAME} from its reports. {summary.disclaimer}"[:1024]
    sc.ImageComments = summary.disclaimer[:10240]
    sc.SoftwareVersions = summary.software[:64]
    return sc


def summary_pdf(pixels: np.ndarray, reference: Dataset, *, job_key: str, series_number: int, description: str,
                summary: StudySummary) -> Dataset:
    """The page as an Encapsulated PDF (PS3.3 A.45.1), patient and study copied from the reference."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PDF", resolution=100.0)
    document = buffer.getvalue()
    ds = Dataset()
    reference = complete_type2(reference)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "SpecificCharacterSet"):
        if keyword in reference:
            setattr(ds, keyword, reference[keyword].value)
    now = datetime.now()
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SOPInstanceUID = derived_uid(job_key, "summary", "pdf")
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = derived_uid(job_key, "summary", "pdf-series")
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = summary.software[:64]
    ds.ConversionType = "WSD"          # workstation
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = "CMR quantitative summary"
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = document + (b"\0" if len(document) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(document)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds
