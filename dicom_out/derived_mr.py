"""Derived MR images that look like a scanner's inline maps (MR Image Storage, uint16 with units in ms).

Every PACS viewer shows these, and cmr-node's own ECV and dDCE modules read them
exactly like a scanner's T1 map: the header is the source image's (patient,
study, frame of reference, geometry, sequence), with a new series, Image Type
DERIVED\\PRIMARY\\T1 MAP, Source Image Sequence and a Derivation Description.
"""
from __future__ import annotations

import copy

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_out.parametric_map import MANUFACTURER, MODEL_NAME

_DROP = ("PixelData", "SOPInstanceUID", "SeriesInstanceUID", "SmallestImagePixelValue", "LargestImagePixelValue",
         "SourceImageSequence", "DerivationDescription", "WindowCenterWidthExplanation", "ImageComments")


def _reference(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return item


def derived_map_images(values_ms: np.ndarray, sources: list[list[Dataset]], *, series_uid: str, sop_uids: list[str],
                       series_number: int, series_description: str, image_type_value3: str,
                       derivation: str, window: tuple[float, float], software_version: str,
                       rescale: tuple[float, float] = (1.0, 0.0)) -> list[Dataset]:
    """One image per slice: values_ms (slices, rows, cols); sources[i] are the images slice i came from.

    rescale: (slope, intercept) with value = stored * slope + intercept; window in values."""
    images = []
    for k, (plane, slice_sources) in enumerate(zip(values_ms, sources)):
        ds = copy.deepcopy(slice_sources[0])
        for keyword in _DROP:
            if keyword in ds:
                delattr(ds, keyword)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, sop_uids[k]
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesNumber, ds.InstanceNumber = series_number, k + 1
        ds.SeriesDescription = series_description[:64]
        ds.ImageType = ["DERIVED", "PRIMARY", image_type_value3]
        ds.DerivationDescription = derivation[:1024]
        ds.SourceImageSequence = [_reference(s) for s in slice_sources]
        ds.Manufacturer, ds.ManufacturerModelName = MANUFACTURER, MODEL_NAME
        ds.SoftwareVersions = software_version
        if "InversionTime" in ds:
            ds.InversionTime = None   # a map has no single inversion time (Type 2C: present, empty)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        slope, intercept = rescale
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{intercept:g}", f"{slope:g}", "US"
        ds.WindowCenter, ds.WindowWidth = window
        stored = np.clip(np.round((plane - intercept) / slope), 0, 65535).astype(np.uint16)
        ds.add_new(0x7FE00010, "OW", stored.tobytes())
        images.append(ds)
    return images
