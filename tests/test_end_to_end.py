"""Scanner (DCMTK storescu) -> node -> real Orthanc, including outages and a crash."""
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
import pytest

from analysis.phantoms import Region
from dicom_out.phantom_studies import write_ecv_study
from dicom_out.synthetic_mr import SyntheticStudy
from node.network import status
from node.demo.local_pacs import Orthanc, free_port
from node.network.sop_classes import STORAGE_SOP_CLASSES
from tests.conftest import (ECV_OUTPUTS, ECV_STUDY_JOBS, PM_SOP_CLASS, SEG_SOP_CLASS, dciodvfy_errors, node_config_dict, node_log,
                            orthanc_destination, require_tool, serve_process, storescu, wait_until, write_toml)

pytestmark = pytest.mark.integration     # DCMTK, Orthanc, dciodvfy and nodes on ports, some served as processes


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
    wait_until(lambda: json.loads(cli("status", "--config", str(toml)).stdout)["outbox"]["orthanc"] == {"sent": ECV_OUTPUTS},
               what="outbox marked sent (map, regions, segments, report, view)")
    status = json.loads(cli("status", "--config", str(toml)).stdout)
    # the scanner's files and the ECV report, taken back in for the study summary
    assert status["instances"] == len(files) + 1 and status["jobs"] == {"done": ECV_STUDY_JOBS}
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


def arrival_order(orthanc: Orthanc, study_uid: str) -> list[str]:
    """SOP Instance UIDs of the study in the order Orthanc stored them (its change log)."""
    changes = orthanc.get("/changes?since=0&limit=10000")["Changes"]
    tags = [orthanc.instance_tags(c["ID"]) for c in changes if c["ChangeType"] == "NewInstance"]
    return [t["SOPInstanceUID"] for t in tags if t.get("StudyInstanceUID") == study_uid]


def queued_order(node, study_uid: str) -> list[str]:
    return [r["sop_instance_uid"] for r in node.index.outbox_rows() if r["study_uid"] == study_uid]


def test_outputs_arrive_in_order_and_once_after_an_outage(tmp_path, make_node):
    require_tool("Orthanc")
    pacs = Orthanc(tmp_path / "orthanc")         # not started: the PACS is down while two studies are processed
    studies = [new_study(tmp_path / name) for name in ("a", "b")]
    node = make_node(node_config_dict(tmp_path / "data", [orthanc_destination(pacs)]))
    try:
        for _, _, files in studies:
            assert storescu(node.port, files).returncode == 0
        rows = wait_until(lambda: [r for r in node.index.outbox_rows() if r["attempts"] >= 1],
                          timeout=90, what="results queued and failing")
        assert rows[0]["state"] == "pending" and "no association" in rows[0]["last_error"]
        wait_until(lambda: len(node.index.outbox_rows()) == 2 * ECV_OUTPUTS, timeout=90, what="both studies' results queued")
        pacs.start()
        wait_until(lambda: [r["state"] for r in node.index.outbox_rows()] == ["sent"] * 2 * ECV_OUTPUTS, timeout=90,
                   what="every output delivered")
        time.sleep(2)     # a duplicate would show up now
        for study, _, _ in studies:
            assert arrival_order(pacs, study.study_uid) == queued_order(node, study.study_uid)
    finally:
        pacs.stop()


class FlakyPacs:
    """A storage SCP that records every C-STORE it answers with Success, in order and duplicates included
    (Orthanc keeps one copy of a re-sent instance and logs no change, so it cannot count deliveries).
    refuse_first_seg: answer the first SEG with 0xA700 Out of Resources, as a PACS short of space for a moment
    would (Orthanc 1.10's Lua ReceivedInstanceFilter discards silently and still answers Success).
    on_store: called with the SOP Instance UID before answering. It negotiates only sop_classes."""

    def __init__(self, sop_classes=tuple(STORAGE_SOP_CLASSES), refuse_first_seg: bool = True, port: int = 0,
                 on_store=None):
        self.stored: list[str] = []
        self.refused = not refuse_first_seg
        self.on_store = on_store
        self.ae = AE(ae_title="FLAKYPACS")
        for sop_class in sop_classes:
            self.ae.add_supported_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self.server = self.ae.start_server(("127.0.0.1", port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._handle_store)])

    def _handle_store(self, event) -> int:
        if event.request.AffectedSOPClassUID == SEG_SOP_CLASS and not self.refused:
            self.refused = True
            return status.OUT_OF_RESOURCES
        self.stored.append(event.request.AffectedSOPInstanceUID)
        if self.on_store is not None:
            self.on_store(event.request.AffectedSOPInstanceUID)
        return status.SUCCESS

    def counts(self) -> dict[str, int]:
        return {uid: self.stored.count(uid) for uid in self.stored}

    @property
    def port(self) -> int:
        return self.server.server_address[1]


