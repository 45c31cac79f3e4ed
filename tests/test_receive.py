"""The C-ECHO/C-STORE SCP against DCMTK and hand-made bad input."""
import subprocess
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, JPEGLosslessSV1, MRImageStorage

from node.network import status
from node.store.index import Index
from node.receive.receiver import RejectedInstance, read_header
from node.network.scu import open_association
from tests.conftest import node_config_dict, require_tool, storescu


def echo(port: int, calling_ae: str) -> int:
    return subprocess.run([require_tool("echoscu"), "-aet", calling_ae, "-aec", "CMRNODE", "127.0.0.1", str(port)],
                          capture_output=True, timeout=60).returncode


def send_raw_file(port: int, path: Path) -> int:
    """C-STORE a file exactly as its bytes are (pynetdicom reads only its meta header)."""
    ds_meta = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[]).file_meta
    assoc = open_association("SCANNER", "127.0.0.1", port, "CMRNODE", [ds_meta.MediaStorageSOPClassUID])
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        assoc.release()


def write_crafted(path: Path, sop_instance_uid: str, body: bytes) -> Path:
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = BytesIO()
    buffer.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(pydicom.filebase.DicomFileLike(buffer), meta, enforce_standard=True)
    path.write_bytes(buffer.getvalue() + body)
    return path


def encode_body(ds: Dataset) -> bytes:
    buffer = pydicom.filebase.DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    pydicom.filewriter.write_dataset(buffer, ds)
    return buffer.getvalue()



@pytest.mark.integration
def test_echo_and_store_with_storescu(tmp_path, make_node, ecv_study):
    _, _, files = ecv_study
    node = make_node(node_config_dict(tmp_path / "data"))
    assert echo(node.port, "SCANNER") == 0
    result = storescu(node.port, files)
    assert result.returncode == 0, result.stderr
    index = Index(node.layout.index_path)
    assert index.status()["instances"] == len(files)
    for f in files:
        ds = pydicom.dcmread(f)
        stored = pydicom.dcmread(node.layout.instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                                           ds.SOPInstanceUID))
        assert stored.PixelData == ds.PixelData
        # the file meta the node packed names this instance (node/receive/part10.py)
        assert (stored.file_meta.MediaStorageSOPClassUID, stored.file_meta.MediaStorageSOPInstanceUID) == \
            (ds.SOPClassUID, ds.SOPInstanceUID)
        assert stored.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    # a scanner re-sending the study is harmless
    assert storescu(node.port, files).returncode == 0
    assert index.status()["instances"] == len(files)
    assert list(node.layout.tmp.iterdir()) == []


@pytest.mark.integration
def test_unknown_caller_is_rejected(tmp_path, make_node, ecv_study):
    config = node_config_dict(tmp_path / "data")
    config["node"]["allowed_callers"] = ["SCANNER"]
    node = make_node(config)
    assert echo(node.port, "INTRUDER") != 0
    assert node.receiver.counters.rejected == 1
    assert echo(node.port, "SCANNER") == 0


@pytest.mark.integration
def test_compressed_input_is_stored_as_received(tmp_path, make_node, ecv_study):
    _, _, files = ecv_study
    compressed = tmp_path / "jpeg_lossless.dcm"
    subprocess.run([require_tool("dcmcjpeg"), "+e1", str(files[0]), str(compressed)], check=True, timeout=60)
    assert pydicom.dcmread(compressed).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    node = make_node(node_config_dict(tmp_path / "data"))
    result = storescu(node.port, [compressed], extra=["-xs"])  # propose JPEG lossless SV1
    assert result.returncode == 0, result.stderr
    ds = pydicom.dcmread(compressed)
    stored = pydicom.dcmread(node.layout.instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID))
    assert stored.file_meta.TransferSyntaxUID == JPEGLosslessSV1
    assert (stored.pixel_array == pydicom.dcmread(files[0]).pixel_array).all()


