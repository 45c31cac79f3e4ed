"""`cmr-node backfill`: an Orthanc archive's studies found (C-FIND / QIDO-RS), retrieved (C-MOVE / WADO-RS),
processed by the routes, the results sent into Orthanc and the registry; dry run, resume, nothing twice."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pydicom
import pytest

from dicom_out.phantom_studies import T2_DESCRIPTION, write_ecv_study, write_t2_map
from dicom_out.synthetic_mr import SyntheticStudy
from node.config import builtin_routes, parse_config
from node.demo.local_pacs import Orthanc, free_port
from node.registry import open_registry
from node.store.index import Index
from node.store.layout import Layout
from tests.conftest import node_config_dict, orthanc_destination, require_tool, write_toml

pytestmark = pytest.mark.integration

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"


def archive(directory: Path, node_port: int, dicomweb: bool = False) -> Orthanc:
    """An Orthanc archive that knows the node (AE title CMRNODE) as a C-MOVE destination."""
    require_tool("Orthanc")
    extra: dict = {"DicomModalities": {"cmrnode": ["CMRNODE", "127.0.0.1", node_port]}}
    plugins = []
    if dicomweb:
        if not DICOMWEB_PLUGIN.exists():
            pytest.fail(f"{DICOMWEB_PLUGIN} missing: run `make test`, which installs Debian's orthanc-dicomweb")
        plugins = [DICOMWEB_PLUGIN]
        extra["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
    return Orthanc(directory, plugins=plugins, extra=extra).start()


def upload(pacs: Orthanc, files: list[Path]) -> None:
    for path in files:
        pacs.post("/instances", Path(path).read_bytes())


def series_in(pacs: Orthanc, study_uid: str) -> list[dict]:
    """The archive's series of a study, with their main tags."""
    found = pacs.post("/tools/find", ('{"Level": "Series", "Expand": true, "Query": {"StudyInstanceUID": "%s"}}'
                                      % study_uid).encode())
    return [s["MainDicomTags"] for s in found]


