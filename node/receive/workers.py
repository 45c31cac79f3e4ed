"""Receive on every core: the node's listener accepts, receive worker processes serve the associations.

One Python process is held to one core by its interpreter lock: with four scanners sending, the node took 240
images/s to Orthanc's 340 (benchmarks/receive_load.py) with one core busy and the other idle. So the listener
hands each accepted connection (its file descriptor, over a Unix socket: SCM_RIGHTS) to the worker with the
fewest open associations, and each worker runs the same Receiver: its checks, files and index commits.
SQLite's write-ahead log lets the workers' commits interleave. A worker reports its counters when an
association closes; the node sums them for /metrics.
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing
import signal
import socket
import threading
from dataclasses import asdict, dataclass, field

from node.config import Config
from node.ops import logs
from node.receive.listener import Address, Listener
from node.receive.receiver import MAXIMUM_ASSOCIATIONS, ReceiveCounters, Receiver, receiver_from_config

log = logging.getLogger("cmr_node.receive")

MESSAGE_BYTES = 4096
START_TIMEOUT_SECONDS = 120     # a worker imports pydicom and opens the index before it says it is ready


@dataclass
class _Worker:
    number: int
    process: multiprocessing.process.BaseProcess
    channel: socket.socket
    open: int = 0
    alive: bool = True
    counters: ReceiveCounters | None = None
    ready: threading.Event = field(default_factory=threading.Event)


class ReceiveWorkers:
    """The node side: the listening socket, the worker processes, and the counters they report."""

    def __init__(self, config: Config, count: int):
        self.config = config
        self.count = count
        self._workers: list[_Worker] = []
        self._retired = ReceiveCounters()     # what workers that ended had counted
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener = Listener(self._hand_over)

    @property
    def port(self) -> int:
        return self._listener.port

    @property
    def counters(self) -> ReceiveCounters:
        total = ReceiveCounters()
        with self._lock:
            for counted in [self._retired] + [worker.counters for worker in self._workers if worker.counters]:
                total.add(counted)
        return total

    def serving(self) -> bool:
        """For /healthz: the listener accepts connections and a worker is there to take them."""
        with self._lock:
            return self._listener.accepting() and any(worker.alive for worker in self._workers)

    def _spawn(self, number: int) -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = multiprocessing.get_context("spawn").Process(
            target=serve_handed_over, args=(self.config, theirs, math.ceil(MAXIMUM_ASSOCIATIONS / self.count),
                                            logs.settings()), name=f"cmr-node-receive-{number}", daemon=True)
        process.start()
        theirs.close()
        worker = _Worker(number, process, ours)
        threading.Thread(target=self._read_reports, args=(worker,), daemon=True,
                         name=f"receive-worker-{number}").start()
        return worker

    def start(self, host: str, port: int) -> None:
        self._workers = [self._spawn(number) for number in range(self.count)]
        for worker in self._workers:       # the port opens only when every worker can serve at once
            if not worker.ready.wait(START_TIMEOUT_SECONDS) or not worker.alive:
                raise RuntimeError(f"receive worker {worker.number} did not start (exit code "
                                   f"{worker.process.exitcode}); see the log above")
        self._listener.start(host, port)
        log.info("listening as AE %s on %s:%d with %d receive processes%s", self.config.node.ae_title, host,
                 self.port, self.count, " (TLS only)" if self.config.tls.listener else "")

    def _hand_over(self, connection: socket.socket, address: Address) -> None:
        with self._lock:
            alive = [w for w in self._workers if w.alive]
            if not alive:
                raise RuntimeError("no receive worker is running")
            worker = min(alive, key=lambda w: w.open)
            worker.open += 1
        try:
            socket.send_fds(worker.channel, [json.dumps(list(address)).encode()], [connection.fileno()])
        finally:
            connection.close()     # the worker holds its own copy of the descriptor now

    def _read_reports(self, worker: _Worker) -> None:
        while True:
            try:
                message = worker.channel.recv(MESSAGE_BYTES)
            except OSError:
                message = b""
            if not message:
                break
            report = json.loads(message)
            if report.get("ready"):
                worker.ready.set()
                continue
            with self._lock:
                worker.open -= 1
                worker.counters = ReceiveCounters(**report["counters"])
        with self._lock:
            worker.alive = False
        worker.ready.set()          # a worker that died while starting must not keep start() waiting
        if self._stopping.is_set():
            return
        worker.process.join(timeout=5)
        log.error("receive worker %d ended (exit code %s); starting another", worker.number,
                  worker.process.exitcode)
        replacement = self._spawn(worker.number)
        with self._lock:
            if worker.counters:
                self._retired.add(worker.counters)
            self._workers[self._workers.index(worker)] = replacement
        worker.channel.close()

    def stop(self) -> None:
        """No new connections; each worker finishes the instances it is writing, then exits."""
        self._stopping.set()
        self._listener.stop()
        for worker in self._workers:
            try:
                worker.channel.shutdown(socket.SHUT_WR)     # end of hand-overs: the worker stops
            except OSError:
                pass
        for worker in self._workers:
            worker.process.join(timeout=60)
            worker.channel.close()


def serve_handed_over(config: Config, channel: socket.socket, maximum_associations: int,
                      log_settings: tuple[str, str]) -> None:
    """A worker process: serve each connection the node hands over, until the node closes the channel."""
    from node.network.tls import server_context
    from node.store.audit import AuditLog
    from node.store.index import Index
    from node.store.layout import Layout

    logs.configure(*log_settings)
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the node stops its workers itself, after its listener
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    layout = Layout(config.node.data_dir)
    index = Index(layout.index_path, flush_commits=False)    # see Node: the files are flushed, the rows at start
    audit = AuditLog(layout.root / "audit.log")
    send_lock = threading.Lock()
    receiver: Receiver

    def report() -> None:
        with send_lock:
            channel.send(json.dumps({"counters": asdict(receiver.counters)}).encode())

    receiver = receiver_from_config(config, layout, index, audit,
                                    server_context(config.tls) if config.tls.listener else None,
                                    maximum_associations=maximum_associations, on_closed=report)
    channel.send(json.dumps({"ready": True}).encode())
    while True:
        try:
            message, descriptors, _, _ = socket.recv_fds(channel, MESSAGE_BYTES, 1)
        except OSError:
            break
        if not descriptors:
            break
        host, port = json.loads(message)
        receiver.threads.run(socket.socket(fileno=descriptors[0]), (host, port))
    receiver.threads.stop()
    index.close()
    audit.close()
