"""Module jobs on a real Dask distributed cluster (scheduler and worker processes): a backfill of an Orthanc
archive of 20 phantom studies survives a worker killed mid-job and the node killed halfway; a scheduler that
is not there leaves jobs queued until it is."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from dicom_out.phantom_studies import write_mixed_archive
from node.config import builtin_routes, parse_config
from node.demo.local_dask import DaskCluster
from node.demo.local_pacs import free_port
from node.registry import open_registry
from node.store.index import Index
from node.store.layout import Layout
from tests.conftest import storescu, wait_until, write_toml
from tests.test_backfill import archive, backfill, config_for, upload

pytestmark = pytest.mark.integration

OXIMETRY_ROUTE = {"name": "oximetry", "series_description": "(?i)t2prep", "module": "oximetry",
                  "destinations": ["orthanc"]}
# The jobs each kind of study gets from the built-in routes and OXIMETRY_ROUTE (README, Modules): a study
# summary only where there is a T1 map and a report.
EXPECTED_JOBS = {"ecv": {"ecv": 1, "summary": 1}, "molli": {"molli": 2, "ecv": 1, "summary": 1},
                 "oximetry": {"oximetry": 1, "t2map": 1}, "ddce": {"ddce": 1, "lge": 1, "summary": 1}}


def processing_worker(cluster: DaskCluster) -> int | None:
    """The index (in cluster.workers) of a worker running a task now, if any."""
    from distributed import Client
    with Client(cluster.address, timeout=10) as client:
        names = {addr: info["name"] for addr, info in client.scheduler_info()["workers"].items()}
        for address, tasks in client.processing().items():
            if tasks and str(names.get(address, "")).startswith("worker-"):
                return int(str(names[address]).split("-")[1])
    return None


def test_backfill_of_twenty_studies_on_dask_survives_a_killed_worker_and_a_node_restart(tmp_path):
    kinds = ["ecv"] * 6 + ["molli"] * 6 + ["oximetry"] * 5 + ["ddce"] * 3
    studies, files = write_mixed_archive(tmp_path / "scanner", kinds)
    node_port = free_port()
    pacs = archive(tmp_path / "archive", node_port)
    cluster = DaskCluster(tmp_path / "dask", workers=2).start()
    try:
        upload(pacs, files)
        config = config_for(tmp_path, pacs, node_port)
        config["routes"] = builtin_routes(destinations=["orthanc"]) + [OXIMETRY_ROUTE]
        config["executor"] = {"kind": "dask", "scheduler": cluster.address}
        config["inputs"] = {"ddce_windows_minutes": [5], "hematocrit": 0.42}
        toml = write_toml(config, tmp_path / "node.toml")
        index_path = Layout(tmp_path / "data").index_path

        def studies_done() -> int:
            if not index_path.exists():
                return 0
            with closing(Index(index_path)) as index:
                return sum(r["state"] == "done" for r in index.backfill_rows().values())

        with open(tmp_path / "node.log", "ab") as log:
            first = subprocess.Popen([sys.executable, "-m", "node.cli", "--log-format", "json", "backfill",
                                      "--config", str(toml), "--from", "archive", "--since", "2026-11-01"],
                                     stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        # a worker killed while it runs a job: the scheduler gives the task to the other worker
        busy = wait_until(lambda: processing_worker(cluster), timeout=300, interval=0.5,
                          what="a Dask worker running a job")
        cluster.kill_worker(cluster.workers[busy])
        # the node killed halfway (no clean stop), then the same command again, with a new worker joining
        wait_until(lambda: studies_done() >= 8, timeout=900, interval=1, what="8 studies processed")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        cluster.add_worker("worker-new")
        second = backfill(toml, "--since", "2026-11-01", timeout=1500)
        assert second.returncode == 0, second.stdout
        assert "20 studies found" in second.stdout

        index = Index(index_path)
        rows = index.backfill_rows()
        assert {uid: r["state"] for uid, r in rows.items()} == {uid: "done" for uid in studies}
        jobs = index.all_jobs()
        assert [(j.id, j.route) for j in jobs if j.state != "done"] == []
        for uid, kind in studies.items():     # each routed study processed once: its jobs, no more, no fewer
            assert Counter(j.route for j in jobs if j.study_uid == uid) == EXPECTED_JOBS[kind], (uid, kind)
        # every output reached Orthanc, and every report the registry
        outbox = index.outbox_rows()
        assert outbox and {r["state"] for r in outbox} == {"sent"}
        in_pacs = {i["MainDicomTags"]["SOPInstanceUID"] for i in pacs.post(
            "/tools/find", b'{"Level": "Instance", "Expand": true, "Query": {}}')}
        assert {r["sop_instance_uid"] for r in outbox} <= in_pacs
        config_object = parse_config(config)
        registry = open_registry(config_object)
        assert {r["study_uid"] for r in registry.rows()} == set(studies)
        registry.close()
        index.close()
    finally:
        cluster.stop()
        pacs.stop()


def test_a_scheduler_not_there_leaves_jobs_queued_until_it_is(tmp_path, ecv_study, make_node, orthanc):
    from tests.conftest import node_config_dict, orthanc_destination
    port = free_port()
    cluster = DaskCluster(tmp_path / "dask", workers=1)
    cluster.port = port
    config = node_config_dict(tmp_path / "data", destinations=[orthanc_destination(orthanc)],
                              executor={"kind": "dask", "scheduler": cluster.address})
    node = make_node(config)
    _, _, files = ecv_study
    assert storescu(node.port, files).returncode == 0
    wait_until(lambda: node.index.jobs("queued"), timeout=30, what="a queued ECV job")
    time.sleep(3)
    assert [j.state for j in node.index.all_jobs()] == ["queued"]     # nowhere to run: waiting, not failed
    cluster.start()
    try:
        wait_until(lambda: [j.state for j in node.index.all_jobs() if j.route == "ecv"] == ["done"], timeout=180,
                   what="the ECV job done on the cluster once it is there")
        # its outputs came back as bytes into results/<job id>/ and from there reached the PACS
        wait_until(lambda: {r["state"] for r in node.index.outbox_rows()} == {"sent"}, timeout=60,
                   what="the ECV outputs sent")
        assert all(Path(r["path"]).is_file() and Path(r["path"]).parent.name.isdigit()
                   for r in node.index.outbox_rows())
    finally:
        cluster.stop()
