"""A backfill where things go wrong: failed jobs, a crash between completing and routing a study, a stop, a
WADO-RS instance that cannot be stored, an archive that caps its QIDO-RS pages, a multipart part holding its
boundary's text, and the Dask executor's edges (a task cancelled at once, two threads asking for the
cluster, an attempt still running from before a restart). Unit level: no network except a local HTTP server.
(Found by an independent review; each failed before its fix.)"""
from __future__ import annotations

import json
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from node.backfill import driver as driver_module
from node.backfill.archive import ArchiveSeries, ArchiveStudy, DicomwebArchive, split_multipart
from node.backfill.driver import Backfill, PlannedStudy, Progress
from node.config import parse_config
from node.errors import Failure, FailureKind, Step
from node.process import cluster as cluster_module
from node.process.cluster import DaskExecutor
from node.process.jobs import JobRunner
from node.route.router import Router
from node.settings import Source
from node.store.index import Index
from node.store.layout import Layout
from tests.test_store_index import record

STUDY = "1.2.3"
ROUTES = [{"name": "ecv", "module": "ecv", "kinds": ["t1_map"], "scope": "study"},
          {"name": "summary", "module": "summary", "kinds": ["report", "t1_map"],
           "requires": ["report", "t1_map"], "last": True}]


def retrieved_study(index: Index) -> None:
    """A backfilled study with one T1 map series, retrieved, its series complete and classified."""
    index.backfill_found(STUDY, "archive", "20260101", ["1.2.3.4"])
    index.record_instance(record("1.1"), now=time.time() - 5)
    index.backfill_retrieved(STUDY)
    assert [r["series_uid"] for r in index.complete_quiet_series(3600, now=time.time())] == ["1.2.3.4"]
    index.set_series_kinds("1.2.3.4", ["t1_map"], {"kinds": {"t1_map": {}}}, {"1.1": {"t1_map"}})


# ---- 1. a failed study-scope job leaves the study unsettled: the backfill waits for it forever -----------------
def test_a_study_whose_study_scope_job_failed_is_finished_eventually():
    index = Index(":memory:")
    router = Router(parse_config({"routes": ROUTES}), index)
    retrieved_study(index)
    assert router.sweep() and index.jobs("queued")[0].route == "ecv"   # study complete, ECV queued: not settled
    [job] = index.claim_jobs(1)
    index.fail_job(job.id, Failure(FailureKind.INPUT, Step.READ, "no native/post pair"))
    for _ in range(5):              # the scheduler keeps sweeping; nothing reopens the study
        router.sweep(now=time.time() + 3600)
    assert index.study_finished(STUDY), "the backfill driver's _collect would wait for this study forever"


# ---- 2. killed between complete_quiet_studies' commit and route_study: never routed, never settled -----------
def test_a_study_completed_but_not_routed_before_a_crash_is_routed_after_restart():
    index = Index(":memory:")
    retrieved_study(index)
    assert index.complete_quiet_studies(3600, now=time.time()) == [STUDY]   # committed ... then the node dies
    router = Router(parse_config({"routes": ROUTES}), index)                # restart (same index)
    for _ in range(3):
        router.sweep(now=time.time() + 3600)
    assert index.jobs(), "no job was ever queued for the study"
    assert index.study_finished(STUDY) or index.jobs("queued")


# ---- 3. a stop that lands while nothing is in flight exits 0 with studies never retrieved ----------------------
class _FakeArchive:
    """Moves one instance of each series asked for into the index, as a C-MOVE to the node would."""
    def __init__(self, index: Index | None = None):
        self.retrieved = []
        self.index = index

    def retrieve(self, study_uid, series_uid, destination_ae, store=None):
        self.retrieved.append(study_uid)
        if self.index is not None:
            self.index.record_instance(record(f"{study_uid}.1", series=series_uid, study=study_uid))
        return 1


class _FinishedAtOnce(Index):
    def study_finished(self, study_uid):
        return True


class _StopWhenOneIsDone(Progress):
    """SIGTERM arriving right after the first study is collected (Backfill.stop is what the handler sets)."""
    backfill: Backfill

    def show(self, counts, in_flight):
        if counts["done"] == 1:
            self.backfill.stop.set()


