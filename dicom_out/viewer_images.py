"""Images any PACS viewer shows, made from a Parametric Map: grayscale and colour Secondary Captures, PNG previews.

Many viewers do not display Parametric Maps (float pixel data). For each map:
- grayscale: Secondary Capture, one image per slice, 16-bit with Rescale
  Slope/Intercept so the viewer reads values in the map's unit; window presets
  "map default" (the map's own window) and "full range";
- colour (optional): RGB Secondary Capture with the map in a perceptually
  uniform colour scale (viridis), a colour bar, the quantity, its unit and
  "NOT FOR DIAGNOSIS" burned in (Burned In Annotation YES);
- PNG: every slice side by side with the colour bar, for a person without a viewer.
All are DERIVED\\SECONDARY, reference the map they came from, and say so in
Derivation Description.
"""
from __future__ import annotations

import io
import math

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from dicom_out.descriptions import description_with_suffix
from dicom_out.parametric_map import MANUFACTURER
from dicom_out.uids import derived_uid

NOT_FOR_DIAGNOSIS = "Derived by cmr-node from a parametric map. Research use: NOT FOR DIAGNOSIS."
# viridis (van der Walt & Smith, matplotlib 2.0 default colour map), 9 stops, linearly interpolated
VIRIDIS = np.array([(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141), (39, 173, 129),
                    (92, 200, 99), (170, 220, 50), (253, 231, 37)], dtype=float)
SCALE = 3          # colour images are enlarged so the burned-in text stays legible
BAR_WIDTH = 130    # pixels right of the map for the colour bar and its labels


def describe(pm: Dataset) -> dict:
    """Label, unit, window and value range of a Parametric Map (from its real-world value mapping)."""
    shared = pm.SharedFunctionalGroupsSequence[0]
    mapping = shared.RealWorldValueMappingSequence[0]
    voi = shared.FrameVOILUTSequence[0]
    values = np.asarray(pm.pixel_array, dtype=float).reshape(-1, int(pm.Rows), int(pm.Columns))
    return {"label": str(mapping.LUTLabel), "unit": str(mapping.MeasurementUnitsCodeSequence[0].CodeValue),
            "center": float(voi.WindowCenter), "width": float(voi.WindowWidth), "values": values}


def _nice_slope(span: float) -> float:
    """A 1-2-5 step so that span fits in 60000 stored values."""
    raw = max(span, 1e-9) / 60000.0
    exponent = math.floor(math.log10(raw))
    return next(m * 10.0 ** exponent for m in (1, 2, 5, 10) if m * 10.0 ** exponent >= raw)


def _secondary_capture(pm: Dataset, pixels: np.ndarray, photometric: str, bits: int, kind: str, k: int,
                       description: str, series_offset: int) -> hd.sc.SCImage:
    sc = hd.sc.SCImage.from_ref_dataset(
        pm, pixels, photometric, bits, "PATIENT", series_instance_uid=derived_uid(str(pm.SOPInstanceUID), kind),
        series_number=int(pm.SeriesNumber) + series_offset, sop_instance_uid=derived_uid(str(pm.SOPInstanceUID), kind, k),
        instance_number=k + 1, manufacturer=MANUFACTURER, patient_orientation=("L", "P"),
        transfer_syntax_uid="1.2.840.10008.1.2.1")
    sc.SeriesDescription = description_with_suffix(description, "", pm)
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = f"{NOT_FOR_DIAGNOSIS} Map: {pm.SeriesDescription}, slice {k + 1}."
    sc.ImageComments = "NOT FOR DIAGNOSIS"
    sc.BodyPartExamined = "HEART"   # an unpaired organ: General Series Laterality (2C) is then not required
    reference = Dataset()
    reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = pm.SOPClassUID, pm.SOPInstanceUID
    reference.ReferencedFrameNumber = k + 1
    sc.SourceImageSequence = [reference]
    return sc


