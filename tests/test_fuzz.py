"""Several hundred malformed inputs against a running node (`cmr-node serve`), while a scanner keeps sending.

Every bad input must end in a failure status or a closed association; nothing may land outside data_dir;
the node's memory stays bounded and a well-formed sender is served throughout.
"""
import json
import socket
import sqlite3
import struct
import threading
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.presentation import build_context
import pytest

from dicom_out.phantom_studies import write_ecv_study
from node.network import status
from tests.conftest import node_config_dict, node_log, serve_process, storescu, wait_until, write_toml

pytestmark = pytest.mark.integration     # `cmr-node serve` as a process, with DCMTK storescu

FAILURES = {status.CANNOT_UNDERSTAND, status.DATASET_DOES_NOT_MATCH_SOP_CLASS, status.OUT_OF_RESOURCES}
PEAK_MEMORY_LIMIT_MB = 300
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
RNG = np.random.default_rng(20261125)


# -- dataset-level inputs: (name, bytes of a DICOM file, may the node store it?) --------------------------------
def _file_bytes(ds: Dataset, sop_instance_uid: str = "1.2.826.0.1.3680043.9.7777.1") -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _image(rows=8, columns=8, frames=None, pixel_bytes=None, **attributes) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.9.7777.1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7777.2", "1.2.826.0.1.3680043.9.7777.3"
    ds.Modality, ds.SeriesDescription, ds.PatientName = "MR", "fuzz", "FUZZ^PATIENT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = rows, columns, 1, 16, 16, 15
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.PixelData = bytes(pixel_bytes if pixel_bytes is not None else 8 * 8 * 2)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def crafted_inputs() -> list[tuple[str, bytes, bool]]:
    bad_uids = ["", "1.2.abc", "1..2", ".1.2", "1.2.", "1." * 40 + "1", "../../../etc", "1.2/3", "1.2\x003",
                "/tmp/x", "..", "1.2.3.x"]
    cases = [(f"SOPInstanceUID {u!r}", _file_bytes(_image(SOPInstanceUID=u)), False) for u in bad_uids]
    cases += [(f"StudyInstanceUID {u!r}", _file_bytes(_image(StudyInstanceUID=u)), False) for u in bad_uids]
    cases += [(f"SeriesInstanceUID {u!r}", _file_bytes(_image(SeriesInstanceUID=u)), False) for u in bad_uids]
    no_uid = _image()
    del no_uid.SOPInstanceUID
    cases.append(("no SOPInstanceUID", _file_bytes(no_uid), False))
    cases += [
        ("65535 x 65535 x 100000 frames", _file_bytes(_image(rows=65535, columns=65535, frames=100000)), False),
        ("65535 x 65535", _file_bytes(_image(rows=65535, columns=65535)), False),
        ("8 x 8 x 1e6 frames", _file_bytes(_image(frames=1000000)), False),
        ("zero rows", _file_bytes(_image(rows=0)), False),
        ("pixel data too short", _file_bytes(_image(pixel_bytes=8 * 8 * 2 - 2)), False),
        ("pixel data too long", _file_bytes(_image(pixel_bytes=8 * 8 * 2 + 100)), False),
        ("pixel data for 1 of 3 frames", _file_bytes(_image(frames=3)), False),
        ("wrong SOP class", _file_bytes(_image(SOPClassUID="1.2.840.10008.5.1.4.1.1.7")), False),
    ]
    for description in ["../../../../etc/passwd", "a/b/c", "x\x00y", "..", "/"]:
        cases.append((f"description {description!r}", _file_bytes(_image(SeriesDescription=description)), True))
    good = _file_bytes(_image(SeriesDescription="fuzz-invalid-vr"))
    at = good.index(b"LO\x10\x00fuzz-invalid-vr ")
    cases.append(("invalid VR", good[:at] + b"ZZ" + good[at + 2:], False))
    cases.append(("odd huge element length", good[:at + 2] + b"\xff\x7f" + good[at + 4:], False))
    return cases


def _pixels(rows: int, columns: int, frames: int = 1) -> bytes:
    return bytes(rows * columns * frames * 2)


