"""The CMR registry: every TID 1500 report that reaches the node, as rows (node/registry/store.py).

Reports reach it two ways: the node's own (when a job finishes) and any SR a
scanner, workstation or other system sends (picked up from the index by
`RegistryFeeder.sweep`). Both are parsed from the SR file itself.
"""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from node.registry.parse import SR_SOP_CLASSES, NotAMeasurementReport, parse_report
from node.registry.store import Registry, RegistryError

log = logging.getLogger("cmr_node.registry")

__all__ = ["Registry", "RegistryError", "RegistryFeeder", "ingest_file", "open_registry", "SR_SOP_CLASSES"]


def _salt(salt: str | None, salt_file: Path) -> bytes:
    """The configured salt, else the node's own random one (created once, readable by the node only)."""
    if salt:
        return salt.encode()
    if not salt_file.exists():
        salt_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(salt_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return salt_file.read_text().strip().encode()


def open_registry(config) -> Registry:
    """The configured registry: PostgreSQL at `url`, else the SQLite file."""
    r = config.registry
    salt = _salt(r.salt, r.salt_file or config.node.data_dir / "registry.salt")
    if r.url:
        return Registry(r.url, salt)
    path = r.path or config.node.data_dir / "registry.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return Registry(path, salt)


def ingest_file(registry: Registry, path: Path) -> str:
    """Ingest one SR file: the store's status, or 'not ingested' (logged, remembered, never raised)."""
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError) as exc:
        log.warning("registry: %s is not readable DICOM (%s); not ingested", Path(path).name, type(exc).__name__)
        return "not ingested"
    uid = str(ds.get("SOPInstanceUID", "") or Path(path).stem)
    try:
        status = registry.ingest(parse_report(ds))
    except NotAMeasurementReport as exc:
        registry.reject(uid, str(exc))
        log.warning("registry: SR %s stored but not ingested: %s", uid, exc)
        return "not ingested"
    log.info("registry: SR %s %s", uid, status)
    return status


class RegistryFeeder:
    """Takes every SR in the node's index into the registry (run by the scheduler)."""

    def __init__(self, registry: Registry, index):
        self.registry = registry
        self.index = index

    def sweep(self) -> int:
        done = 0
        for row in self.index.instances_of_classes(list(SR_SOP_CLASSES) + ["1.2.840.10008.5.1.4.1.1.88.11",
                                                                           "1.2.840.10008.5.1.4.1.1.88.35"]):
            if self.registry.known(row["sop_instance_uid"]):
                continue
            try:
                ingest_file(self.registry, Path(row["path"]))
            except self.registry.errors as exc:
                log.error("registry: could not store SR %s: %s", row["sop_instance_uid"], exc)
                continue
            if not self.registry.known(row["sop_instance_uid"]):   # unreadable file: remember, do not retry forever
                self.registry.reject(row["sop_instance_uid"], "file not readable")
            done += 1
        return done
