"""Operations and security: address allow-list, disk-space guard, audit log, /healthz and /metrics."""
import json
import urllib.error
import urllib.request

import pytest

from node.demo.local_pacs import free_port
from tests.conftest import node_config_dict, orthanc_destination, storescu, wait_until

pytestmark = pytest.mark.integration     # nodes on ports, DCMTK storescu and Orthanc


def _node(tmp_path, make_node, destinations=None, **node_keys):
    config = node_config_dict(tmp_path / "data", destinations)
    config["node"].update(node_keys)
    return make_node(config)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_caller_outside_allowed_networks_is_refused(tmp_path, make_node, ecv_study):
    files = ecv_study[2][:1]
    node = _node(tmp_path, make_node, allowed_networks=["10.0.0.0/8", "192.168.0.0/16"])
    result = storescu(node.port, files)
    assert result.returncode != 0 and node.index.status()["instances"] == 0
    assert node.receiver.counters.rejected == 1 and node.receiver.counters.associations == 0
    audit = [json.loads(line) for line in (tmp_path / "data" / "audit.log").read_text().splitlines()]
    assert audit[-1]["event"] == "association_refused" and audit[-1]["address"] == "127.0.0.1"


def test_caller_inside_allowed_networks_is_served(tmp_path, make_node, ecv_study):
    node = _node(tmp_path, make_node, allowed_networks=["127.0.0.0/8"])
    assert storescu(node.port, ecv_study[2][:1]).returncode == 0 and node.index.status()["instances"] == 1


def test_disk_nearly_full_answers_out_of_resources_and_resumes(tmp_path, make_node, ecv_study):
    files = ecv_study[2]
    # a threshold no disk meets: "nearly full"; receive in the node's own process, where the test can give the
    # space back by lowering the threshold (receive workers read it once, at start)
    node = _node(tmp_path, make_node, min_free_mb=10 ** 9, receive_processes=0)
    result = storescu(node.port, files[:2], extra=["-v"])
    assert result.returncode != 0 and "Refused: OutOfResources" in result.stderr   # 0xA700
    assert node.index.status()["instances"] == 0 and not list((tmp_path / "data" / "incoming").rglob("*.dcm"))
    node.receiver.min_free_bytes = 10 * 1024 * 1024              # space comes back
    assert storescu(node.port, files).returncode == 0
    assert node.index.status()["instances"] == len(files)


def test_audit_log_records_who_sent_what_and_where_it_went(tmp_path, make_node, orthanc, ecv_study):
    study, _, files = ecv_study
    node = _node(tmp_path, make_node, [orthanc_destination(orthanc)])
    assert storescu(node.port, files).returncode == 0
    wait_until(lambda: node.index.status()["outbox"].get("orthanc", {}).get("sent", 0) >= 3, timeout=120,
               what="results sent")
    text = (tmp_path / "data" / "audit.log").read_text()
    events = [json.loads(line) for line in text.splitlines()]
    [received] = [e for e in events if e["event"] == "received"]
    assert received["calling_ae"] == "SCANNER" and received["address"] == "127.0.0.1"
    assert received["studies"] == {study.study_uid: len(files)} and received["instances"] == len(files)
    sent = [e for e in events if e["event"] == "sent"]
    assert sent and {e["destination"] for e in sent} == {"orthanc"} and {e["study_uid"] for e in sent} == {study.study_uid}
    for phi in (study.patient_name, study.patient_id, study.patient_birth_date):
        assert phi not in text
    assert (tmp_path / "data" / "audit.log").stat().st_mode & 0o777 == 0o600


def test_healthz_and_metrics(tmp_path, make_node, ecv_study):
    port = free_port()
    node = _node(tmp_path, make_node, metrics_port=port)
    assert storescu(node.port, ecv_study[2]).returncode == 0
    wait_until(lambda: node.index.status()["jobs"].get("done", 0) >= 1, timeout=120, what="ECV job done")
    code, body = _get(f"http://127.0.0.1:{port}/healthz")
    assert code == 200 and json.loads(body)["checks"] == {"listener": True, "scheduler": True, "index": True,
                                                          "disk": True}
    code, metrics = _get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200
    assert f"cmr_node_instances_received_total {float(len(ecv_study[2]))}" in metrics
    assert 'cmr_node_jobs{module="ecv",state="done"} 1.0' in metrics
    assert 'cmr_node_module_runs_total{module="ecv"} 1.0' in metrics
    assert _get(f"http://127.0.0.1:{port}/other")[0] == 404


def test_healthz_fails_when_the_disk_is_nearly_full(tmp_path, make_node):
    port = free_port()
    _node(tmp_path, make_node, metrics_port=port, min_free_mb=10 ** 9)
    code, body = _get(f"http://127.0.0.1:{port}/healthz")
    assert code == 503 and json.loads(body)["checks"]["disk"] is False
