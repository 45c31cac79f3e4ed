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
