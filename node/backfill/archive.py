"""An archive (PACS) the node reads old studies from: find them, and bring their series to the node.

Two ways in, one interface:
- DICOM (PS3.4 Annex C): C-FIND at study and series level, C-MOVE of a series to the node's own AE title
  (the archive must know that AE title with the node's host and port); the instances arrive on the node's
  listener like a scanner's, each on disk and indexed before the archive hears Success.
- DICOMweb (PS3.18): QIDO-RS for the same queries, WADO-RS for a series as multipart/related
  application/dicom; the node stores each part through the same checks as a received instance.
"""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import date
from typing import Callable, Iterator

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (StudyRootQueryRetrieveInformationModelFind,  # type: ignore[attr-defined]
                                  StudyRootQueryRetrieveInformationModelMove)

from node.network import status
from node.settings import Source

log = logging.getLogger("cmr_node.backfill")

QIDO_PAGE = 100          # studies per QIDO-RS request (limit/offset paging, PS3.18 8.3.4.4)
HTTP_TIMEOUT_S = 300.0   # a WADO-RS series of a few hundred MR images over a slow link


class ArchiveError(Exception):
    """The archive did not answer as asked: unreachable, refused, or a failure status; the message says which."""


@dataclass(frozen=True)
class ArchiveSeries:
    series_uid: str
    modality: str
    description: str
    number: str
    manufacturer: str
    instances: int | None     # Number of Series Related Instances, when the archive gives it


@dataclass(frozen=True)
class ArchiveStudy:
    study_uid: str
    study_date: str           # YYYYMMDD as the archive has it ('' when it has none)


def date_range(since: date, until: date | None) -> str:
    """A DICOM date range (PS3.4 C.2.2.2.5): 'YYYYMMDD-' or 'YYYYMMDD-YYYYMMDD', both ends inclusive."""
    return f"{since:%Y%m%d}-" + (f"{until:%Y%m%d}" if until else "")


# ---- DICOM: C-FIND and C-MOVE ---------------------------------------------------------------------------
class DimseArchive:
    def __init__(self, source: Source, calling_ae: str, timeout_s: float = 600.0):
        self.source = source
        self.calling_ae = calling_ae
        self.timeout_s = timeout_s

    def _associate(self, model):
        ae = AE(ae_title=self.calling_ae)
        ae.add_requested_context(model)
        ae.acse_timeout = ae.network_timeout = 30
        ae.dimse_timeout = self.timeout_s
        assoc = ae.associate(self.source.host, self.source.port, ae_title=self.source.ae_title)
        if not assoc.is_established:
            raise ArchiveError(f"no association with archive {self.source.name} ({self.source.ae_title} at "
                               f"{self.source.host}:{self.source.port}): rejected, aborted or not reachable")
        return assoc

    def _find(self, query: Dataset) -> list[Dataset]:
        assoc = self._associate(StudyRootQueryRetrieveInformationModelFind)
        try:
            found = []
            for response, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
                code = int(response.get("Status", 0xFFFF)) if response else None
                if code in status.PENDING_STATUSES:
                    found.append(identifier)
                elif code != status.SUCCESS:
                    raise ArchiveError(f"C-FIND at {query.QueryRetrieveLevel} level: archive {self.source.name} "
                                       f"answered " + (f"status 0x{code:04X}" if code is not None else
                                                       "nothing (association aborted or timed out)"))
            return found
        finally:
            assoc.release()

    def studies(self, since: date, until: date | None) -> list[ArchiveStudy]:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        query.StudyDate = date_range(since, until)
        query.ModalitiesInStudy = ""   # asked for, not matched: many archives do not match on it (filtered below)
        studies = []
        for ds in self._find(query):
            modalities = ds.get("ModalitiesInStudy") or []
            modalities = [modalities] if isinstance(modalities, str) else list(modalities)
            if modalities and "MR" not in modalities:
                continue
            studies.append(ArchiveStudy(str(ds.StudyInstanceUID), str(ds.get("StudyDate", "") or "")))
        return studies

    def series(self, study_uid: str) -> list[ArchiveSeries]:
        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        query.StudyInstanceUID = study_uid
        for keyword in ("SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber", "Manufacturer",
                        "NumberOfSeriesRelatedInstances"):
            setattr(query, keyword, "")
        return [ArchiveSeries(str(ds.SeriesInstanceUID), str(ds.get("Modality", "") or ""),
                              str(ds.get("SeriesDescription", "") or ""), str(ds.get("SeriesNumber", "") or ""),
                              str(ds.get("Manufacturer", "") or ""), _count(ds.get("NumberOfSeriesRelatedInstances")))
                for ds in self._find(query)]

    def retrieve(self, study_uid: str, series_uid: str, destination_ae: str, store=None) -> int:
        """C-MOVE one series to destination_ae (the node); returns the instances moved. A sub-operation that
        failed (the node refused an instance, its disk full) or an archive failure raises ArchiveError."""
        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        query.StudyInstanceUID = study_uid
        query.SeriesInstanceUID = series_uid
        assoc = self._associate(StudyRootQueryRetrieveInformationModelMove)
        try:
            final = None
            for response, _ in assoc.send_c_move(query, destination_ae, StudyRootQueryRetrieveInformationModelMove):
                if response and int(response.get("Status", 0xFFFF)) not in status.PENDING_STATUSES:
                    final = response
        finally:
            assoc.release()
        if final is None:
            raise ArchiveError(f"C-MOVE of series {series_uid}: no final response (association aborted or timed out)")
        code, failed = int(final.Status), int(final.get("NumberOfFailedSuboperations", 0) or 0)
        completed = int(final.get("NumberOfCompletedSuboperations", 0) or 0)
        hint = (f"; does archive {self.source.name} know AE title {destination_ae!r} (with the node's host and "
                "port) as a move destination?")
        if code == status.MOVE_DESTINATION_UNKNOWN:
            raise ArchiveError(f"C-MOVE: archive {self.source.name} does not know AE title {destination_ae!r}; "
                               "add the node (AE title, host, port) to the archive's modalities")
        if code != status.SUCCESS or failed:
            # nothing moved and nothing failed: the archive did not even try (Orthanc answers 0xC000 so)
            raise ArchiveError(f"C-MOVE of series {series_uid}: status 0x{code:04X}, {failed} instance(s) failed"
                               + (hint if not (completed or failed) else ""))
        return completed