def node_reports(files: list[Path], out: Path) -> list[Path]:
    """The reports cmr-node makes of a study (run offline): what an archive holds of a study processed before."""
    subprocess.run([sys.executable, "-m", "node.cli", "--log-level", "WARNING", "process", str(files[0].parents[1]),
                    "--out", str(out)], check=True, capture_output=True, timeout=300)
    return [p for p in out.rglob("*.dcm") if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SR"]


def backfill(toml: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    with open(toml.with_name("node.log"), "ab") as log:
        return subprocess.run([sys.executable, "-m", "node.cli", "--log-format", "json", "backfill", "--config",
                               str(toml), "--from", "archive", *args], stdout=subprocess.PIPE, stderr=log, text=True,
                              timeout=timeout)


def config_for(tmp_path: Path, pacs: Orthanc, node_port: int, protocol: str = "dimse") -> dict:
    config = node_config_dict(tmp_path / "data", destinations=[orthanc_destination(pacs)],
                              routes=builtin_routes(destinations=["orthanc"]))
    config["node"]["port"] = node_port
    source = {"name": "archive", "host": "127.0.0.1", "port": pacs.dicom_port, "ae_title": pacs.ae_title}
    if protocol == "dicomweb":
        source.update(protocol="dicomweb", dicomweb_url=f"{pacs.url}/dicom-web")
    config["sources"] = [source]
    return config


def test_backfill_over_dimse_dry_run_then_once_then_nothing_again(tmp_path):
    node_port = free_port()
    pacs = archive(tmp_path / "archive", node_port)
    try:
        wanted, _, wanted_files = write_ecv_study(tmp_path / "a")
        old, _, old_files = write_ecv_study(tmp_path / "b", SyntheticStudy(study_datetime=datetime(2019, 5, 2, 9)))
        done, _, done_files = write_ecv_study(tmp_path / "c")
        upload(pacs, wanted_files + old_files + done_files + node_reports(done_files, tmp_path / "c-results"))
        toml = write_toml(config_for(tmp_path, pacs, node_port), tmp_path / "node.toml")

        dry = backfill(toml, "--since", "2026-11-01", "--dry-run")
        assert dry.returncode == 0, dry.stdout
        lines = {line.split()[1].rstrip(":"): line for line in dry.stdout.splitlines() if line[:8].isdigit()}
        assert set(lines) == {wanted.study_uid, done.study_uid}        # 2019 lies before --since
        assert "retrieve MR #10 'MOLLI_pre_MOCO_T1'; MR #20 'MOLLI_post15min_MOCO_T1'" in lines[wanted.study_uid]
        assert "skip: the archive holds cmr-node results of it" in lines[done.study_uid]
        assert not Layout(tmp_path / "data").index_path.exists()         # a dry run changes nothing

        first = backfill(toml, "--since", "2026-11-01")
        assert first.returncode == 0, first.stdout
        assert "2 studies found, 1 processed, 0 failed, 1 skipped" in first.stdout
        index = Index(Layout(tmp_path / "data").index_path)
        assert {uid: row["state"] for uid, row in index.backfill_rows().items()} == {wanted.study_uid: "done"}
        jobs = [(j.route, j.state) for j in index.all_jobs()]
        assert sorted(jobs) == [("ecv", "done"), ("summary", "done")]
        # the results went into the archive and the registry
        outputs = [s for s in series_in(pacs, wanted.study_uid) if s.get("Manufacturer") == "cmr-node project"]
        assert {"ECV report (cmr-node)", "CMR summary (cmr-node)"} <= {s["SeriesDescription"] for s in outputs}
        assert not [s for s in series_in(pacs, old.study_uid) if s.get("Manufacturer") == "cmr-node project"]
        registry = open_registry(parse_config(config_for(tmp_path, pacs, node_port)))
        assert {r["study_uid"] for r in registry.rows()} == {wanted.study_uid}
        registry.close()

        again = backfill(toml, "--since", "2026-11-01")
        assert again.returncode == 0, again.stdout
        assert "2 studies found, 0 processed, 0 failed, 2 skipped" in again.stdout
        assert sorted((j.route, j.state) for j in index.all_jobs()) == sorted(jobs)   # nothing ran twice
        index.close()
    finally:
        pacs.stop()


def test_backfill_over_dicomweb_takes_only_the_series_asked_for(tmp_path):
    node_port = free_port()
    pacs = archive(tmp_path / "archive", node_port, dicomweb=True)
    try:
        study, phantom, files = write_ecv_study(tmp_path / "a")
        files += write_t2_map(tmp_path / "a", study, phantom.t1_pre_ms * 0 + 50.0, phantom.pixel_mm)
        upload(pacs, files)
        toml = write_toml(config_for(tmp_path, pacs, node_port, "dicomweb"), tmp_path / "node.toml")
        result = backfill(toml, "--since", "2026-11-24", "--until", "2026-11-24", "--series-description", "MOLLI")
        assert result.returncode == 0, result.stdout
        index = Index(Layout(tmp_path / "data").index_path)
        received = {row["series_description"] for row in index.all_series()}
        assert {"MOLLI_pre_MOCO_T1", "MOLLI_post15min_MOCO_T1"} <= received
        assert T2_DESCRIPTION not in received            # not asked for, never retrieved
        assert {r["calling_ae"] for r in index._query("SELECT calling_ae FROM instances WHERE series_uid IN "
                                                       "(SELECT series_uid FROM series WHERE series_description "
                                                       "LIKE 'MOLLI%')")} == {"WADO-RS:archive"}
        assert ("ecv", "done") in [(j.route, j.state) for j in index.all_jobs()]
        maps = [i for i in pacs.find_instances(PARAMETRIC_MAP)
                if pacs.instance_tags(i)["StudyInstanceUID"] == study.study_uid]
        assert len(maps) == 1, "the ECV map did not come back to the archive"
        index.close()
    finally:
        pacs.stop()


def test_an_archive_that_does_not_know_the_node_fails_the_study_and_says_why(tmp_path):
    node_port = free_port()
    # no DicomModalities: CMRNODE may query and ask for a move, but is no move destination
    pacs = Orthanc(tmp_path / "archive", extra={"DicomAlwaysAllowFind": True, "DicomAlwaysAllowMove": True}).start()
    try:
        study, _, files = write_ecv_study(tmp_path / "a")
        upload(pacs, files)
        toml = write_toml(config_for(tmp_path, pacs, node_port), tmp_path / "node.toml")
        result = backfill(toml, "--since", "2026-11-01", timeout=300)
        assert result.returncode == 1, result.stdout
        assert "1 studies found, 0 processed, 1 failed" in result.stdout
        index = Index(Layout(tmp_path / "data").index_path)
        row = index.backfill_rows()[study.study_uid]
        assert row["state"] == "failed" and "status 0xC000" in row["error"]
        assert "know AE title 'CMRNODE' (with the node's host and port) as a move destination" in row["error"]
        assert index.all_jobs() == []
        index.close()
    finally:
        pacs.stop()


def test_backfill_says_when_the_archive_is_down_and_exits_2(tmp_path):
    config = node_config_dict(tmp_path / "data")
    config["sources"] = [{"name": "archive", "host": "127.0.0.1", "port": free_port(), "ae_title": "NOBODY"}]
    toml = write_toml(config, tmp_path / "node.toml")
    result = backfill(toml, "--since", "2026-01-01", "--dry-run", timeout=120)
    assert result.returncode == 2
    assert "no association with archive archive" in result.stdout
