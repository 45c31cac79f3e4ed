"""The receive path's File Meta Information, packed directly (issue 15). The node's throughput itself is
measured in benchmarks/."""
from io import BytesIO

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info

from node.receive.part10 import IMPLEMENTATION_CLASS_UID, PREAMBLE, file_meta


@pytest.mark.parametrize("instance_uid, version", [("1.2.3.45", "CMR_1"), ("1.2.3.456", "CMR_10")])  # odd, even
def test_file_meta_is_what_pydicom_writes(monkeypatch, instance_uid, version):
    """Byte for byte the group pydicom's standard writer makes from the same elements (PS3.10 7.1): UIDs padded
    with a NUL, the version name (SH) with a space, the version (OB) in the long form."""
    from node.receive import part10
    monkeypatch.setattr(part10, "IMPLEMENTATION_VERSION_NAME", version)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = version
    expected = BytesIO()
    write_file_meta_info(expected, meta, enforce_standard=True)
    ours = file_meta("1.2.840.10008.5.1.4.1.1.4", instance_uid, "1.2.840.10008.1.2.1")
    assert ours == PREAMBLE + expected.getvalue()
    read = pydicom.dcmread(BytesIO(ours + b"\x08\x00\x18\x00UI\x08\x001.2.3.4\x00"), force=True)
    assert read.file_meta.MediaStorageSOPInstanceUID == instance_uid and read.SOPInstanceUID == "1.2.3.4"


# -- command sets (PS3.7 9.3.1, 9.3.5) ----------------------------------------------------------------------------
def _implicit(ds) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    return buffer.getvalue()


def _read_command(data: bytes):
    from pydicom.filebase import DicomBytesIO
    return pydicom.dcmread(DicomBytesIO(data), force=True)


def test_a_c_store_rq_as_pydicom_writes_it_is_read():
    from pydicom.dataset import Dataset
    from node.receive.dimse import decode_command
    command = Dataset()
    command.AffectedSOPClassUID, command.CommandField, command.MessageID = "1.2.840.10008.5.1.4.1.1.4", 0x0001, 7
    command.Priority, command.CommandDataSetType, command.AffectedSOPInstanceUID = 0, 0x0000, "1.2.3.45"
    read = decode_command(_implicit(command))
    assert (read.field, read.message_id, read.sop_class_uid, read.sop_instance_uid, read.has_dataset) == \
        (0x0001, 7, "1.2.840.10008.5.1.4.1.1.4", "1.2.3.45", True)
    command.CommandDataSetType = 0x0101          # "no data set" (PS3.7 E.1-1)
    assert not decode_command(_implicit(command)).has_dataset


@pytest.mark.parametrize("cut", [3, 9, 25])
def test_a_command_set_cut_short_is_refused(cut):
    from pydicom.dataset import Dataset
    from node.receive.dimse import MalformedCommand, decode_command
    command = Dataset()
    command.CommandField, command.MessageID, command.CommandDataSetType = 0x0030, 1, 0x0101
    with pytest.raises(MalformedCommand):
        decode_command(_implicit(command)[:cut])


@pytest.mark.parametrize("comment", [None, "disk nearly full", "x" * 80])
def test_c_store_rsp_is_what_the_standard_lists(comment):
    """C-STORE-RSP (PS3.7 Table 9.3-2): Command Field 8001H, the request's Message ID, no data set (0101H), the
    status, the instance UID; the group length counts the rest; an Error Comment is LO (64 characters)."""
    from node.receive.dimse import Command, encode_response
    request = Command(0x0001, 513, "1.2.840.10008.5.1.4.1.1.4", "1.2.3.45", True)
    data = encode_response(request, 0xA700 if comment else 0x0000, comment)
    response = _read_command(data)
    assert response.CommandGroupLength == len(data) - 12
    assert (response.CommandField, response.MessageIDBeingRespondedTo, response.CommandDataSetType) == \
        (0x8001, 513, 0x0101)
    assert (response.AffectedSOPClassUID, response.AffectedSOPInstanceUID) == ("1.2.840.10008.5.1.4.1.1.4", "1.2.3.45")
    assert response.Status == (0xA700 if comment else 0)
    assert response.get("ErrorComment") == (comment[:64] if comment else None)


