"""What the DICOM listener does with what it receives: who may associate, the checks, the file and the index.

An instance is answered with Success only after its file is on disk (fdatasync, rename, directory fsync) and
its row is committed to the index (not flushed: index_unindexed_files restores rows a power cut took). The
encoded dataset is written as received: pixel data is never decoded on the receive path. The protocol itself
is node/receive/association.py; the sockets and threads node/receive/listener.py.
"""
from __future__ import annotations

import ipaddress
import logging
import shutil
import sqlite3
import ssl
import threading
from dataclasses import dataclass, fields
from io import BytesIO
from typing import TYPE_CHECKING, Callable

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import Tag
from pydicom.uid import UID
from pynetdicom.presentation import build_context

from node.network import status
from node.store.audit import AuditLog
from node.store.index import Index, InstanceRecord
from node.network.sop_classes import IMAGE_SOP_CLASSES, STORAGE_SOP_CLASSES, accepted_transfer_syntaxes
from node.store.layout import Layout, is_valid_uid, quarantine, write_atomic
from node.receive.association import (REJECT_CALLING_AE, REJECT_NO_REASON, VERIFICATION, Acceptor,
                                     AcceptedAssociation, Peer, StoreRequest)
from node.receive.listener import ConnectionThreads, Listener
from node.receive.part10 import file_meta, file_meta_length

if TYPE_CHECKING:
    from node.config import Config

log = logging.getLogger("cmr_node.receive")

_HEADER_TAGS = {keyword: Tag(keyword) for keyword in (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SeriesDescription", "Modality",
    "AcquisitionDateTime", "AcquisitionDate", "AcquisitionTime", "ImageType", "Rows", "Columns", "NumberOfFrames",
    "SamplesPerPixel", "BitsAllocated")}
_PIXEL_TAGS = ["PixelData", "FloatPixelData", "DoubleFloatPixelData"]
# Pixel data is read lazily: its length and position are known, its bytes are not copied.
_DEFER_BYTES = 1024
UNDEFINED_LENGTH = 0xFFFFFFFF

# Far beyond any MR image or enhanced multi-frame object, far below what would exhaust memory downstream.
MAX_ROWS_COLUMNS = 16384
MAX_FRAMES = 10000
MAXIMUM_ASSOCIATIONS = 16


class RejectedInstance(Exception):
    def __init__(self, status_code: int, comment: str, keep: bool):
        super().__init__(comment)
        self.status_code = status_code
        self.comment = comment
        self.keep = keep  # quarantine the bytes for a person to look at


def _acquisition_datetime(ds: Dataset) -> str | None:
    if ds.get("AcquisitionDateTime"):
        return str(ds.AcquisitionDateTime)
    if ds.get("AcquisitionDate") and ds.get("AcquisitionTime"):
        return f"{ds.AcquisitionDate}{ds.AcquisitionTime}"
    return None


def _joined(value) -> str:
    """A multi-valued attribute as the backslash-separated text DICOM stores."""
    if value is None:
        return ""
    return "\\".join(str(v) for v in value) if not isinstance(value, str) and hasattr(value, "__iter__") else str(value)


def instance_record(ds: Dataset, path: str, size: int, transfer_syntax: str, calling_ae: str | None) -> InstanceRecord:
    """What the index keeps of an instance whose header passed read_header."""
    return InstanceRecord(
        sop_instance_uid=str(ds.SOPInstanceUID), sop_class_uid=str(ds.get("SOPClassUID", "")),
        study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
        series_description=str(ds.get("SeriesDescription", "")), modality=ds.get("Modality"),
        path=path, size=size, transfer_syntax=str(transfer_syntax),
        acquisition_datetime=_acquisition_datetime(ds), calling_ae=calling_ae,
        image_type=_joined(ds.get("ImageType")))


def store_instance(layout: Layout, index: Index, raw: bytes, ds: Dataset, transfer_syntax: str,
                   calling_ae: str | None) -> InstanceRecord:
    """Write an encoded instance atomically under incoming/ and index it."""
    path = layout.instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    write_atomic(path, raw, layout.tmp)
    record = instance_record(ds, str(path), len(raw), transfer_syntax, calling_ae)
    index.record_instance(record)
    log.debug("stored %s (series %s, %d bytes)", record.sop_instance_uid, record.series_uid, record.size)
    return record


SELF_AE = "CMRNODE-SELF"   # calling AE recorded for instances the node made and took back in


