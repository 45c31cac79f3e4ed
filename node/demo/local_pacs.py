"""Local PACS for the demo and the tests: a real Orthanc process, or a small built-in storage SCP.

Orthanc runs with a temporary configuration: loopback only, free ports, its
own storage folder, no plug-ins.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.presentation import build_context

from node.network.sop_classes import STORAGE_SOP_CLASSES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def orthanc_executable() -> str | None:
    return shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
                                             if Path(p).exists()), None)


class Orthanc:
    """An Orthanc server in a child process, with a REST client for what the tests need."""

    def __init__(self, directory: Path, ae_title: str = "ORTHANC", tls: dict | None = None,
                 plugins: list[Path] = (), extra: dict | None = None):
        self.directory = Path(directory)
        self.ae_title = ae_title
        self.tls = tls   # Orthanc's DicomTls* settings (certificate, key, trusted CAs), or None for plain DICOM
        self.plugins = [str(p) for p in plugins]   # shared libraries to load (e.g. Debian orthanc-webviewer's)
        self.extra = extra or {}                   # more configuration (a plugin's section)
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "cmr-node-test-pacs", "StorageDirectory": str(self.directory / "storage"),
            "IndexDirectory": str(self.directory / "storage"), "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port, "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True,
            "UnknownSopClassAccepted": True, "HttpServerEnabled": True, "DicomServerEnabled": True,
            "Plugins": self.plugins, "StableAge": 2, "LogExportedResources": False, **self.extra,
        }
        if self.tls:
            config.update({"DicomTlsEnabled": True, "DicomTlsRemoteCertificateRequired": True,
                           **{f"DicomTls{key}": str(value) for key, value in self.tls.items()}})
        path = self.directory / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self, timeout: float = 30.0) -> "Orthanc":
        executable = orthanc_executable()
        if executable is None:
            raise FileNotFoundError("Orthanc is not installed (Debian package 'orthanc')")
        config = self._write_config()
        log = open(self.directory / "orthanc.log", "ab")
        self.process = subprocess.Popen([executable, str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start; see {self.directory / 'orthanc.log'}")
            try:
                self.get("/system")
                return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("Orthanc did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            body = response.read()
        return json.loads(body) if response.headers.get_content_type() == "application/json" else body

    def post(self, path: str, body: bytes):
        request = urllib.request.Request(self.url + path, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def instances(self) -> list[str]:
        return self.get("/instances")

    def instance_tags(self, orthanc_id: str) -> dict:
        return self.get(f"/instances/{orthanc_id}/simplified-tags")

    def instance_file(self, orthanc_id: str) -> bytes:
        return self.get(f"/instances/{orthanc_id}/file")

    def find_instances(self, sop_class_uid: str) -> list[str]:
        return [i for i in self.instances() if self.instance_tags(i).get("SOPClassUID") == sop_class_uid]


class FolderStorageSCP:
    """A minimal storage SCP writing what it receives to a folder (the demo's PACS without Orthanc)."""

    def __init__(self, directory: Path, ae_title: str = "DEMOPACS"):
        self.directory = Path(directory)
        self.ae_title = ae_title
        self.dicom_port = free_port()
        self._server = None

    def _handle_store(self, event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        target = self.directory / f"{ds.SOPInstanceUID}.dcm"
        partial = target.with_suffix(".part")      # readers of the folder never see half a file
        ds.save_as(partial, enforce_file_format=True)
        os.replace(partial, target)
        return 0x0000

    def start(self) -> "FolderStorageSCP":
        self.directory.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = [build_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
                                 for uid in STORAGE_SOP_CLASSES]
        self._server = ae.start_server(("127.0.0.1", self.dicom_port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._handle_store)])
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server = None

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("*.dcm"))
