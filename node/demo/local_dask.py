"""A Dask distributed cluster on this machine, for the tests and benchmarks: a scheduler and worker processes
started from this Python (the workers import cmr-node's modules as a cluster's would from the same image)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from node.demo.local_pacs import free_port

ROOT = Path(__file__).resolve().parents[2]


class DaskCluster:
    def __init__(self, directory: Path, workers: int = 2):
        self.directory = Path(directory)
        self.port = free_port()
        self.worker_count = workers
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / f"{name}.log", "ab")
        env = dict(os.environ, PYTHONPATH=str(ROOT), DASK_DISTRIBUTED__WORKER__DAEMON="False")
        return subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=self.directory, start_new_session=True)

    def start(self, timeout: float = 60.0) -> "DaskCluster":
        self.scheduler = self._spawn("scheduler", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                     "--port", str(self.port), "--no-dashboard")
        for k in range(self.worker_count):
            self.add_worker(f"worker-{k}")
        self.wait_for_workers(self.worker_count, timeout)
        return self

    def add_worker(self, name: str) -> subprocess.Popen:
        """A worker process without a nanny: killing it takes it away for good."""
        worker = self._spawn(name, "distributed.cli.dask_worker", self.address, "--name", name, "--nthreads", "1",
                             "--no-nanny", "--no-dashboard", "--local-directory", str(self.directory / name))
        self.workers.append(worker)
        return worker

    def alive_workers(self) -> int:
        from distributed import Client
        with Client(self.address, timeout=10) as client:
            return len(client.scheduler_info()["workers"])

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.alive_workers() >= count:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{count} Dask workers did not join; see {self.directory}")

    def kill_worker(self, worker: subprocess.Popen) -> None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
