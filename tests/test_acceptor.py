"""The node's DICOM acceptor (node/receive/association.py) against a raw socket: what PS3.8 and PS3.7 ask of it
where a well-behaved sender never goes. The Receiver runs in this process; the bytes are written by hand."""
import select
import socket
import threading
import time

import pytest
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.presentation import build_context

from node.network import status
from node.receive import association as acceptor
from node.receive.receiver import Receiver
from node.store.index import Index
from node.store.layout import Layout
from tests.test_fuzz import _command, _file_bytes, _image, _pdata, _pdu, _read_pdu, dataset_body

VERIFICATION = "1.2.840.10008.1.1"


@pytest.fixture
def receiver(tmp_path):
    layout = Layout(tmp_path / "data")
    layout.create()
    index = Index(layout.index_path)
    started = Receiver("CMRNODE", layout, index, maximum_associations=2)
    started.start("127.0.0.1", 0)
    yield started
    started.stop()
    index.close()


def associate_rq(sop_classes=(MRImageStorage,), max_pdu: int = 16384) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title, primitive.called_ae_title = "SCANNER", "CMRNODE"
    length = MaximumLengthNotification()
    length.maximum_length_received = max_pdu
    primitive.user_information = [length]
    contexts = []
    for number, sop_class in enumerate(sop_classes):
        context = build_context(sop_class, [ExplicitVRLittleEndian])
        context.context_id = 1 + 2 * number
        contexts.append(context)
    primitive.presentation_context_definition_list = contexts
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def associated(port: int, **kwargs) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(associate_rq(**kwargs))
    assert _read_pdu(sock)[0] == 0x02
    return sock


def _status(command_pdv: bytes) -> int:
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO
    return int(dcmread(DicomBytesIO(command_pdv), force=True).Status)


def test_a_command_set_with_a_uid_that_is_not_ascii_is_aborted_and_the_node_goes_on(receiver):
    with associated(receiver.port) as sock:
        command = _command(MRImageStorage, "1.2.3.4", 1).replace(b"1.2.3.4", b"1.2.\xff.4")
        sock.sendall(_pdata(command, command=True, last=True))
        assert _read_pdu(sock)[0] == 0x07                   # A-ABORT (PS3.8 9.3.8)
    with associated(receiver.port) as sock:                # and the next caller is served
        sock.sendall(_pdu(0x05, b"\x00" * 4))
        assert _read_pdu(sock)[0] == 0x06


def test_a_c_store_of_another_sop_class_than_its_context_is_refused(receiver):
    """C-STORE on the Verification context: 0122H SOP Class Not Supported (PS3.7 C.5.4), nothing stored."""
    data = dataset_body(_file_bytes(_image()))
    with associated(receiver.port, sop_classes=(VERIFICATION,)) as sock:
        sock.sendall(_pdata(_command(MRImageStorage, "1.2.826.0.1.3680043.9.7777.1", 1), command=True, last=True))
        sock.sendall(_pdata(data, command=False, last=True))
        kind, body = _read_pdu(sock)
        assert kind == 0x04 and _status(bytes(body[6:])) == status.SOP_CLASS_NOT_SUPPORTED
    assert receiver.index.status()["instances"] == 0


def test_answers_respect_the_callers_maximum_pdu_length(receiver):
    """No PDU to a caller longer than the maximum it announced (PS3.8 D.1); the fragments carry the command."""
    with associated(receiver.port, sop_classes=(VERIFICATION,), max_pdu=40) as sock:
        sock.sendall(_pdata(_echo_rq(5), command=True, last=True))
        pieces = []
        while True:
            kind, body = _read_pdu(sock)
            assert kind == 0x04 and len(body) <= 40
            pieces.append(bytes(body[6:]))
            if body[5] & 0x02:
                break
        assert len(pieces) > 1 and _status(b"".join(pieces)) == status.SUCCESS


def _echo_rq(message_id: int) -> bytes:
    from pydicom.dataset import Dataset
    from tests.test_receive_path import _implicit
    command = Dataset()
    command.AffectedSOPClassUID, command.CommandField, command.MessageID = VERIFICATION, 0x0030, message_id
    command.CommandDataSetType = 0x0101
    return _implicit(command)


def test_a_data_set_larger_than_the_limit_is_aborted(receiver, monkeypatch):
    monkeypatch.setattr(acceptor, "MAX_DATASET_BYTES", 100_000)
    with associated(receiver.port) as sock:
        sock.sendall(_pdata(_command(MRImageStorage, "1.2.3.4", 1), command=True, last=True))
        for _ in range(10):
            sock.sendall(_pdata(b"\x00" * 16000, command=False, last=False))
        assert _read_pdu(sock)[0] == 0x07


def test_a_request_trickled_in_is_cut_off_at_the_acse_timeout(receiver, monkeypatch):
    """The ARTIM timer runs from the connection to the whole A-ASSOCIATE-RQ (PS3.8 9.1.5), not per byte."""
    monkeypatch.setattr(acceptor, "ACSE_TIMEOUT_SECONDS", 1.0)
    request = associate_rq()
    started, closed_after = time.monotonic(), None
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
                time.sleep(0.3)
                if select.select([sock], [], [], 0)[0] and sock.recv(64) == b"":
                    closed_after = time.monotonic() - started
            except OSError:
                closed_after = time.monotonic() - started
            if closed_after is not None or time.monotonic() - started > 5:
                break
    assert closed_after is not None and closed_after < 2


def test_an_a_abort_before_the_request_is_not_answered(receiver):
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
        sock.sendall(_pdu(0x07, b"\x00\x00\x00\x00"))
        assert sock.recv(64) == b""                       # closed, nothing sent (PS3.8 9.2, AA-2)


def test_only_the_allowed_number_of_associations_are_served_at_once(receiver):
    """Maximum 2: of three callers at once, two are accepted and one rejected-transient (local limit); when an
    association ends its slot is free again."""
    answers, lock = [], threading.Lock()
    sockets = []

    def call():
        sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=10)
        sock.sendall(associate_rq())
        kind, body = _read_pdu(sock)
        with lock:
            answers.append((kind, bytes(body)))
            sockets.append(sock)

    callers = [threading.Thread(target=call) for _ in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert sorted(kind for kind, _ in answers) == [0x02, 0x02, 0x03]
    assert next(body for kind, body in answers if kind == 0x03)[1:] == bytes([0x02, 0x03, 0x02])
    for sock in sockets:
        sock.close()
    time.sleep(0.5)
    with associated(receiver.port) as sock:
        sock.sendall(_pdu(0x05, b"\x00" * 4))
        assert _read_pdu(sock)[0] == 0x06
