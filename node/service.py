"""The running node: receiver, completion/routing, job runner and dispatcher on one scheduler."""
from __future__ import annotations

import logging
import signal
import threading

from apscheduler.schedulers.background import BackgroundScheduler

from node.config import Config
from node.store.audit import AuditLog
from node.dispatch.dispatcher import Dispatcher
from node.store.index import Index
from node.process.jobs import JobRunner
from node.ops.monitoring import MonitoringServer
from node.receive.receiver import Receiver, index_unindexed_files, receiver_from_config
from node.registry import RegistryFeeder, open_registry
from node.store.retention import Purger
from node.route.router import Router
from node.store.layout import Layout
from node.network.tls import server_context
from node.receive.workers import ReceiveWorkers

log = logging.getLogger("cmr_node")


class Node:
    def __init__(self, config: Config):
        self.config = config
        self.layout = Layout(config.node.data_dir)
        self.layout.create()
        self.index = Index(self.layout.index_path)
        self.audit = AuditLog(self.layout.root / "audit.log")
        # built here in any case: an unusable certificate or key stops the node at start, with its message
        listener_tls = server_context(config.tls) if config.tls.listener else None
        self.receiver: Receiver | ReceiveWorkers
        self.receive_index: Index | None = None
        if config.node.receive_processes:
            self.receiver = ReceiveWorkers(config, config.node.receive_processes)
        else:
            # the receive path's own connection: its commits are not flushed, its files are (index_unindexed_files)
            self.receive_index = Index(self.layout.index_path, flush_commits=False)
            self.receiver = receiver_from_config(config, self.layout, self.receive_index, self.audit, listener_tls)
        self.router = Router(config, self.index)
        self.registry = open_registry(config)
        self.feeder = RegistryFeeder(self.registry, self.index)
        self.runner = JobRunner(config, self.index, self.layout, self.registry)
        self.dispatcher = Dispatcher(config, self.index, self.audit)
        self.purger = Purger(self.index, self.layout, config.retention.days, self.audit)
        self.scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        self._stopped = threading.Event()
        self.monitoring: MonitoringServer | None = None

    @property
    def port(self) -> int:
        return self.receiver.port

    def start(self) -> None:
        requeued = self.index.requeue_interrupted_jobs()
        if requeued:
            log.info("re-queued %d job(s) interrupted by the last stop", requeued)
        recovered = index_unindexed_files(self.layout, self.index)
        if recovered:
            log.warning("indexed %d received file(s) the index had lost (a power cut?)", recovered)
        self.receiver.start(self.config.node.host, self.config.node.port)
        c, d = self.config.completion, self.config.dispatch
        self.scheduler.add_job(self.router.sweep, "interval", seconds=c.sweep_interval_seconds, id="completion")
        self.scheduler.add_job(self.runner.poll, "interval", seconds=0.5, id="jobs")
        self.scheduler.add_job(self.dispatcher.send_due, "interval", seconds=d.interval_seconds, id="dispatch")
        self.scheduler.add_job(self.feeder.sweep, "interval", seconds=c.sweep_interval_seconds, id="registry")
        if self.config.retention.days > 0:
            self.scheduler.add_job(self.purger.sweep, "interval", seconds=self.config.retention.interval_minutes * 60,
                                   id="retention")
        self.scheduler.start()
        if self.config.node.metrics_port:
            self.monitoring = MonitoringServer(self, self.config.node.metrics_host, self.config.node.metrics_port)

    def stop(self) -> None:
        """Graceful stop: no new associations, current writes finish, queued work stays for the next start."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("stopping")
        self.receiver.stop()
        if self.receive_index is not None:
            self.receive_index.close()
        self.scheduler.shutdown(wait=True)
        self.runner.shutdown()
        self.index.close()
        self.registry.close()
        if self.monitoring:
            self.monitoring.stop()
        self.audit.close()
        log.info("stopped")

    def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stopped.set())
        self.start()
        # Waking now and then: a signal the kernel delivers to another thread (the listener's, an association's)
        # runs its Python handler only when the main thread next runs bytecode, which an untimed wait never does.
        while not self._stopped.wait(timeout=0.5):
            pass
        self._stopped.clear()
        self.stop()
