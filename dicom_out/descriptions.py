"""Series Descriptions of output objects: cut by bytes in the character set, the node's suffix kept; and the
series' date.

Series Description is LO: at most 64 bytes as encoded (dciodvfy counts bytes; a UTF-8 description of 64
characters can be twice that). The routes of sites match on the suffix (_T1MAP_cmrnode), so it is the
source's part that is shortened.
"""
from __future__ import annotations

from pydicom.charset import convert_encodings, encode_string
from pydicom.dataset import Dataset

SERIES_DESCRIPTION_BYTES = 64


def description_with_suffix(base: str, suffix: str, source: Dataset | None = None) -> str:
    """base + suffix within 64 bytes (LO) in the source's character set: base is cut, the suffix kept."""
    encodings = convert_encodings((source.get("SpecificCharacterSet") if source is not None else None) or "ISO_IR 6")

    def size(text: str) -> int:
        return len(encode_string(text, encodings))
    keep = str(base).strip()
    while keep and size(keep + suffix) > SERIES_DESCRIPTION_BYTES:
        keep = keep[:-1]
    return keep + suffix if size(keep + suffix) <= SERIES_DESCRIPTION_BYTES else suffix[:SERIES_DESCRIPTION_BYTES]


def with_series_date(ds: Dataset) -> Dataset:
    """Series Date and Time (General Series, Type 3) where a builder left them out: the Content Date and Time,
    when the node made the series. Without them a PACS lists the node's series undated ("?" in Orthanc)."""
    if "SeriesDate" not in ds and ds.get("ContentDate"):
        ds.SeriesDate = ds.ContentDate
        if ds.get("ContentTime"):
            ds.SeriesTime = ds.ContentTime
    return ds
