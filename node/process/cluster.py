"""Module jobs on a Dask distributed cluster (`[executor] kind = "dask"`).

The node keeps the index, the outbox and the registry; a worker only runs the module. With `inputs =
"bytes"` a job's input files travel with the task and its outputs come back as bytes, which the node writes
into results/<job id>/ as a local worker would (results/<job id>.partial/, then renamed); with `inputs =
"files"` the workers see the node's data_dir at the same path and run the local entry point itself.

A worker that dies mid-job: the scheduler runs the task again on another worker (Dask's own
`distributed.scheduler.allowed-failures`, 3 by default, before it gives up with KilledWorker). The node
stopping: its client closes, the scheduler forgets the tasks, and the jobs, still 'running' in the index,
are queued again at the next start.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from concurrent.futures import Future
from pathlib import Path

from node.errors import failure_of
from node.process.jobs import (ModuleFailed, execute_job, log_failure, replace_folder, run_module, write_failure,
                               write_outputs)
from node.settings import ExecutorSettings, ModuleSettings

log = logging.getLogger("cmr_node.jobs")

CONNECT_TIMEOUT_S = 10


def run_job_elsewhere(job_id: int, module: str, study_uid: str, inputs: list[tuple[str, bytes]],
                      settings: ModuleSettings, job_key: str, viewer_images: tuple[str, ...],
                      final_run: bool) -> tuple[dict[str, bytes], list[dict], str | None]:
    """Worker entry point (`inputs = "bytes"`): run the module on input files written into a folder of the
    worker's own; return the output files as {path relative to the job folder: bytes}, the outputs with
    relative paths, and what the module still waits for."""
    with tempfile.TemporaryDirectory(prefix=f"cmr-node-job-{job_id}-") as work:
        inputs_dir, outputs_dir = Path(work) / "inputs", Path(work) / "outputs"
        inputs_dir.mkdir()
        files = []
        for k, (name, data) in enumerate(inputs):
            path = inputs_dir / f"{k:05d}_{Path(name).name}"   # numbered: two series may hold equal names
            path.write_bytes(data)
            files.append(str(path))
        try:
            output = run_module(module, study_uid, files, settings, job_key, viewer_images, final_run)
            outputs = write_outputs(output, outputs_dir)
        except Exception as exc:
            failure = failure_of(exc)
            log_failure(f"job {job_id} (Dask worker {os.getpid()})", failure, exc)
            raise ModuleFailed(*failure.as_dict().values()) from None
        produced = {str(p.relative_to(outputs_dir)): p.read_bytes() for p in outputs_dir.rglob("*") if p.is_file()}
        for out in outputs:
            out["path"] = str(Path(out["path"]).relative_to(outputs_dir))
        return produced, outputs, output.results.get("waiting_for")


def write_returned(job_id: int, results_root: Path, produced: dict[str, bytes],
                   outputs: list[dict]) -> tuple[str, list[dict]]:
    """The node's side of run_job_elsewhere: the files into results/<job id>/, complete or not at all."""
    final = results_root / str(job_id)
    partial = final.with_name(f"{job_id}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for relative, data in produced.items():
        target = partial / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    partial.mkdir(parents=True, exist_ok=True)
    replace_folder(partial, final)
    return str(final), [dict(out, path=str(final / out["path"])) for out in outputs]


class DaskExecutor:
    """Submits module jobs to a Dask scheduler; each submission gives a concurrent.futures.Future that ends
    as execute_job would: (job folder, outputs, waiting_for), or ModuleFailed."""

    def __init__(self, settings: ExecutorSettings, results_root: Path):
        from distributed import Client   # here: a node with local workers never loads Dask
        self.settings = settings
        self.results_root = Path(results_root)
        self.client = Client(settings.scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        self._tasks: dict = {}      # job id -> Dask future, held: a released Dask future cancels its task
        log.info("module jobs run on the Dask cluster at %s", settings.scheduler)

    @property
    def connected(self) -> bool:
        """False once the client gave up on its scheduler (it closes itself after its timeout)."""
        return self.client.status == "running"

    def capacity(self) -> int:
        """Jobs to hand to the cluster at once: its worker threads (at least one, so that jobs wait on the
        scheduler for a worker that joins)."""
        threads = sum(self.client.nthreads().values())
        return max(1, threads) * self.settings.jobs_per_worker_thread

    def submit(self, job_id: int, module: str, study_uid: str, files: list[str], settings: ModuleSettings,
               job_key: str, viewer_images: tuple[str, ...], final_run: bool) -> Future:
        done: Future = Future()
        if self.settings.inputs == "files":
            task = self.client.submit(execute_job, job_id, module, study_uid, files, settings, job_key,
                                      str(self.results_root), viewer_images, final_run, pure=False)
        else:
            payload = [(path, Path(path).read_bytes()) for path in files]
            task = self.client.submit(run_job_elsewhere, job_id, module, study_uid, payload, settings, job_key,
                                      viewer_images, final_run, pure=False)
        done.set_running_or_notify_cancel()   # before the callback, which may run at once on Dask's thread
        self._tasks[job_id] = task
        task.add_done_callback(lambda t: self._settle(job_id, t, done))
        return done

    def _settle(self, job_id: int, task, done: Future) -> None:
        self._tasks.pop(job_id, None)
        try:
            if task.status == "cancelled":
                done.set_exception(ConnectionError("the Dask scheduler cancelled the task (client disconnected)"))
                return
            result = task.result()
            if self.settings.inputs == "files":
                done.set_result(result)
                return
            produced, outputs, waiting = result
            folder, outputs = write_returned(job_id, self.results_root, produced, outputs)
            done.set_result((folder, outputs, waiting))
        except ModuleFailed as exc:
            if self.settings.inputs == "bytes":
                write_failure(self.results_root / str(job_id), exc.failure)
            done.set_exception(exc)
        except BaseException as exc:     # KilledWorker, a lost scheduler, a full disk here
            done.set_exception(exc)

    def shutdown(self) -> None:
        self._tasks.clear()
        self.client.close(timeout=10)