@pytest.mark.integration
def test_bad_input_gets_failure_status_and_is_quarantined(tmp_path, make_node, ecv_study, chunked_send):
    _, _, files = ecv_study
    node = make_node(node_config_dict(tmp_path / "data"))
    good = pydicom.dcmread(files[0])

    garbage = write_crafted(tmp_path / "garbage.dcm", "1.2.3.4.5", bytes(range(256)) * 20)
    assert send_raw_file(node.port, garbage) == status.CANNOT_UNDERSTAND

    no_uid = Dataset()
    no_uid.SOPClassUID = MRImageStorage
    no_uid.StudyInstanceUID, no_uid.SeriesInstanceUID = "1.2.3", "1.2.3.4"
    no_uid.PatientName = "SHOULD^NOTLOG"
    missing = write_crafted(tmp_path / "no_uid.dcm", "1.2.3.4.6", encode_body(no_uid))
    assert send_raw_file(node.port, missing) == status.CANNOT_UNDERSTAND

    mismatch = good.copy()
    mismatch.SOPInstanceUID = "1.2.3.4.7"
    other = write_crafted(tmp_path / "mismatch.dcm", "1.2.3.4.8", encode_body(mismatch))
    assert send_raw_file(node.port, other) == status.DATASET_DOES_NOT_MATCH_SOP_CLASS

    quarantined = sorted(node.layout.quarantine.glob("*.dcm"))
    assert len(quarantined) == 3
    assert all(q.with_suffix(".txt").read_text().strip() for q in quarantined)
    assert Index(node.layout.index_path).status()["instances"] == 0
    # the node keeps serving a well-formed sender
    assert storescu(node.port, files).returncode == 0
    assert Index(node.layout.index_path).status()["instances"] == len(files)


@pytest.mark.integration
def test_failed_write_is_out_of_resources_and_leaves_no_half_file(tmp_path, make_node, ecv_study):
    _, _, files = ecv_study
    node = make_node(node_config_dict(tmp_path / "data"))
    ds = pydicom.dcmread(files[0])
    blocker = node.layout.incoming / ds.StudyInstanceUID
    blocker.write_text("a file where the study folder should be")
    assoc = open_association("SCANNER", "127.0.0.1", node.port, "CMRNODE", [ds.SOPClassUID])
    try:
        response = assoc.send_c_store(ds)
        assert int(response.Status) == status.OUT_OF_RESOURCES
        assert "storage failed" in str(response.ErrorComment)
        assert list(node.layout.tmp.iterdir()) == []
        assert Index(node.layout.index_path).status()["instances"] == 0
        blocker.unlink()  # space/permissions come back: the scanner's retry succeeds
        assert int(assoc.send_c_store(ds).Status) == status.SUCCESS
    finally:
        assoc.release()
    assert Index(node.layout.index_path).status()["instances"] == 1


def test_every_cut_through_the_header_is_refused(ecv_study):
    """pydicom ends a dataset quietly where the bytes end; the receiver must notice every such cut."""
    _, _, files = ecv_study
    raw = files[0].read_bytes()
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    read_header(raw, ds.SOPClassUID, ds.SOPInstanceUID)      # the whole file is fine
    pixel_data_start = raw.rindex(b"\xe0\x7f\x10\x00")
    for cut in range(132, pixel_data_start + 20):
        with pytest.raises(RejectedInstance) as refused:
            read_header(raw[:cut], ds.SOPClassUID, ds.SOPInstanceUID)
        assert refused.value.status_code == status.CANNOT_UNDERSTAND, cut
    # as received: the data set behind the file meta the node packs, read with the context's transfer syntax
    from node.receive.part10 import file_meta, file_meta_length
    syntax = str(ds.file_meta.TransferSyntaxUID)
    received = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, syntax) + raw[file_meta_length(raw):]
    read_header(received, ds.SOPClassUID, ds.SOPInstanceUID, syntax)
    start = file_meta_length(received)
    for cut in range(start, start + pixel_data_start - file_meta_length(raw) + 20):
        with pytest.raises(RejectedInstance) as refused:
            read_header(received[:cut], ds.SOPClassUID, ds.SOPInstanceUID, syntax)
        assert refused.value.status_code == status.CANNOT_UNDERSTAND, cut