def read_part10_header(raw: bytes) -> tuple[Dataset, str]:
    """(checked header, transfer syntax) of an encoded DICOM file, with read_header's checks."""
    try:
        meta = pydicom.dcmread(BytesIO(raw), stop_before_pixels=True,
                               specific_tags=["SOPClassUID", "SOPInstanceUID"])
    except Exception as exc:  # pydicom raises many types on broken input
        raise RejectedInstance(status.CANNOT_UNDERSTAND, f"not a DICOM file: {type(exc).__name__}", keep=True)
    ds = read_header(raw, str(meta.get("SOPClassUID", "")), str(meta.get("SOPInstanceUID", "")))
    return ds, str(meta.file_meta.get("TransferSyntaxUID", ""))


def read_file_header(path) -> tuple[bytes, Dataset, str]:
    """(bytes, checked header, transfer syntax) of a DICOM file on disk, with read_header's checks."""
    raw = path.read_bytes()
    ds, transfer_syntax = read_part10_header(raw)
    return raw, ds, transfer_syntax


def ingest_file(layout: Layout, index: Index, path) -> InstanceRecord:
    """Store and index a DICOM file made by the node itself (re-ingest of derived inputs)."""
    raw, ds, transfer_syntax = read_file_header(path)
    return store_instance(layout, index, raw, ds, transfer_syntax, SELF_AE)


def _parse(raw: bytes, transfer_syntax: str | None) -> tuple[Dataset, UID | None]:
    """The data set of raw, read lazily, and its transfer syntax.

    With the transfer syntax of the presentation context, the data set is read from where the file meta the
    node packed (part10.py) ends, without parsing that meta again (0.2 ms of an image's CPU); a deflated one,
    or a file, is read by dcmread from its own meta."""
    if transfer_syntax is not None and not UID(transfer_syntax).is_deflated:
        syntax = UID(transfer_syntax)
        stream = BytesIO(raw)
        stream.seek(file_meta_length(raw))
        return read_dataset(stream, syntax.is_implicit_VR, syntax.is_little_endian, defer_size=_DEFER_BYTES), syntax
    ds = pydicom.dcmread(BytesIO(raw), defer_size=_DEFER_BYTES)
    return ds, ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None


def index_unindexed_files(layout: Layout, index: Index) -> int:
    """Index the instance files in incoming/ that the index does not list; run at start, before the listener.

    The receive path flushes each instance's file and directory before Success but commits its index row
    without a flush (Index(flush_commits=False)): a power cut may take the last rows, never the files. Their
    time of receipt is the file's modification time, so retention and completion see them as they were."""
    known = index.instance_uids()
    indexed = 0
    for path in layout.incoming.glob("*/*/*.dcm"):
        if path.stem in known:
            continue
        try:
            raw, ds, transfer_syntax = read_file_header(path)
            if layout.instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) != path:
                raise ValueError("not where its UIDs place it")
            record = instance_record(ds, str(path), len(raw), transfer_syntax, calling_ae=None)
            index.record_instance(record, now=path.stat().st_mtime)
            indexed += 1
        except (RejectedInstance, OSError, ValueError) as exc:
            log.warning("file %s in incoming/ left unindexed: %s", path.name, exc)
    return indexed


def read_header(raw: bytes, affected_sop_class: str, affected_sop_instance: str,
                transfer_syntax: str | None = None) -> Dataset:
    """Parse the identifying attributes of an encoded instance; raise RejectedInstance when unusable.
    transfer_syntax: that of the association's presentation context, for a data set behind the node's own
    file meta (Receiver.store); otherwise it is read from the file meta."""
    try:
        ds, syntax = _parse(raw, transfer_syntax)
        _check_complete(ds, syntax, len(raw))
        # Touch every attribute now, so that a malformed value fails here and not later (by tag: a keyword
        # lookup costs as much again).
        values = {keyword: ds[tag].value if tag in ds else None for keyword, tag in _HEADER_TAGS.items()}
        _check_pixel_geometry(ds, syntax, values)
    except RejectedInstance:
        raise
    except Exception as exc:  # pydicom raises many types on broken input
        raise RejectedInstance(status.CANNOT_UNDERSTAND, f"not decodable: {type(exc).__name__}", keep=True)
    for tag in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not is_valid_uid(str(values[tag]) if values[tag] is not None else None):
            raise RejectedInstance(status.CANNOT_UNDERSTAND, f"missing or invalid {tag}", keep=True)
    if str(values["SOPInstanceUID"]) != affected_sop_instance:
        raise RejectedInstance(status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                               "SOPInstanceUID differs from the request", keep=True)
    if values["SOPClassUID"] is not None and str(values["SOPClassUID"]) != affected_sop_class:
        raise RejectedInstance(status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                               "SOPClassUID differs from the request", keep=True)
    return ds


