"""Scanner (DCMTK storescu) -> node -> real Orthanc, including outages and a crash."""
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pydicom

from analysis.phantoms import Region
from dicom_out.phantom_studies import write_ecv_study
from dicom_out.synthetic_mr import SyntheticStudy
from tests.conftest import (PM_SOP_CLASS, dciodvfy_errors, node_config_dict, node_log, orthanc_destination,
                            serve_process, storescu, wait_until, write_toml)


def maps_in_orthanc(orthanc, study_uid: str) -> list[str]:
    return [i for i in orthanc.find_instances(PM_SOP_CLASS)
            if orthanc.instance_tags(i).get("StudyInstanceUID") == study_uid]


def new_study(tmp_path):
    return write_ecv_study(tmp_path / "scanner", SyntheticStudy())


def cli(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_scanner_to_pacs(tmp_path, orthanc, make_node, caplog):
    caplog.set_level(logging.INFO)
    study, phantom, files = new_study(tmp_path)
    config = node_config_dict(tmp_path / "data", [orthanc_destination(orthanc)])
    node = make_node(config)
    assert storescu(node.port, files).returncode == 0
    found = wait_until(lambda: maps_in_orthanc(orthanc, study.study_uid), timeout=120, what="ECV map in Orthanc")
    assert len(found) == 1
    path = tmp_path / "from_orthanc.dcm"
    path.write_bytes(orthanc.instance_file(found[0]))
    assert dciodvfy_errors(path) == []
    ecv = pydicom.dcmread(path).pixel_array
    for region in (Region.REMOTE, Region.INFARCT):
        truth = phantom.truth_by_region[region.name.lower()] * 100
        assert abs(np.median(ecv[phantom.labels == region]) - truth) < 2.0
    # status command: everything accounted for
    toml = write_toml(config, tmp_path / "node.toml")
    wait_until(lambda: json.loads(cli("status", "--config", str(toml)).stdout)["outbox"]["orthanc"] == {"sent": 4},
               what="outbox marked sent (map, regions, report, view)")
    status = json.loads(cli("status", "--config", str(toml)).stdout)
    assert status["instances"] == len(files) and status["jobs"] == {"done": 1}
    # the phantom's numbers are in the registry, under a pseudonym
    rows = json.loads(cli("registry", "export", "--format", "json", "--config", str(toml)).stdout)
    ecv = {(r["region"], r["derivation"]): r["value"] for r in rows if r["concept_code"] == "ECV"}
    assert abs(ecv[("LV myocardium", "Median")] - phantom.truth_by_region["remote"] * 100) < 2.0
    assert {r["producer"] for r in rows} == {"cmr-node ecv"} and {r["study_uid"] for r in rows} == {study.study_uid}
    assert study.patient_id not in json.dumps(rows) and study.patient_name not in json.dumps(rows)
    # no patient data in the node's log lines
    text = caplog.text
    assert caplog.records and study.patient_name not in text and study.patient_id not in text
    assert study.patient_birth_date not in text


def test_results_queued_while_pacs_down_arrive_later(tmp_path, fresh_orthanc, make_node):
    study, _, files = new_study(tmp_path)
    fresh_orthanc.stop()
    node = make_node(node_config_dict(tmp_path / "data", [orthanc_destination(fresh_orthanc)]))
    assert storescu(node.port, files).returncode == 0
    rows = wait_until(lambda: [r for r in node.index.outbox_rows() if r["attempts"] >= 2],
                      timeout=60, what="failed delivery attempts")
    assert rows[0]["state"] == "pending" and rows[0]["last_error"]
    fresh_orthanc.start()
    wait_until(lambda: maps_in_orthanc(fresh_orthanc, study.study_uid), timeout=60, what="map after outage")
    time.sleep(2)
    assert len(maps_in_orthanc(fresh_orthanc, study.study_uid)) == 1
    assert [r["state"] for r in node.index.outbox_rows()] == ["sent"] * 4   # map, regions, report, view


def test_dead_letters_are_visible_and_can_be_retried(tmp_path, make_node):
    study, _, files = new_study(tmp_path)
    nobody = {"name": "offline", "host": "127.0.0.1", "port": 9, "ae_title": "NOBODY"}
    config = node_config_dict(tmp_path / "data", [nobody])
    config["dispatch"]["max_attempts"] = 2
    node = make_node(config)
    assert storescu(node.port, files).returncode == 0
    toml = write_toml(config, tmp_path / "node.toml")
    wait_until(lambda: json.loads(cli("status", "--config", str(toml)).stdout)["outbox"].get("offline")
               == {"dead": 4}, timeout=90, what="dead letters")
    result = cli("retry", "--config", str(toml))
    assert result.returncode == 0 and "4 dead letter" in result.stdout
    row = node.index.outbox_rows()[0]
    assert row["state"] in ("pending", "dead") and row["attempts"] <= 1


def _job_states(db):
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT state, attempts FROM jobs").fetchall()
    except sqlite3.Error:
        return []


def test_node_killed_mid_job_completes_it_once(tmp_path, orthanc):
    study, _, files = new_study(tmp_path)
    config = node_config_dict(tmp_path / "data", [orthanc_destination(orthanc)])
    toml = write_toml(config, tmp_path / "node.toml")
    db = tmp_path / "data" / "index.sqlite"
    node = serve_process(toml)
    try:
        wait_until(lambda: storescu(config["node"]["port"], files).returncode == 0, timeout=30, what="node up")
        wait_until(lambda: _job_states(db) == [("running", 1)], timeout=60, interval=0.02, what="job running")
        os.killpg(node.pid, signal.SIGKILL)  # the node and its worker, mid-job
        node.wait(timeout=30)
        assert _job_states(db) == [("running", 1)]
        node = serve_process(toml)
        wait_until(lambda: maps_in_orthanc(orthanc, study.study_uid), timeout=120, what="map after restart")
        wait_until(lambda: _job_states(db) == [("done", 2)], timeout=30, what="job done on 2nd attempt")
        time.sleep(3)
        assert len(maps_in_orthanc(orthanc, study.study_uid)) == 1
        # The serving node's structured log: JSON lines that tell the story by UID and hold no patient data.
        entries = node_log(toml)
        assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
        text = json.dumps(entries, ensure_ascii=False)
        assert study.study_uid in text
        for phi in (study.patient_name, study.patient_id, study.patient_birth_date):
            assert phi not in text
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            assert node.wait(timeout=60) == 0  # SIGTERM stops the node gracefully


def test_failing_module_marks_job_failed_and_node_goes_on(tmp_path, make_node):
    study, _, files = new_study(tmp_path)
    native_only = [f for f in files if f.parent.name == "pre"]
    node = make_node(node_config_dict(tmp_path / "data"))
    assert storescu(node.port, native_only).returncode == 0
    wait_until(lambda: node.index.jobs("failed"), timeout=60, what="failed job")
    assert "a native and a post-contrast" in node.index.job_row(node.index.jobs("failed")[0].id)["error"]
    post = [f for f in files if f.parent.name == "post"]
    assert storescu(node.port, post).returncode == 0  # the missing series arrives: a new job succeeds
    wait_until(lambda: node.index.jobs("done"), timeout=60, what="job on the completed study")