def grayscale_images(pm: Dataset, series_offset: int) -> list[Dataset]:
    """One 16-bit Secondary Capture per slice; stored * slope + intercept = value in the map's unit."""
    d = describe(pm)
    low, high = float(d["values"].min()), float(d["values"].max())
    slope = _nice_slope(high - low)
    images: list[Dataset] = []
    for k, plane in enumerate(d["values"]):
        stored = np.clip(np.round((plane - low) / slope), 0, 65535).astype(np.uint16)
        sc = _secondary_capture(pm, stored, "MONOCHROME2", 16, "gray", k, f"{pm.SeriesDescription} [view]", series_offset)
        sc.RescaleIntercept, sc.RescaleSlope, sc.RescaleType = f"{low:.6g}", f"{slope:.6g}", "US"
        sc.WindowCenter = [f"{d['center']:.6g}", f"{(low + high) / 2:.6g}"]
        sc.WindowWidth = [f"{d['width']:.6g}", f"{max(high - low, slope):.6g}"]
        sc.WindowCenterWidthExplanation = [f"{d['label']} default ({d['unit']})", "Full range"]
        sc.VOILUTFunction = "LINEAR_EXACT"   # windows on fractions are narrower than 1
        sc.BurnedInAnnotation = "NO"
        images.append(sc)
    return images


def viridis(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """RGB (uint8) of values on the viridis scale from low to high."""
    t = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0) * (len(VIRIDIS) - 1)
    i = np.minimum(np.floor(t).astype(int), len(VIRIDIS) - 2)
    f = (t - i)[..., None]
    return ((1 - f) * VIRIDIS[i] + f * VIRIDIS[i + 1]).round().astype(np.uint8)


def _font(size: int):
    return ImageFont.load_default(size=size)


def render(planes: np.ndarray, d: dict) -> np.ndarray:
    """(H, W, 3) uint8: the slices side by side in colour, with a labelled colour bar and the warning."""
    low, high = d["center"] - d["width"] / 2, d["center"] + d["width"] / 2
    # 0 marks background and failed fits in cmr-node maps: black, not the bottom of the scale
    tiles = [np.kron(np.where((p == 0)[..., None], 0, viridis(p, low, high)).astype(np.uint8),
                     np.ones((SCALE, SCALE, 1), dtype=np.uint8)) for p in planes]
    maps = np.concatenate(tiles, axis=1)
    h, w = maps.shape[:2]
    canvas = Image.new("RGB", (w + BAR_WIDTH, h + 24), (0, 0, 0))
    canvas.paste(Image.fromarray(maps), (0, 0))
    bar = viridis(np.linspace(high, low, h - 40)[:, None].repeat(24, axis=1), low, high)
    canvas.paste(Image.fromarray(bar), (w + 12, 20))
    draw = ImageDraw.Draw(canvas)
    draw.text((w + 12, 2), f"{d['label']} [{d['unit']}]", fill=(255, 255, 255), font=_font(13))
    for value, y in ((high, 20), ((low + high) / 2, 20 + (h - 40) // 2), (low, h - 21)):
        draw.text((w + 42, y - 7), f"{value:.4g}", fill=(255, 255, 255), font=_font(13))
    draw.text((4, h + 4), "DERIVED - NOT FOR DIAGNOSIS (cmr-node)", fill=(255, 210, 0), font=_font(14))
    return np.asarray(canvas)


def colour_images(pm: Dataset, series_offset: int) -> list[Dataset]:
    """One RGB Secondary Capture per slice with colour bar, unit and warning burned in."""
    d = describe(pm)
    images: list[Dataset] = []
    for k, plane in enumerate(d["values"]):
        sc = _secondary_capture(pm, render(plane[None], d), "RGB", 8, "colour", k,
                                f"{pm.SeriesDescription} [colour]", series_offset)
        sc.BurnedInAnnotation = "YES"
        images.append(sc)
    return images


def preview_png(pm: Dataset) -> bytes:
    """PNG of every slice of the map with its colour bar."""
    buffer = io.BytesIO()
    d = describe(pm)
    Image.fromarray(render(d["values"], d)).save(buffer, format="PNG")
    return buffer.getvalue()