def test_an_instance_the_pacs_refuses_holds_back_the_rest_of_its_study(tmp_path, make_node):
    pacs = FlakyPacs()
    studies = [new_study(tmp_path / name) for name in ("a", "b")]
    destination = {"name": "flaky", "host": "127.0.0.1", "port": pacs.port, "ae_title": "FLAKYPACS"}
    node = make_node(node_config_dict(tmp_path / "data", [destination]))
    try:
        for _, _, files in studies:
            assert storescu(node.port, files).returncode == 0
        wait_until(lambda: [r["state"] for r in node.index.outbox_rows()] == ["sent"] * 2 * ECV_OUTPUTS, timeout=120,
                   what="every output delivered")
        assert pacs.refused
        for study, _, _ in studies:
            assert [uid for uid in pacs.stored if uid in queued_order(node, study.study_uid)] == \
                queued_order(node, study.study_uid)
        assert len(pacs.stored) == 2 * ECV_OUTPUTS
    finally:
        pacs.server.shutdown()


def test_every_output_reaches_the_pacs_exactly_once_through_an_outage(tmp_path, make_node):
    """Counted at the PACS, every C-STORE: the PACS is down while two studies are processed, then comes up."""
    port = free_port()
    studies = [new_study(tmp_path / name) for name in ("a", "b")]
    destination = {"name": "counting", "host": "127.0.0.1", "port": port, "ae_title": "FLAKYPACS"}
    node = make_node(node_config_dict(tmp_path / "data", [destination]))
    for _, _, files in studies:
        assert storescu(node.port, files).returncode == 0
    wait_until(lambda: len(node.index.outbox_rows()) == 2 * ECV_OUTPUTS and all(r["attempts"] >= 1 for r in node.index.outbox_rows()),
               timeout=120, what="both studies' results queued and failing")
    pacs = FlakyPacs(refuse_first_seg=False, port=port)
    try:
        wait_until(lambda: [r["state"] for r in node.index.outbox_rows()] == ["sent"] * 2 * ECV_OUTPUTS, timeout=120,
                   what="every output delivered")
        time.sleep(3)     # a second delivery would arrive now
        assert pacs.counts() == {r["sop_instance_uid"]: 1 for r in node.index.outbox_rows()}
    finally:
        pacs.server.shutdown()


def test_a_node_killed_after_the_pacs_stored_an_output_sends_it_again(tmp_path):
    """The honest promise is at least once: the PACS stores an output, the node dies before it hears Success;
    after the restart that output goes again, with the same SOP Instance UID (a PACS keeps one copy), and
    every other output once."""
    study, _, files = new_study(tmp_path)
    port = free_port()
    destination = {"name": "counting", "host": "127.0.0.1", "port": port, "ae_title": "FLAKYPACS"}
    config = node_config_dict(tmp_path / "data", [destination])
    toml = write_toml(config, tmp_path / "node.toml")
    killed = []

    def kill_once(uid):
        if not killed:
            killed.append(uid)
            os.killpg(node.pid, signal.SIGKILL)        # the node and its workers, before they hear Success
    pacs = FlakyPacs(refuse_first_seg=False, port=port, on_store=kill_once)
    node = serve_process(toml)
    try:
        wait_until(lambda: storescu(config["node"]["port"], files).returncode == 0, timeout=30, what="node up")
        wait_until(lambda: killed, timeout=120, what="the first output stored at the PACS")
        node.wait(timeout=30)
        node = serve_process(toml)
        db = tmp_path / "data" / "index.sqlite"

        def outbox():
            with sqlite3.connect(db, timeout=5) as con:
                return dict(con.execute("SELECT sop_instance_uid, state FROM outbox").fetchall())
        wait_until(lambda: outbox() and set(outbox().values()) == {"sent"}, timeout=120, what="all sent after restart")
        time.sleep(2)
        counts = pacs.counts()
        assert set(counts) == set(outbox())
        assert counts.pop(killed[0]) == 2 and set(counts.values()) == {1}
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=60)
        pacs.server.shutdown()


