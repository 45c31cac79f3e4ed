"""Retention: old studies go once every destination has their results, never before."""
import json
import time

import pytest

from tests.conftest import ECV_OUTPUTS, ECV_STUDY_JOBS, node_config_dict, orthanc_destination, storescu, wait_until

pytestmark = pytest.mark.integration     # nodes on ports, DCMTK storescu and Orthanc


def test_delivered_study_is_purged_and_history_kept(tmp_path, make_node, orthanc, ecv_study):
    study, _, files = ecv_study
    config = node_config_dict(tmp_path / "data", [orthanc_destination(orthanc)], retention={"days": 1})
    node = make_node(config)
    assert storescu(node.port, files).returncode == 0
    wait_until(lambda: node.index.status()["outbox"].get("orthanc") == {"sent": ECV_OUTPUTS}, timeout=120, what="all sent")
    assert node.purger.sweep() == 0                                # delivered, but younger than a day
    wait_until(lambda: node.purger.sweep(now=time.time() + 86400 + 60) == 1, timeout=30, what="study complete")
    assert not list((tmp_path / "data" / "incoming").rglob("*.dcm"))
    assert not [p for p in (tmp_path / "data" / "results").iterdir()]
    status = node.index.status()
    assert status["instances"] == 0 and status["jobs"] == {"done": ECV_STUDY_JOBS} and status["outbox"]["orthanc"] == {"sent": ECV_OUTPUTS}
    assert node.registry.rows()                                    # the numbers stay
    events = [json.loads(line)["event"] for line in (tmp_path / "data" / "audit.log").read_text().splitlines()]
    assert "purged" in events


def test_nothing_goes_while_a_destination_is_owed(tmp_path, make_node, ecv_study):
    _, _, files = ecv_study
    nobody = {"name": "offline", "host": "127.0.0.1", "port": 9, "ae_title": "NOBODY"}
    config = node_config_dict(tmp_path / "data", [nobody], retention={"days": 1})
    config["dispatch"]["max_attempts"] = 1
    node = make_node(config)
    assert storescu(node.port, files).returncode == 0
    wait_until(lambda: node.index.status()["outbox"].get("offline", {}).get("dead") == ECV_OUTPUTS, timeout=120,
               what="dead letters")
    assert node.purger.sweep(now=time.time() + 10 * 86400) == 0   # results still owed: kept
    # the scanner's files and the ECV report, taken back in for the study summary
    assert len(list((tmp_path / "data" / "incoming").rglob("*.dcm"))) == len(files) + 1
    node.index.retry_dead()
    assert node.purger.sweep(now=time.time() + 10 * 86400) == 0