def _count(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ---- DICOMweb: QIDO-RS and WADO-RS ------------------------------------------------------------------------
def _tag_value(item: dict, tag: str) -> str:
    """The first value of a DICOM JSON attribute (PS3.18 F.2), '' when absent or empty."""
    values = (item.get(tag) or {}).get("Value") or [""]
    value = values[0]
    if isinstance(value, dict):   # a person name
        value = value.get("Alphabetic", "")
    return str(value)


def split_multipart(body: bytes, content_type: str) -> Iterator[bytes]:
    """The bodies of a multipart/related response (RFC 2387), bytes as they are."""
    params = dict(p.strip().split("=", 1) for p in content_type.split(";")[1:] if "=" in p)
    boundary = params.get("boundary", "").strip('"')
    if not boundary:
        raise ArchiveError(f"WADO-RS answered {content_type!r}, not multipart/related with a boundary")
    delimiter = b"\r\n--" + boundary.encode()    # the CRLF before the dashes is part of it (RFC 2046 5.1.1)
    for part in (b"\r\n" + body).split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        headers_end = part.find(b"\r\n\r\n")
        if headers_end < 0:
            raise ArchiveError("WADO-RS: a multipart part without headers")
        yield part[headers_end + 4:]


class DicomwebArchive:
    def __init__(self, source: Source):
        self.source = source
        self.root = str(source.dicomweb_url).rstrip("/")

    def _get(self, path: str, accept: str) -> tuple[bytes, str]:
        request = urllib.request.Request(self.root + path, headers={"Accept": accept})
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                return response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raise ArchiveError(f"DICOMweb {path.split('?')[0]}: archive {self.source.name} answered HTTP "
                               f"{exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ArchiveError(f"DICOMweb: archive {self.source.name} at {self.root} not reachable: "
                               f"{getattr(exc, 'reason', exc)}") from None

    def _qido(self, path: str, params: list[tuple[str, str]]) -> list[dict]:
        body, _ = self._get(path + "?" + urllib.parse.urlencode(params), "application/dicom+json")
        return json.loads(body) if body.strip() else []

    def studies(self, since: date, until: date | None) -> list[ArchiveStudy]:
        studies, offset = [], 0
        while True:
            page = self._qido("/studies", [("StudyDate", date_range(since, until)), ("includefield", "00080061"),
                                           ("limit", str(QIDO_PAGE)), ("offset", str(offset))])
            for item in page:
                modalities = (item.get("00080061") or {}).get("Value") or []
                if not modalities or "MR" in modalities:
                    studies.append(ArchiveStudy(_tag_value(item, "0020000D"), _tag_value(item, "00080020")))
            if not page:     # an archive may cap a page below the limit asked for: only an empty one ends it
                return studies
            offset += len(page)

    def series(self, study_uid: str) -> list[ArchiveSeries]:
        fields = [("includefield", tag) for tag in ("0008103E", "00200011", "00080070", "00201209")]
        return [ArchiveSeries(_tag_value(item, "0020000E"), _tag_value(item, "00080060"), _tag_value(item, "0008103E"),
                              _tag_value(item, "00200011"), _tag_value(item, "00080070"),
                              _count(_tag_value(item, "00201209")))
                for item in self._qido(f"/studies/{study_uid}/series", fields)]

    def retrieve(self, study_uid: str, series_uid: str, destination_ae: str,
                 store: Callable[[bytes], None] | None = None) -> int:
        """WADO-RS one series and store each instance with store(part10 bytes); returns the instances stored."""
        assert store is not None
        body, content_type = self._get(f"/studies/{study_uid}/series/{series_uid}",
                                       'multipart/related; type="application/dicom"; transfer-syntax=*')
        count = 0
        for part in split_multipart(body, content_type):
            store(part)
            count += 1
        return count


Archive = DimseArchive | DicomwebArchive


def open_archive(source: Source, calling_ae: str) -> Archive:
    return DicomwebArchive(source) if source.protocol == "dicomweb" else DimseArchive(source, calling_ae)