def _check_complete(ds: Dataset, syntax: UID | None, available_bytes: int) -> None:
    """Reject a truncated stream: pydicom ends the dataset quietly where the bytes end, so compare every
    top-level element's declared length with what is there."""
    deflated = syntax is not None and syntax.is_deflated   # positions then refer to the inflated stream
    end = None
    # keep_deferred: Dataset.elements() would read a deferred (large) value, and a truncated one with it, into a
    # DataElement that no longer says how long it claimed to be
    for element in (ds.get_item(tag, keep_deferred=True) for tag in ds.keys()):
        if not isinstance(element, RawDataElement) or element.length == UNDEFINED_LENGTH:
            end = None    # pydicom itself fails on an undefined-length item cut short
            continue
        end = element.value_tell + element.length
        if element.value is not None:
            present = len(element.value)
        elif deflated:
            continue
        else:
            present = max(0, min(element.length, available_bytes - element.value_tell))
        if present != element.length:
            raise RejectedInstance(status.CANNOT_UNDERSTAND, f"truncated at element {element.tag}", keep=True)
    if end is not None and not deflated and end != available_bytes:
        raise RejectedInstance(status.CANNOT_UNDERSTAND, "truncated inside an element header", keep=True)


def _check_pixel_geometry(ds: Dataset, syntax: UID | None, values: dict) -> None:
    """Reject absurd image sizes, and native pixel data whose length does not match its declared geometry.

    Nothing downstream should ever try to allocate Rows x Columns x Frames from a header that lies.
    """
    rows, columns = values["Rows"], values["Columns"]
    frames = int(values["NumberOfFrames"] or 1)
    if rows is None and columns is None:
        if str(values["SOPClassUID"]) in IMAGE_SOP_CLASSES:
            raise RejectedInstance(status.CANNOT_UNDERSTAND, "image without Rows, Columns", keep=True)
        return
    if not (0 < int(rows or 0) <= MAX_ROWS_COLUMNS and 0 < int(columns or 0) <= MAX_ROWS_COLUMNS):
        raise RejectedInstance(status.CANNOT_UNDERSTAND, f"absurd image size {rows} x {columns}", keep=True)
    if not 0 < frames <= MAX_FRAMES:
        raise RejectedInstance(status.CANNOT_UNDERSTAND, f"absurd NumberOfFrames {frames}", keep=True)
    element = next((ds.get_item(tag, keep_deferred=True) for tag in _PIXEL_TAGS if tag in ds), None)
    if element is None:
        raise RejectedInstance(status.CANNOT_UNDERSTAND, "image without Pixel Data", keep=True)
    if syntax is None or syntax.is_compressed or syntax.is_deflated:
        return   # encapsulated frames have their own lengths; a deflated stream is checked once inflated
    length = element.length if isinstance(element, RawDataElement) else len(element.value or b"")
    bits = int(values["BitsAllocated"] or 0)
    expected_bits = int(rows) * int(columns) * int(values["SamplesPerPixel"] or 1) * frames * bits
    expected = (expected_bits + 7) // 8
    if bits == 0 or length not in (expected, expected + expected % 2):
        raise RejectedInstance(status.CANNOT_UNDERSTAND,
                               f"Pixel Data length {length} does not match {expected}", keep=True)


@dataclass
class ReceiveCounters:
    instances: int = 0
    bytes: int = 0
    rejected: int = 0
    associations: int = 0

    def add(self, other: "ReceiveCounters") -> None:
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def receiver_from_config(config: "Config", layout: Layout, index: Index, audit: AuditLog | None,
                         ssl_context: ssl.SSLContext | None, **options) -> "Receiver":
    """The Receiver the [node] settings describe (in the node's process or in a receive worker)."""
    node = config.node
    return Receiver(node.ae_title, layout, index, node.allowed_callers, node.allowed_networks,
                    node.min_free_mb * 1024 * 1024, audit, ssl_context, **options)


