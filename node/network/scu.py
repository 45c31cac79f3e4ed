"""Storage SCU helpers shared by the dispatcher and the demo's scanner."""
from __future__ import annotations

import ssl
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association


def open_association(calling_ae: str, host: str, port: int, called_ae: str, sop_classes,
                     tls_context: ssl.SSLContext | None = None) -> Association:
    """Associate for storage of the given SOP classes, over TLS when tls_context is given (the peer's
    certificate must then name host); raise ConnectionError when not established."""
    ae = AE(ae_title=calling_ae)
    for sop_class in sorted(set(sop_classes)):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(host, port, ae_title=called_ae, tls_args=(tls_context, host) if tls_context else None)
    if not assoc.is_established:
        raise ConnectionError(f"no association with {called_ae} at {host}:{port} "
                              "(rejected, aborted or not reachable)")
    return assoc


def push_files(calling_ae: str, host: str, port: int, called_ae: str, paths: list[Path]) -> list[int]:
    """C-STORE every file over one association; return the status of each."""
    datasets = [pydicom.dcmread(p) for p in paths]
    assoc = open_association(calling_ae, host, port, called_ae, [str(ds.SOPClassUID) for ds in datasets])
    try:
        return [int(assoc.send_c_store(ds).get("Status", 0xFFFF)) for ds in datasets]
    finally:
        assoc.release()