def check_inputs() -> list[tuple[str, bytes, int, str, str]]:
    """One otherwise valid input per receive check, which only that check refuses: (name, file bytes, status,
    error comment it starts with, SOP Class UID of the request)."""
    good = _image()
    # a report (no pixel data to check) whose last element is cut: only the truncation check sees it
    report = Dataset()
    report.SOPClassUID, report.SOPInstanceUID = BASIC_TEXT_SR, "1.2.826.0.1.3680043.9.7777.1"
    report.StudyInstanceUID, report.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7777.2", "1.2.826.0.1.3680043.9.7777.3"
    report.Modality, report.ImageComments = "SR", "x" * 4000
    return [
        ("Rows above 16384", _file_bytes(_image(rows=16385, columns=1, pixel_bytes=_pixels(16385, 1))),
         status.CANNOT_UNDERSTAND, "absurd image size", MRImageStorage),
        ("Columns above 16384", _file_bytes(_image(rows=1, columns=16385, pixel_bytes=_pixels(1, 16385))),
         status.CANNOT_UNDERSTAND, "absurd image size", MRImageStorage),
        ("10001 frames", _file_bytes(_image(rows=1, columns=1, frames=10001, pixel_bytes=_pixels(1, 1, 10001))),
         status.CANNOT_UNDERSTAND, "absurd NumberOfFrames", MRImageStorage),
        ("Pixel Data 2 bytes short", _file_bytes(_image(pixel_bytes=8 * 8 * 2 - 2)),
         status.CANNOT_UNDERSTAND, "Pixel Data length", MRImageStorage),
        ("no Pixel Data", _file_bytes(_without(good, "PixelData")), status.CANNOT_UNDERSTAND, "image without Pixel Data",
         MRImageStorage),
        ("truncated inside an element", _file_bytes(report)[:-1000], status.CANNOT_UNDERSTAND, "truncated",
         BASIC_TEXT_SR),
        ("SOP Class differs from the request", _file_bytes(_image(SOPClassUID="1.2.840.10008.5.1.4.1.1.7")),
         status.DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOPClassUID differs", MRImageStorage),
        ("invalid Study Instance UID", _file_bytes(_image(StudyInstanceUID="1.2.abc")), status.CANNOT_UNDERSTAND,
         "missing or invalid StudyInstanceUID", MRImageStorage),
    ]


def _without(ds: Dataset, keyword: str) -> Dataset:
    copy = Dataset(ds)
    delattr(copy, keyword)
    return copy


def mutated_inputs(good: bytes, flips: int, truncations: int) -> list[tuple[str, bytes, bool]]:
    """Byte flips after the file meta (which the sender itself must read) and truncations."""
    body_start = 132 + 12 + struct.unpack("<I", good[140:144])[0]
    cases = []
    for _ in range(flips):
        data = bytearray(good)
        for position in RNG.integers(body_start, len(good), size=int(RNG.integers(1, 4))):
            data[position] ^= int(RNG.integers(1, 256))
        cases.append(("flipped", bytes(data), True))     # a flip in pixel values is a valid image
    pixel_data_start = good.rindex(b"\xe0\x7f\x10\x00")
    # Half inside the header, where a cut can fall between elements and look like a shorter dataset.
    cuts = np.concatenate([RNG.integers(body_start, pixel_data_start, size=truncations // 2),
                           RNG.integers(pixel_data_start, len(good) - 1, size=truncations - truncations // 2)])
    for cut in cuts:
        cases.append((f"truncated at {cut}", good[:cut], False))
    return cases


def _command(sop_class: str, sop_instance: str, message_id: int) -> bytes:
    """A C-STORE-RQ command set, Implicit VR Little Endian, with its group length (PS3.7 9.3.1.1)."""
    command = Dataset()
    command.AffectedSOPClassUID, command.CommandField, command.MessageID = sop_class, 0x0001, message_id
    command.Priority, command.CommandDataSetType, command.AffectedSOPInstanceUID = 0, 0x0000, sop_instance
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, command)
    body = buffer.getvalue()
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body


def _pdata(payload: bytes, command: bool, last: bool) -> bytes:
    """One P-DATA-TF PDU with one PDV on presentation context 1 (PS3.8 9.3.5, E.2)."""
    control = (1 if command else 0) | (2 if last else 0)
    item = struct.pack(">IBB", len(payload) + 2, 1, control) + payload
    return _pdu(0x04, item)


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    header = _receive_exactly(sock, 6)
    if len(header) < 6:
        return -1, b""
    return header[0], _receive_exactly(sock, struct.unpack(">I", header[2:])[0])


def c_store_raw(port: int, body: bytes, message_id: int = 1, sop_class: str = MRImageStorage,
                sop_instance: str = "1.2.826.0.1.3680043.9.7777.1") -> tuple[int | None, str]:
    """C-STORE the dataset bytes exactly as given (no sender parses them: every case reaches the node).
    Returns (status, error comment), or (None, why) when the node aborted or closed the association."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(associate_rq(sop_class))
        kind, _ = _read_pdu(sock)
        assert kind == 0x02, f"association not accepted (PDU type {kind})"
        sock.sendall(_pdata(_command(sop_class, sop_instance, message_id), command=True, last=True))
        chunks = [body[i:i + 16000] for i in range(0, len(body), 16000)] or [b""]
        try:
            for k, chunk in enumerate(chunks):
                sock.sendall(_pdata(chunk, command=False, last=k == len(chunks) - 1))
        except OSError:
            return None, "closed while sending"
        kind, data = _read_pdu(sock)
        if kind != 0x04:
            return None, f"PDU type {kind}"
        response = dcmread(DicomBytesIO(data[6:]), force=True)     # PDV: length, context, control, command
        sock.sendall(_pdu(0x05, b"\x00" * 4))                      # A-RELEASE-RQ
        _read_pdu(sock)
        return int(response.Status), str(response.get("ErrorComment", ""))


def dataset_body(file_bytes: bytes) -> bytes:
    """The dataset of a DICOM file without preamble and file meta: what a C-STORE carries."""
    return file_bytes[132 + 12 + struct.unpack("<I", file_bytes[140:144])[0]:]


def send_dataset_cases(port: int, cases) -> list[tuple[str, int | None, str, bool]]:
    """C-STORE every case's dataset as it is; (name, status or None if aborted, error comment, may store)."""
    return [(name, *c_store_raw(port, dataset_body(data), message_id=number + 1), may_store)
            for number, (name, data, may_store) in enumerate(cases)]


# -- PDU-level inputs, each on its own TCP connection -------------------------------------------------------------
def associate_rq(sop_class: str = MRImageStorage) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title, primitive.called_ae_title = "SCANNER", "CMRNODE"
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    primitive.user_information = [length]
    context = build_context(sop_class, [ExplicitVRLittleEndian])
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def _pdu(pdu_type: int, body: bytes, declared: int | None = None) -> bytes:
    return struct.pack(">BBI", pdu_type, 0, len(body) if declared is None else declared) + body


def pdu_inputs(count_each: int) -> list[tuple[str, bytes, bool]]:
    """(name, bytes, associate first?) for raw-socket delivery."""
    rq = associate_rq()
    junk = lambda n: RNG.integers(0, 256, size=n, dtype=np.uint8).tobytes()   # noqa: E731
    cases = []
    for _ in range(count_each):
        cases.append(("random bytes", junk(int(RNG.integers(1, 3000))), False))
        cases.append(("truncated A-ASSOCIATE-RQ", rq[:int(RNG.integers(1, len(rq)))], False))
        declared = int(RNG.choice([0, 1, len(rq) - 7, len(rq) + 50, 0xFFFFFFFF]))
        cases.append((f"A-ASSOCIATE-RQ declaring {declared}", rq[:2] + struct.pack(">I", declared) + rq[6:], False))
        flipped = bytearray(rq)
        flipped[int(RNG.integers(0, len(rq)))] ^= int(RNG.integers(1, 256))
        cases.append(("flipped A-ASSOCIATE-RQ", bytes(flipped), False))
        cases.append(("P-DATA of junk", _pdu(0x04, junk(int(RNG.integers(0, 500)))), True))
        pdv = junk(int(RNG.integers(2, 300)))
        wrong_item = struct.pack(">I", len(pdv) + int(RNG.integers(1, 1 << 20))) + pdv
        cases.append(("P-DATA with wrong item length", _pdu(0x04, wrong_item), True))
        cases.append(("P-DATA declaring 4 GiB", _pdu(0x04, junk(100), declared=0xFFFFFFFF), True))
        cases.append(("unknown PDU type", _pdu(int(RNG.integers(8, 256)), junk(20)), True))
    return cases


def _receive_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count and (chunk := sock.recv(count - len(data))):
        data += chunk
    return data


def send_raw(port: int, data: bytes, associate_first: bool, timeout: float = 20.0) -> bytes:
    """Send bytes, half-close, and return whatever the node answers until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if associate_first:
            sock.sendall(associate_rq())
            header = _receive_exactly(sock, 6)
            assert header[:1] == b"\x02", ("association not accepted", header + sock.recv(64))
            _receive_exactly(sock, struct.unpack(">I", header[2:])[0])
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return b""          # the node closed first: fine
        answer = b""
        while chunk := sock.recv(65536):   # raises socket.timeout if the node keeps the connection open
            answer += chunk
        return answer


class GoodSender(threading.Thread):
    """A scanner that keeps sending a well-formed image with storescu while the fuzzing goes on."""

    def __init__(self, port: int, files: list[Path]):
        super().__init__(daemon=True)
        self.port, self.files, self.results = port, files, []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.results.append(storescu(self.port, self.files).returncode)
            self.stop.wait(0.3)


def _memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")



def test_malformed_input_is_refused_and_the_node_keeps_serving(tmp_path):
    _, _, scanner_files = write_ecv_study(tmp_path / "scanner")
    jail = tmp_path / "jail"
    data_dir = jail / "data"
    config = node_config_dict(data_dir)
    config["routes"] = []           # nothing to process: this test is about the receive path
    port = config["node"]["port"]
    node = serve_process(write_toml(config, tmp_path / "node.toml"))
    try:
        wait_until(lambda: storescu(port, scanner_files[:1]).returncode == 0, timeout=30, what="node up")
        good_sender = GoodSender(port, scanner_files[1:2])
        good_sender.start()

        for name, data, code, comment, sop_class in check_inputs():   # each receive check refuses its own case
            assert c_store_raw(port, dataset_body(data), sop_class=sop_class)[:1] == (code,), name
            assert c_store_raw(port, dataset_body(data), sop_class=sop_class)[1].startswith(comment), name
        dataset_cases = crafted_inputs() + mutated_inputs(scanner_files[0].read_bytes(), flips=120, truncations=80)
        outcomes = send_dataset_cases(port, dataset_cases)
        pdu_cases = pdu_inputs(count_each=15)
        for name, data, associate_first in pdu_cases:
            answer = send_raw(port, data, associate_first)
            # the node answers, if at all, with an association reject (0x03), accept (0x02) or abort (0x07)
            assert answer[:1] in (b"", b"\x02", b"\x03", b"\x07"), (name, answer[:16])

        good_sender.stop.set()
        good_sender.join(timeout=120)
        assert node.poll() is None, "the node died"
        assert len(good_sender.results) >= 3 and set(good_sender.results) == {0}, good_sender.results
        assert len(dataset_cases) + len(pdu_cases) >= 300

        # every case reached the node: a status, or an abort the node chose (never a sender that gave up)
        for name, code, comment, may_store in outcomes:
            assert code in FAILURES or (may_store and code == status.SUCCESS) or (code is None and "PDU" in comment), \
                (name, code, comment)
        stored = [name for name, code, _, _ in outcomes if code == status.SUCCESS]
        assert all(name.startswith(("description", "flipped")) for name in stored)
        assert sum(name.startswith("description") for name in stored) == 5

        # Nothing outside data_dir, and everything indexed lies inside it.
        assert [p.name for p in jail.iterdir()] == ["data"]
        root = data_dir.resolve()
        assert all(root in p.resolve().parents for p in data_dir.rglob("*"))
        with sqlite3.connect(data_dir / "index.sqlite") as con:
            paths = [r[0] for r in con.execute("SELECT path FROM instances")]
        assert all(root in Path(p).resolve().parents for p in paths)
        assert list((data_dir / "tmp").iterdir()) == []

        peak_mb = _memory_kb(node.pid, "VmHWM") / 1024
        print(f"fuzz: {len(dataset_cases) + len(pdu_cases)} inputs, node peak memory {peak_mb:.0f} MB")
        assert peak_mb < PEAK_MEMORY_LIMIT_MB, f"node peak memory {peak_mb:.0f} MB"
        assert storescu(port, scanner_files).returncode == 0     # and a whole study still goes through
        assert "FUZZ^PATIENT" not in json.dumps(node_log(tmp_path / "node.toml"))   # rejections name no patient
    finally:
        node.terminate()
        node.wait(timeout=60)