class Receiver:
    """The node's DICOM listener: who may associate, and what happens to each instance (the Services of
    node/receive/association.py)."""

    def __init__(self, ae_title: str, layout: Layout, index: Index, allowed_callers: tuple[str, ...] = (),
                 allowed_networks: tuple[str, ...] = (), min_free_bytes: float = 0.0, audit: AuditLog | None = None,
                 ssl_context: ssl.SSLContext | None = None, maximum_associations: int = MAXIMUM_ASSOCIATIONS,
                 on_closed: Callable[[], None] | None = None):
        self.ae_title = ae_title
        self.layout = layout
        self.index = index
        self.allowed_callers = tuple(caller.strip() for caller in allowed_callers)
        self.allowed_networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        self.min_free_bytes = min_free_bytes
        self.audit = audit
        self.counters = ReceiveCounters()
        self._counter_lock = threading.Lock()
        syntaxes = accepted_transfer_syntaxes()
        self.supported_contexts = [build_context(uid, syntaxes) for uid in STORAGE_SOP_CLASSES]
        self.supported_contexts.append(build_context(VERIFICATION))
        self.threads = ConnectionThreads(self._serve, maximum_associations, ssl_context, on_closed)
        self._listener = Listener(self.threads.run)

    def _serve(self, connection, address) -> None:
        Acceptor(connection, address, self.supported_contexts, self, self.threads).serve()

    # -- decisions (small and explicit) ----------------------------------------------------------
    def refusal(self, peer: Peer) -> tuple[int, int, int] | None:
        """Refuse a caller outside allowed_networks or allowed_callers (rejected-permanent)."""
        if self.allowed_networks and not any(ipaddress.ip_address(peer.address) in net
                                             for net in self.allowed_networks):
            reason = "address not in allowed_networks"
            rejection = REJECT_NO_REASON
        elif self.allowed_callers and peer.ae_title not in self.allowed_callers:
            reason = "calling AE title not in allowed_callers"
            rejection = REJECT_CALLING_AE
        else:
            return None
        with self._counter_lock:
            self.counters.rejected += 1
        log.warning("association rejected: calling AE %s at %s: %s", peer.ae_title, peer.address, reason)
        if self.audit:
            self.audit.record("association_refused", calling_ae=peer.ae_title, address=peer.address, reason=reason)
        return rejection

    def accepted(self, association: AcceptedAssociation) -> None:
        with self._counter_lock:
            self.counters.associations += 1
        peer = association.peer
        log.info("association accepted from AE %s at %s:%s", peer.ae_title, peer.address, peer.port)

    def ended(self, association: AcceptedAssociation, how: str) -> None:
        """Released or aborted: one audit line with what the association brought."""
        if self.audit:
            peer = association.peer
            self.audit.record("received", calling_ae=peer.ae_title, address=peer.address, **association.brought,
                              ended=how)

    def echo(self, association: AcceptedAssociation) -> int:
        return status.SUCCESS

    def store(self, association: AcceptedAssociation, request: StoreRequest) -> tuple[int, str | None]:
        """Success only once the instance is on disk and in the index; otherwise a failure status and why."""
        command, calling_ae = request.command, association.peer.ae_title
        if self.min_free_bytes and shutil.disk_usage(self.layout.root).free < self.min_free_bytes:
            log.error("refusing instance %s: free space in data_dir below min_free_mb", command.sop_instance_uid)
            self._count(association, None)
            return status.OUT_OF_RESOURCES, "disk nearly full"
        raw = b"".join([file_meta(command.sop_class_uid, command.sop_instance_uid, request.transfer_syntax),
                        *request.fragments])
        try:
            ds = read_header(raw, command.sop_class_uid, command.sop_instance_uid, request.transfer_syntax)
            record = store_instance(self.layout, self.index, raw, ds, request.transfer_syntax, calling_ae)
        except RejectedInstance as exc:
            self._count(association, None)
            return self._reject(exc, raw, calling_ae)
        except (OSError, sqlite3.Error) as exc:
            log.error("could not store instance %s: %s", command.sop_instance_uid, exc)
            self._count(association, None)
            return status.OUT_OF_RESOURCES, f"storage failed: {type(exc).__name__}"
        self._count(association, record)
        return status.SUCCESS, None

    # -- work ------------------------------------------------------------------------------------
    def _count(self, association: AcceptedAssociation, record: InstanceRecord | None) -> None:
        brought = association.brought
        with self._counter_lock:
            if record is None:
                brought["rejected"] += 1
                return
            brought["instances"] += 1
            brought["bytes"] += record.size
            brought["studies"][record.study_uid] = brought["studies"].get(record.study_uid, 0) + 1
            self.counters.instances += 1
            self.counters.bytes += record.size

    def _reject(self, exc: RejectedInstance, raw: bytes, calling_ae: str) -> tuple[int, str]:
        with self._counter_lock:
            self.counters.rejected += 1
        where = ""
        if exc.keep and raw:
            try:
                where = f", quarantined as {quarantine(self.layout, raw, exc.comment).name}"
            except OSError as write_error:
                where = f", not quarantined ({write_error})"
        log.warning("rejected instance from AE %s: %s (status 0x%04X)%s", calling_ae, exc.comment,
                    exc.status_code, where)
        return exc.status_code, exc.comment

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, host: str, port: int) -> None:
        self._listener.start(host, port)
        log.info("listening as AE %s on %s:%d%s", self.ae_title, host, self.port,
                 " (TLS only)" if self.threads.ssl_context else "")

    @property
    def port(self) -> int:
        return self._listener.port

    def serving(self) -> bool:
        """For /healthz: the listener accepts connections."""
        return self._listener.accepting()

    def stop(self) -> None:
        """Stop listening; associations in progress finish their current write first."""
        self._listener.stop()
        self.threads.stop()