@pytest.mark.integration
def test_receive_workers_share_the_associations_and_their_counts(tmp_path, make_node, ecv_study):
    """Two associations open at once go to the two receive workers (the least busy first); each worker's
    instances and associations reach the node's counters (/metrics) when its association closes."""
    from tests.conftest import wait_until
    _, _, files = ecv_study
    config = node_config_dict(tmp_path / "data")
    config["routes"] = []
    config["node"]["receive_processes"] = 2
    node = make_node(config)
    first = open_association("SCANNER", "127.0.0.1", node.port, "CMRNODE", [MRImageStorage])
    second = open_association("SCANNER", "127.0.0.1", node.port, "CMRNODE", [MRImageStorage])
    try:
        assert sorted(worker.open for worker in node.receiver._workers) == [1, 1]
        assert first.send_c_store(pydicom.dcmread(files[0])).Status == status.SUCCESS
        assert second.send_c_store(pydicom.dcmread(files[1])).Status == status.SUCCESS
    finally:
        first.release()
        second.release()
    wait_until(lambda: node.receiver.counters.associations == 2, timeout=30, what="both workers' reports")
    assert node.receiver.counters.instances == 2
    assert [worker.counters.instances for worker in node.receiver._workers] == [1, 1]
    assert [worker.open for worker in node.receiver._workers] == [0, 0]
    assert node.index.status()["instances"] == 2
    # a worker that dies is replaced; what it counted stays counted, and the node keeps serving
    import os
    import signal
    os.kill(node.receiver._workers[0].process.pid, signal.SIGKILL)
    wait_until(lambda: node.receiver._workers[0].ready.is_set() and node.receiver._workers[0].alive
               and node.receiver._workers[0].process.pid is not None and node.receiver._workers[0].counters is None,
               timeout=60, what="a new receive worker")
    assert node.receiver.serving() and node.receiver.counters.instances == 2
    assert storescu(node.port, files).returncode == 0
    assert echo(node.port, "SCANNER") == 0


@pytest.mark.integration
def test_index_rows_a_power_cut_took_are_rebuilt_from_the_files_at_start(tmp_path, make_node):
    """The receive path commits index rows without a flush (the file and its directory are flushed before
    Success): a power cut may take the last rows, never the files. At start the node indexes every file in
    incoming/ that its index lacks, as received, at the time the file was written."""
    import os
    import sqlite3
    from dicom_out.phantom_studies import write_raw_molli_ecv_study
    _, _, files = write_raw_molli_ecv_study(tmp_path / "scanner")
    config = node_config_dict(tmp_path / "data")
    config["routes"] = []
    node = make_node(config)
    assert storescu(node.port, files).returncode == 0
    node.stop()
    columns = "sop_instance_uid, sop_class_uid, study_uid, series_uid, path, size, transfer_syntax"
    with sqlite3.connect(node.layout.index_path) as con:
        received = sorted(con.execute(f"SELECT {columns} FROM instances").fetchall())
        lost = [row[0] for row in received[::2]]                       # what the power cut took
        con.executemany("DELETE FROM instances WHERE sop_instance_uid=?", [(uid,) for uid in lost])
        con.execute("DELETE FROM series")
        con.execute("DELETE FROM studies")
    one = next(node.layout.incoming.rglob(f"{lost[0]}.dcm"))
    os.utime(one, (1_700_000_000, 1_700_000_000))
    again = make_node(config)
    with sqlite3.connect(again.layout.index_path) as con:
        assert sorted(con.execute(f"SELECT {columns} FROM instances").fetchall()) == received
        assert con.execute("SELECT received_at FROM instances WHERE sop_instance_uid=?", (lost[0],)).fetchone() == \
            (1_700_000_000,)
        assert con.execute("SELECT COUNT(*) FROM series").fetchone()[0] == len({row[3] for row in received
                                                                                if row[0] in lost})
