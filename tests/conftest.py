"""Shared fixtures: a real Orthanc as PACS, DCMTK as the scanner, dciodvfy as the validator."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pynetdicom import _config as pynetdicom_config

from dicom_out.phantom_studies import write_ecv_study
from node.config import parse_config
from node.demo.local_pacs import Orthanc, free_port
from node.service import Node

PM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.30"
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"


SYSTEM_BIN = "/usr/bin:/usr/sbin:/bin:/sbin:/usr/local/bin"

# the unit tests (`pytest -m "not integration"`) start no real external program: tests/unit_guard.py
pytest_plugins = ["tests.unit_guard"]


def require_tool(name: str) -> str:
    """The system's tool (Debian's DCMTK, Orthanc, dicom3tools, dcm2niix), never a namesake in the virtual
    environment: pynetdicom installs its own storescu and storescp there."""
    path = shutil.which(name, path=SYSTEM_BIN)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make test`, which installs dcmtk, orthanc and dicom3tools")
    return path


# what the node sends for one ECV study: the ECV route's map, regions SEG, AHA segments SEG, report and the
# map's grayscale view, then the summary route's page
ECV_OUTPUTS = 6
ECV_STUDY_JOBS = 2      # ecv, then summary


def dciodvfy_errors(path: Path) -> list[str]:
    """Lines dciodvfy reports as errors for a file (empty list = valid). A file dciodvfy cannot read
    (Abort) or a non-zero exit without an Error line is an error too."""
    if not Path(path).is_file():
        return [f"no such file: {path}"]
    result = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("Error", "Abort"))]
    if result.returncode != 0 and not errors:
        errors.append(f"dciodvfy exit code {result.returncode}")
    return errors


def sr_groups(path: Path) -> dict[str, dict]:
    """Measurement groups of a TID 1500 SR read back with highdicom: label -> {(code, derivation): (value, unit)}."""
    import highdicom as hd
    content = hd.sr.srread(path).content
    groups = list(content.get_volumetric_roi_measurement_groups()) + list(content.get_image_measurement_groups()) \
        + list(content.get_planar_roi_measurement_groups())
    found = {}
    for g in groups:
        found[g.tracking_identifier] = {
            (m.name.value, m.name.scheme_designator, m.derivation.meaning if m.derivation else None):
            (m.value, m.unit.value) for m in g.get_measurements()}
    return found


def assert_report_matches(sr_path: Path, measurements: list[dict]) -> None:
    """Every number of results.json's measurements is in the SR with the same code and unit."""
    found = sr_groups(sr_path)
    assert set(found) == {g["region"] for g in measurements}
    for g in measurements:
        for m in g["measurements"]:
            key = (m["name"]["value"], m["name"]["scheme"], m["derivation"])
            value, unit = found[g["region"]][key]
            assert unit == m["unit"], (g["region"], key)
            assert abs(value - m["value"]) <= 1e-6 * max(1.0, abs(m["value"])), (g["region"], key)


def storescu(port: int, files: list[Path], calling_ae: str = "SCANNER", called_ae: str = "CMRNODE",
             extra: list[str] | None = None) -> subprocess.CompletedProcess:
    """Push files with DCMTK storescu, as a scanner would."""
    cmd = [require_tool("storescu"), "-aet", calling_ae, "-aec", called_ae, *(extra or []),
           "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def serve_process(toml: Path, log_level: str = "INFO") -> subprocess.Popen:
    """`cmr-node serve` in its own process group (a test may SIGKILL it with its workers); its JSON log, and
    its worker processes', goes to node.log beside the configuration, appended across restarts."""
    with open(toml.with_name("node.log"), "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "node.cli", "--log-level", log_level, "--log-format", "json",
                                 "serve", "--config", str(toml)],
                                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)


def node_log(toml: Path) -> list[dict]:
    """The lines serve_process's node wrote, each of which must be a JSON object."""
    return [json.loads(line) for line in toml.with_name("node.log").read_text().splitlines()]


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def node_config_dict(data_dir: Path, destinations: list[dict] | None = None, **sections) -> dict:
    """A fast-completing configuration for tests; sections override whole tables."""
    config = {
        "node": {"ae_title": "CMRNODE", "host": "127.0.0.1", "port": free_port(), "data_dir": str(data_dir),
                 "min_free_mb": 10},
        "completion": {"series_quiet_seconds": 1, "study_quiet_seconds": 2, "sweep_interval_seconds": 0.3},
        "dispatch": {"retry_base_seconds": 0.5, "retry_max_seconds": 2, "interval_seconds": 0.3,
                     "max_attempts": 50},
        "destinations": destinations or [],
        "routes": [{"name": "ecv", "series_description": "(?i)moco_t1", "module": "ecv",
                    "destinations": [d["name"] for d in destinations or []]},
                   {"name": "summary", "module": "summary", "kinds": ["report", "t1_map"], "requires": ["report"],
                    "last": True, "destinations": [d["name"] for d in destinations or []]}],
    }
    config.update(sections)
    return config


def orthanc_destination(orthanc: Orthanc) -> dict:
    return {"name": "orthanc", "host": "127.0.0.1", "port": orthanc.dicom_port, "ae_title": orthanc.ae_title}


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    require_tool("Orthanc")
    server = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of the test session's own (tests/local_postgres.py)."""
    from tests import local_postgres
    if not local_postgres.available():
        pytest.fail("PostgreSQL is not installed: run `make test`, which installs Debian's postgresql")
    server = local_postgres.PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture()
def fresh_orthanc(tmp_path):
    """An Orthanc of the test's own, for tests that stop and restart the PACS."""
    require_tool("Orthanc")
    server = Orthanc(tmp_path / "orthanc").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ecv_study(tmp_path_factory):
    """(SyntheticStudy, EcvPhantom, files) of the ECV phantom, written as scanner T1 maps."""
    return write_ecv_study(tmp_path_factory.mktemp("scanner"))


@pytest.fixture()
def chunked_send(monkeypatch):
    """pynetdicom streams files from disk as their bytes are, without decoding them first."""
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)


@pytest.fixture()
def make_node(tmp_path):
    """Factory for in-process nodes; every node is stopped at the end of the test."""
    nodes = []

    def factory(config_dict: dict) -> Node:
        node = Node(parse_config(config_dict))
        node.start()
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        node.stop()


def _toml_value(value) -> str:
    if isinstance(value, str):
        return "'" + value + "'" if "'" not in value else '"' + value.replace("\\", "\\\\") + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def write_toml(config: dict, path: Path) -> Path:
    """Write a node configuration dict as TOML (tables and arrays of tables only)."""
    lines = []
    for section, body in config.items():
        tables = body if isinstance(body, list) else [body]
        for table in tables:
            lines.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
            lines.append("")
    path.write_text("\n".join(lines))
    return path