def test_a_stopped_run_never_reports_success():
    config = parse_config({"routes": ROUTES})
    progress = _StopWhenOneIsDone(0, None)
    index = _FinishedAtOnce(":memory:")
    archive = _FakeArchive(index)
    backfill = Backfill(config, archive, "archive", index, Layout("/nonexistent"), in_flight=1, progress=progress)
    progress.backfill = backfill
    series = (ArchiveSeries("9.9", "MR", "MOLLI", "1", "X", 1),)
    plans = [PlannedStudy(ArchiveStudy(f"1.2.{k}", "20260101"), series) for k in range(3)]
    counts = backfill.run(plans)
    assert archive.retrieved == ["1.2.0"]          # two studies never retrieved
    assert counts["left"] == 2, f"stopped with 2 of 3 studies untouched: {counts}"   # run_backfill exits 1


# ---- 4. a WADO-RS instance the node cannot write aborts the whole run (README: fails that study, goes on) -------
def test_a_wado_instance_that_cannot_be_stored_fails_its_study_and_the_run_goes_on(tmp_path, monkeypatch):
    from pydicom.dataset import Dataset

    class WadoArchive(_FakeArchive):
        def retrieve(self, study_uid, series_uid, destination_ae, store=None):
            self.retrieved.append(study_uid)
            store(f"{study_uid}|{series_uid}".encode())
            return 1

    def header(raw: bytes):
        ds = Dataset()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = raw.decode().split("|")
        ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4", "1.2.9"
        return ds, "1.2.840.10008.1.2.1"

    monkeypatch.setattr(driver_module, "read_part10_header", header)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(driver_module, "store_instance", disk_full)
    archive = WadoArchive()
    backfill = Backfill(parse_config({"routes": ROUTES}), archive, "archive", Index(":memory:"), Layout(tmp_path), 5)
    series = (ArchiveSeries("9.9", "MR", "MOLLI", "1", "X", 1),)
    plans = [PlannedStudy(ArchiveStudy(f"1.2.{k}", "20260101"), series) for k in range(2)]
    counts = backfill.run(plans)
    assert counts["failed"] == 2 and archive.retrieved == ["1.2.0", "1.2.1"]


def test_a_wado_instance_is_refused_when_the_disk_is_nearly_full_like_a_c_store(tmp_path):
    """Receiver.store refuses an instance below [node] min_free_mb; Backfill._store writes it anyway."""
    src = tmp_path / "src"
    src.mkdir()
    record("1.1", directory=src)
    raw = (src / "1.1.dcm").read_bytes()
    config = parse_config({"node": {"data_dir": str(tmp_path / "data"), "min_free_mb": 10 ** 9}, "routes": ROUTES})
    layout = Layout(tmp_path / "data")
    layout.create()
    index = Index(":memory:")
    backfill = Backfill(config, _FakeArchive(), "archive", index, layout, 1)
    with pytest.raises(Exception):
        backfill._store(raw)
    assert index.status()["instances"] == 0


# ---- 5. QIDO-RS paging stops at the first page a server shortens to its own maximum -----------------------------
class _CappedQido(BaseHTTPRequestHandler):
    TOTAL, SERVER_MAX = 120, 50       # many servers cap a page below the limit asked for

    def do_GET(self):
        query = parse_qs(urlparse(self.path).query)
        offset, limit = int(query.get("offset", ["0"])[0]), int(query.get("limit", ["1000"])[0])
        page = [{"0020000D": {"vr": "UI", "Value": [f"1.2.840.99.{k}"]}, "00080020": {"vr": "DA", "Value": ["20260101"]},
                 "00080061": {"vr": "CS", "Value": ["MR"]}}
                for k in range(offset, min(self.TOTAL, offset + min(limit, self.SERVER_MAX)))]
        body = json.dumps(page).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_qido_paging_finds_every_study_when_the_server_caps_its_pages():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CappedQido)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = Source(name="a", host="h", port=104, ae_title="A", protocol="dicomweb",
                        dicomweb_url=f"http://127.0.0.1:{server.server_port}/dicom-web")
        studies = DicomwebArchive(source).studies(date(2026, 1, 1), None)
        assert len(studies) == _CappedQido.TOTAL, f"only {len(studies)} of {_CappedQido.TOTAL} studies found"
    finally:
        server.shutdown()


# ---- 6. multipart: '--boundary' inside a part's bytes (legal unless preceded by CRLF, RFC 2046 5.1.1) ------------
def test_multipart_boundary_text_inside_a_part_not_after_crlf_is_content():
    first = b"DICM\x00\x01abc--XYZdef\x00"
    body = b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n" + first + b"\r\n--XYZ--\r\n"
    assert list(split_multipart(body, "multipart/related; boundary=XYZ")) == [first]