def test_sop_classes_a_pacs_does_not_take_become_dead_letters_and_free_the_rest(tmp_path, make_node):
    pacs = FlakyPacs(sop_classes=["1.2.840.10008.5.1.4.1.1.7"])      # Secondary Capture only
    study, _, files = new_study(tmp_path)
    destination = {"name": "old", "host": "127.0.0.1", "port": pacs.port, "ae_title": "FLAKYPACS"}
    config = node_config_dict(tmp_path / "data", [destination])
    config["dispatch"]["max_attempts"] = 2
    node = make_node(config)
    try:
        assert storescu(node.port, files).returncode == 0
        wait_until(lambda: sorted(r["state"] for r in node.index.outbox_rows()) == ["dead"] * (ECV_OUTPUTS - 2) + ["sent"] * 2,
                   timeout=90, what="map, SEGs and SR dead, the viewer image and the summary page delivered")
        dead = [r for r in node.index.outbox_rows() if r["state"] == "dead"]
        assert all("does not accept SOP class" in r["last_error"] for r in dead)
        assert len(pacs.stored) == 2                                 # the view and the summary page
    finally:
        pacs.server.shutdown()


def test_dead_letters_are_visible_and_can_be_retried(tmp_path, make_node):
    study, _, files = new_study(tmp_path)
    nobody = {"name": "offline", "host": "127.0.0.1", "port": 9, "ae_title": "NOBODY"}
    config = node_config_dict(tmp_path / "data", [nobody])
    config["dispatch"]["max_attempts"] = 2
    node = make_node(config)
    assert storescu(node.port, files).returncode == 0
    toml = write_toml(config, tmp_path / "node.toml")
    wait_until(lambda: json.loads(cli("status", "--config", str(toml)).stdout)["outbox"].get("offline")
               == {"dead": ECV_OUTPUTS}, timeout=90, what="dead letters")
    result = cli("retry", "--config", str(toml))
    assert result.returncode == 0 and f"{ECV_OUTPUTS} dead letter" in result.stdout
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
    config = node_config_dict(tmp_path / "data")
    node = make_node(config)
    assert storescu(node.port, native_only).returncode == 0
    wait_until(lambda: node.index.jobs("failed"), timeout=60, what="failed job")
    failed = node.index.job_row(node.index.jobs("failed")[0].id)
    assert "a native and a post-contrast" in failed["error"] and failed["failure_kind"] == "input"
    shown = json.loads(cli("status", "--config", str(write_toml(config, tmp_path / "node.toml"))).stdout)
    assert shown["failed_jobs"][0]["reason"] == failed["error"] and shown["failed_jobs"][0]["step"] == "read inputs"
    results = json.loads((Path(failed["output_dir"]) / "results.json").read_text())
    assert results == {"state": "failed", "failure": {"kind": "input", "step": "read inputs",
                                                      "reason": failed["error"], "reference": None}}
    post = [f for f in files if f.parent.name == "post"]
    assert storescu(node.port, post).returncode == 0  # the missing series arrives: a new job succeeds
    wait_until(lambda: node.index.jobs("done"), timeout=60, what="job on the completed study")


def test_per_study_inputs_set_and_show_rerun_the_study(tmp_path, make_node):
    """`cmr-node inputs set` stores a study's own hematocrit; its routes run again with it; bad values and
    unknown keys are refused with exit code 2 and the key named."""
    study, _, files = new_study(tmp_path)
    config = node_config_dict(tmp_path / "data")
    node = make_node(config)
    toml = write_toml(config, tmp_path / "node.toml")
    assert storescu(node.port, files).returncode == 0
    wait_until(lambda: node.index.jobs("done"), timeout=90, what="first ECV")
    result = cli("inputs", "set", study.study_uid, "hematocrit=0.5", "--config", str(toml))
    assert result.returncode == 0 and json.loads(result.stdout[result.stdout.index("{"):]) == {"hematocrit": "0.5"}
    assert json.loads(cli("inputs", "show", study.study_uid, "--config", str(toml)).stdout) == {"hematocrit": "0.5"}
    done = wait_until(lambda: len(node.index.jobs("done")) == 2 and node.index.jobs("done"), timeout=90,
                      what="the study run again")
    rerun = json.loads((Path(node.index.job_row(done[-1].id)["output_dir"]) / "results.json").read_text())
    assert rerun["hematocrit"] == 0.5
    for bad, key in (("hematocrit=abc", "hematocrit"), ("colour=blue", "colour"), ("hematocrit=", "hematocrit"),
                     ("hematocrit=42", "between 0.1 and 0.7")):   # the configuration's own check, per study too
        refused = cli("inputs", "set", study.study_uid, bad, "--config", str(toml))
        assert refused.returncode == 2 and key in refused.stderr, bad
    assert cli("inputs", "show", "../etc", "--config", str(toml)).returncode == 2
