"""Running module jobs in worker processes, so a slow fit never blocks reception.

A worker writes a job's outputs into a partial folder of its attempt and renames it to
results/<job id>/ when complete; the node then marks the job done
and fills the outbox in one transaction. A job interrupted by a stop or a
crash is found 'running' at the next start, re-queued and run again; output
UIDs come from the inputs, so the second run writes the same objects.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import secrets
import shutil
import sqlite3
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from dicom_out.descriptions import with_series_date
from node.config import Config
from node.errors import Failure, FailureKind, Step, failure_of
from node.store.index import Index, Job
from node.ops import logs
from node.process.modules import MODULES, ModuleInput
from node.receive.receiver import RejectedInstance, ingest_file
from node.registry import SR_SOP_CLASSES, Registry
from node.registry import ingest_file as register_report
from node.settings import ModuleSettings, with_study_values
from node.store.layout import Layout

log = logging.getLogger("cmr_node.jobs")


class ModuleFailed(Exception):
    """A job's module failed; args are the Failure's fields, so that it crosses the process boundary."""

    @property
    def failure(self) -> Failure:
        kind, step, reason, reference = self.args
        return Failure(FailureKind(kind), Step(step), reason, reference)

    def __str__(self) -> str:
        return self.failure.reason


def write_datasets(datasets, directory: Path, reingest=()) -> list[dict]:
    """Write datasets as <SOPInstanceUID>.dcm; describe each for the outbox (and for re-ingest)."""
    directory.mkdir(parents=True, exist_ok=True)
    outputs = []
    for ds in datasets:
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        with_series_date(ds).save_as(path, enforce_file_format=True)
        outputs.append({"path": str(path), "sop_instance_uid": str(ds.SOPInstanceUID),
                        "sop_class_uid": str(ds.SOPClassUID), "reingest": str(ds.SOPInstanceUID) in reingest})
    return outputs


def write_previews(previews: dict[str, bytes], directory: Path, prefix: str = "") -> list[str]:
    """PNG previews into directory/previews/, for a person without a viewer; returns their file names.
    prefix: for a folder that several jobs share."""
    if previews:
        (directory / "previews").mkdir(parents=True, exist_ok=True)
        for name, data in previews.items():
            (directory / "previews" / f"{prefix}{name}").write_bytes(data)
    return [f"{prefix}{name}" for name in previews]


def write_outputs(output, directory: Path) -> list[dict]:
    """Write a ModuleOutput's datasets, previews and its numbers (results.json) into directory."""
    outputs = write_datasets(output.datasets, directory, set(output.reingest))
    write_previews(output.previews, directory)
    (directory / "results.json").write_text(json.dumps(output.results, indent=2))
    return outputs


def run_module(module: str, study_uid: str, files: list[str], settings: ModuleSettings, job_key: str,
               viewer_images: tuple[str, ...] = (), final: bool = False):
    """Run one module in this process and return its ModuleOutput, with the route's viewer images added."""
    spec = MODULES[module]
    output = spec.load()(ModuleInput(study_uid=study_uid, files=files, settings=settings, job_key=job_key,
                                     final=final))
    from node.process.modules.viewer import add_viewer_outputs   # here: the receive path never loads the imaging code
    add_viewer_outputs(output, viewer_images)
    return output


def log_failure(what: str, failure: Failure, exc: BaseException) -> None:
    """An unusable input is a warning with its reason; an internal error is logged with its traceback."""
    if failure.kind is FailureKind.INPUT:
        log.warning("%s: input not usable (%s): %s", what, failure.step, failure.reason)
    else:
        log.error("%s: internal error at step '%s', reference %s", what, failure.step, failure.reference,
                  exc_info=exc)