def test_c_echo_rsp_has_no_instance_uid():
    from node.receive.dimse import Command, encode_response
    response = _read_command(encode_response(Command(0x0030, 2, "1.2.840.10008.1.1", "", False), 0x0000))
    assert (response.CommandField, response.MessageIDBeingRespondedTo, response.Status) == (0x8030, 2, 0)
    assert "AffectedSOPInstanceUID" not in response


def test_a_response_is_cut_into_pdus_the_peer_accepts():
    """P-DATA-TF (PS3.8 9.3.5): no PDU longer than the peer's maximum; the last fragment says so (bit 1)."""
    import struct
    from node.receive.association import p_data_pdus
    command = bytes(range(200))
    pdus = p_data_pdus(3, command, max_pdu=64)
    assert all(len(pdu) - 6 <= 64 for pdu in pdus) and len(pdus) == 4
    pieces = []
    for k, pdu in enumerate(pdus):
        length, context, control = struct.unpack(">IBB", pdu[6:12])
        assert (context, control) == (3, 0x03 if k == len(pdus) - 1 else 0x01)
        pieces.append(pdu[12:12 + length - 2])
    assert b"".join(pieces) == command
    assert len(p_data_pdus(1, command, max_pdu=0)) == 1       # 0: no limit


# -- group commit ------------------------------------------------------------------------------------------------
def test_group_flush_covers_every_caller_with_a_flush_begun_after_it_and_shares_them():
    """Each caller returns only after a flush that started after it was called; callers that arrive during a
    flush share the next one instead of one each."""
    import threading
    import time
    from node.store.group_commit import GroupFlush
    group, flushes, lock = GroupFlush(), [], threading.Lock()

    def slow_flush(key):
        started = time.monotonic()
        time.sleep(0.02)
        with lock:
            flushes.append((started, time.monotonic()))

    calls = []

    def caller():
        called = time.monotonic()
        group.flush("wal", slow_flush)
        calls.append((called, time.monotonic()))

    threads = [threading.Thread(target=caller) for _ in range(12)]
    for thread in threads:
        thread.start()
        time.sleep(0.003)
    for thread in threads:
        thread.join()
    assert len(calls) == 12
    for called, returned in calls:
        assert any(called <= started and ended <= returned for started, ended in flushes), (called, returned)
    assert len(flushes) < 12


def test_group_flush_failure_reaches_its_caller_and_the_next_caller_flushes_again():
    from node.store.group_commit import GroupFlush
    group, attempts = GroupFlush(), []

    def failing_once(key):
        attempts.append(key)
        if len(attempts) == 1:
            raise OSError("disk gone")

    with pytest.raises(OSError):
        group.flush("dir", failing_once)
    group.flush("dir", failing_once)
    assert attempts == ["dir", "dir"]


def test_a_uid_that_is_not_ascii_makes_the_command_set_unreadable():
    """UIDs are ASCII digits and dots (PS3.5 9.1); replacing a byte would store a file under a name no one sent."""
    from pydicom.dataset import Dataset
    from node.receive.dimse import MalformedCommand, decode_command
    command = Dataset()
    command.AffectedSOPClassUID, command.CommandField, command.MessageID = "1.2.840.10008.5.1.4.1.1.4", 0x0001, 7
    command.Priority, command.CommandDataSetType, command.AffectedSOPInstanceUID = 0, 0x0000, "1.2.3.45"
    with pytest.raises(MalformedCommand):
        decode_command(_implicit(command).replace(b"1.2.3.45", b"1.2.\xe9.45"))