# ---- the Dask executor, with stand-ins for distributed (no cluster) ----------------------------------------
class _CancelledAtOnce:
    """A Dask future cancelled before submit() returns (client lost its scheduler): the done-callback runs
    on Dask's callback thread, which may be before the submitting thread's next line."""
    status = "cancelled"

    def add_done_callback(self, fn):
        fn(self)


class _Client:
    status = "running"

    def submit(self, *args, **kwargs):
        return _CancelledAtOnce()

    def nthreads(self):
        return {"w": 1}

    def close(self, timeout=None):
        pass


def test_a_task_cancelled_at_once_is_queued_again_not_failed(tmp_path):
    config = parse_config({"node": {"data_dir": str(tmp_path)},
                           "executor": {"kind": "dask", "scheduler": "tcp://x:1", "inputs": "files"}})
    index = Index(":memory:")
    layout = Layout(tmp_path)
    runner = JobRunner(config, index, layout)
    executor = object.__new__(DaskExecutor)
    executor.settings, executor.results_root, executor.client, executor._tasks = \
        config.executor, layout.results, _Client(), {}
    runner._dask = executor
    index.add_job("ecv", "ecv", "1.2.3", "k", {"files": []})
    runner.poll()
    # cancelled is the cluster's doing, not the job's: queued again, not failed
    assert [(j.state) for j in index.all_jobs()] == ["queued"], index.failed_jobs()


def test_one_dask_client_however_many_threads_ask_for_capacity(tmp_path, monkeypatch):
    made = []

    class SlowToConnect:
        connected = True

        def __init__(self, settings, results_root):
            time.sleep(0.3)          # Client(...) connecting to a remote scheduler
            made.append(self)

        def capacity(self):
            return 1

    monkeypatch.setattr(cluster_module, "DaskExecutor", SlowToConnect)
    config = parse_config({"node": {"data_dir": str(tmp_path)},
                           "executor": {"kind": "dask", "scheduler": "tcp://x:1"}})
    runner = JobRunner(config, Index(":memory:"), Layout(tmp_path))
    # run_backfill's in_flight (main thread, no lock) and the scheduler's first poll
    threads = [threading.Thread(target=runner.capacity), threading.Thread(target=runner.poll)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1, f"{len(made)} Dask clients made; only the last is closed at shutdown"


def test_files_mode_a_zombie_attempt_does_not_fail_the_job_run_again(tmp_path, monkeypatch):
    """[executor] inputs = "files": the node is killed while a Dask worker runs job 7 (attempt A); Dask cannot stop
    a running task, so A goes on. At restart job 7 is queued again and attempt B runs on another worker. Both
    use results/7.partial and results/7: A renames first, then B's rename finds results/7 not empty."""
    from pydicom.dataset import Dataset
    from node.process import jobs as jobs_module
    from node.process.modules import ModuleOutput

    started_b, a_done = threading.Event(), threading.Event()

    def module(module, study_uid, files, settings, job_key, viewer_images=(), final=False):
        if job_key == "B":
            started_b.set()
            a_done.wait(10)
        else:
            started_b.wait(10)         # A is mid-fit when B starts
        ds = Dataset()
        ds.SOPInstanceUID, ds.SOPClassUID = "1.2.3.9", "1.2.840.10008.5.1.4.1.1.7"
        return ModuleOutput(datasets=[ds], results={"attempt": job_key})

    monkeypatch.setattr(jobs_module, "run_module", module)
    monkeypatch.setattr(jobs_module, "write_datasets", lambda datasets, directory, reingest=(): (
        directory.mkdir(parents=True, exist_ok=True), (directory / "out.dcm").write_bytes(b"x"),
        [{"path": str(directory / "out.dcm"), "sop_instance_uid": "1.2.3.9", "sop_class_uid": "1.2"}])[2])
    results = {}

    def attempt(key):
        try:
            results[key] = jobs_module.execute_job(7, "ecv", "1.2.3", [], None, key, str(tmp_path))
        except BaseException as exc:
            results[key] = exc
        if key == "A":
            a_done.set()
    threads = [threading.Thread(target=attempt, args=(k,)) for k in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not isinstance(results["B"], BaseException), f"attempt B, the one the node records: {results['B']!r}"