def write_failure(directory: Path, failure: Failure) -> None:
    """results.json of a failed job: the reason, for the person who opens the folder."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps({"state": "failed", "failure": failure.as_dict()}, indent=2))


def replace_folder(partial: Path, final: Path) -> None:
    """Put a complete folder in place of final, whatever another attempt left there."""
    for _ in range(3):
        shutil.rmtree(final, ignore_errors=True)
        try:
            partial.rename(final)
            return
        except OSError:      # another attempt renamed its folder in between: take its place again
            continue
    raise OSError(f"could not put {partial.name} in place of {final.name}")


def execute_job(job_id: int, module: str, study_uid: str, files: list[str], settings: ModuleSettings, job_key: str,
                results_root: str, viewer_images: tuple[str, ...] = (),
                final_run: bool = False) -> tuple[str, list[dict], str | None]:
    """Worker-process entry point: run the module and leave its outputs in results/<job id>/; returns that
    folder, the outputs, and what the module still waits for (its results' "waiting_for"), if anything."""
    log.debug("job %d: module %s in worker process %d, %d input files", job_id, module, os.getpid(), len(files))
    final = Path(results_root) / str(job_id)
    # an attempt's own partial folder: an earlier attempt of the job may still run (a Dask task the node,
    # killed, could not stop); both write the same objects, and the last to finish leaves its folder
    partial = final.with_name(f"{job_id}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        output = run_module(module, study_uid, files, settings, job_key, viewer_images, final_run)
        outputs = write_outputs(output, partial)
    except Exception as exc:
        shutil.rmtree(partial, ignore_errors=True)
        failure = failure_of(exc)
        log_failure(f"job {job_id}", failure, exc)
        shutil.rmtree(final, ignore_errors=True)
        write_failure(final, failure)
        raise ModuleFailed(*failure.as_dict().values()) from None
    replace_folder(partial, final)
    for out in outputs:
        out["path"] = str(final / Path(out["path"]).name)
    return str(final), outputs, output.results.get("waiting_for")


class JobRunner:
    def __init__(self, config: Config, index: Index, layout: Layout, registry: Registry | None = None):
        self.config = config
        self.registry = registry
        self.index = index
        self.layout = layout
        self.results_root = layout.results
        self._pool: ProcessPoolExecutor | None = None
        self._dask = None           # node.process.cluster.DaskExecutor, with [executor] kind = "dask"
        self._cluster_lock = threading.Lock()
        self._running: dict[int, Future] = {}
        self._lock = threading.RLock()   # a future already done at submit runs its callback in the polling thread
        self._finishing = threading.Lock()   # held while a finished job is recorded; shutdown waits for it
        self._stopping = False

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: the node has threads (pynetdicom, apscheduler); forking them is unsafe.
            self._pool = ProcessPoolExecutor(max_workers=self.config.node.workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=logs.configure, initargs=logs.settings())
        return self._pool

    def _cluster(self):
        """The Dask executor ([executor] kind = "dask"), connected at first use; None while the scheduler cannot
        be reached (jobs then stay queued, and the next poll tries again)."""
        with self._cluster_lock:     # one client, whichever thread asks first (the poll, backfill's in-flight)
            if self._dask is not None and not self._dask.connected:
                log.error("lost the Dask scheduler %s; connecting again", self.config.executor.scheduler)
                self._dask.shutdown()
                self._dask = None
            if self._dask is None:
                from node.process.cluster import DaskExecutor
                try:
                    self._dask = DaskExecutor(self.config.executor, self.results_root)
                except (OSError, TimeoutError) as exc:
                    log.error("Dask scheduler %s not reachable (%s); jobs stay queued",
                              self.config.executor.scheduler, exc)
            return self._dask

    def capacity(self) -> int:
        """Jobs that may run at once: local worker processes, or the Dask cluster's worker threads (0 while
        it cannot be reached)."""
        if self.config.executor.kind == "dask":
            cluster = self._cluster()
            try:
                return cluster.capacity() if cluster is not None else 0
            except (OSError, TimeoutError, AttributeError) as exc:   # the client closing under us
                log.error("Dask scheduler %s: %s", self.config.executor.scheduler, exc)
                return 0
        return self.config.node.workers

    def _start(self, job: Job, settings: ModuleSettings, viewer_images: tuple[str, ...]) -> Future:
        args = (job.id, job.module, job.study_uid, job.inputs["files"], settings, job.input_key)
        if self.config.executor.kind == "dask":
            return self._cluster().submit(*args, viewer_images, bool(job.inputs.get("final")))
        return self._executor().submit(execute_job, *args, str(self.results_root), viewer_images,
                                       bool(job.inputs.get("final")))

    def settings(self, study_uid: str) -> ModuleSettings:
        """Configured inputs with this study's own values (`cmr-node inputs set`) on top."""
        return with_study_values(self.config.inputs, self.index.study_inputs(study_uid))

    def poll(self) -> None:
        """Start queued jobs while workers are free (run by the scheduler)."""
        with self._lock:
            free = self.capacity() - len(self._running)
            if free <= 0:
                return
            for job in self.index.claim_jobs(free):
                self._submit(job)

    def _submit(self, job: Job) -> None:
        log.info("job %d started: module %s, attempt %d", job.id, job.module, job.attempts)
        route = next((r for r in self.config.routes if r.name == job.route), None)
        try:
            settings = self.settings(job.study_uid)
        except ValueError as exc:   # a study value stored by an older version that this one refuses
            self.index.fail_job(job.id, Failure(FailureKind.INPUT, Step.READ, f"per-study value: {exc}"))
            return
        try:
            future = self._start(job, settings, route.viewer_images if route else ())
        except OSError as exc:      # an input file gone (bytes for a Dask worker are read here)
            self.index.fail_job(job.id, Failure(FailureKind.INTERNAL, Step.READ, f"could not read an input: {exc}"))
            return
        except (BrokenProcessPool, RuntimeError) as exc:
            self._pool = None
            self.index.fail_job(job.id, Failure(FailureKind.INTERNAL, Step.RUN, f"could not start a worker: {exc}"))
            return
        self._running[job.id] = future
        future.add_done_callback(lambda f, job=job: self._finished(job, f))

    def _finished(self, job: Job, future: Future) -> None:
        with self._lock:
            self._running.pop(job.id, None)
        with self._finishing:
            self._record(job, future)

    def _record(self, job: Job, future: Future) -> None:
        if self._stopping or future.cancelled():
            return  # stopping: the job stays 'running' and is re-queued at the next start
        exc = future.exception()
        if isinstance(exc, BrokenProcessPool):
            self._pool = None
            self.index.fail_job(job.id, Failure(FailureKind.INTERNAL, Step.RUN,
                                                "the worker process died (out of memory?); see the system log"))
            log.error("job %d failed: worker process died", job.id)
        elif isinstance(exc, ModuleFailed):
            self.index.fail_job(job.id, exc.failure, str(self.results_root / str(job.id)))
            log.error("job %d failed (%s, %s): %s", job.id, exc.failure.kind, exc.failure.step, exc.failure.reason)
        elif type(exc).__name__ == "KilledWorker":    # Dask gave up after its allowed worker deaths
            self.index.fail_job(job.id, Failure(FailureKind.INTERNAL, Step.RUN, "every Dask worker that ran it died "
                                                "(out of memory?); see the workers' logs"))
            log.error("job %d failed: its Dask workers died", job.id)
        elif isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__.endswith("CancelledError"):
            self.index.release_job(job.id)   # the cluster, not the job: queued again for the next poll
            log.warning("job %d queued again: the Dask cluster lost it (%s)", job.id, exc)
        elif exc is not None:
            self.index.fail_job(job.id, Failure(FailureKind.INTERNAL, Step.RUN, f"could not run the job: {exc}"))
            log.error("job %d failed: %s", job.id, exc)
        else:
            output_dir, outputs, waiting = future.result()
            route = next((r for r in self.config.routes if r.name == job.route), None)
            destinations = list(route.destinations) if route else []
            # the registry first: once finish_job commits, the outputs may be sent and, with the study
            # complete, purged by retention before a later read of the report could take its numbers
            self._register([o for o in outputs if o["sop_class_uid"] in SR_SOP_CLASSES])
            # derived inputs back in before the job is done: a study with no job running and nothing new is
            # complete, and would be summarised without the T1 maps this job made
            self._reingest(job.study_uid, [o for o in outputs if o.get("reingest")])
            self.index.finish_job(job.id, output_dir, outputs, destinations, job.study_uid, waiting)
            log.info("job %d done: %d objects for %d destinations", job.id, len(outputs), len(destinations))

    def _register(self, outputs: list[dict]) -> None:
        """Our own reports into the registry, parsed from the files just written (as anyone's would be)."""
        for out in outputs if self.registry is not None else []:
            try:
                register_report(self.registry, Path(out["path"]))
            except self.registry.errors as exc:   # the feeder's sweep does not see job outputs: say so loudly
                log.error("registry: could not store report %s: %s", out["sop_instance_uid"], exc)

    def _reingest(self, study_uid: str, outputs: list[dict]) -> None:
        """Take derived inputs (a T1 map from raw MOLLI) back in, as if a scanner had sent them; in a study
        known complete (retrieved from an archive), they are all there is to wait for."""
        for out in outputs:
            try:
                ingest_file(self.layout, self.index, Path(out["path"]))
            except (OSError, RejectedInstance, sqlite3.Error) as exc:
                log.error("could not take output %s back in: %s", out["sop_instance_uid"], exc)
        if outputs:
            self.index.mark_known_complete(study_uid, only_if_marked=True)

    def busy(self) -> int:
        return len(self._running)

    def shutdown(self) -> None:
        """Stop workers now; unfinished jobs stay 'running' and are re-queued at the next start."""
        with self._lock:
            self._stopping = True
            pool, self._pool = self._pool, None
            cluster, self._dask = self._dask, None
        with self._finishing:   # a job being recorded now is recorded whole before the index and registry close
            pass
        if cluster is not None:
            cluster.shutdown()
        if pool is not None:
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
