"""GET /healthz and GET /metrics (Prometheus text format) on a local port.

/healthz answers 200 when the listener is up, the scheduler runs, the index
answers and data_dir has more than min_free_mb free; otherwise 503. Both carry
a JSON or Prometheus body a person can read. Metrics are read from the node's
own state at scrape time (receiver counters, index), so they cannot drift.
"""
from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger("cmr_node.monitoring")


class NodeCollector:
    def __init__(self, node):
        self.node = node

    def collect(self):
        c = self.node.receiver.counters
        for name, value, help_text in (("instances_received", c.instances, "instances stored and acknowledged"),
                                       ("bytes_received", c.bytes, "bytes of instances stored"),
                                       ("associations", c.associations, "associations accepted"),
                                       ("rejected", c.rejected, "instances and associations refused")):
            yield CounterMetricFamily(f"cmr_node_{name}", help_text, value=value)
        jobs = GaugeMetricFamily("cmr_node_jobs", "jobs by module and state", labels=["module", "state"])
        seconds = CounterMetricFamily("cmr_node_module_seconds", "summed run time of finished jobs",
                                      labels=["module"])
        finished = CounterMetricFamily("cmr_node_module_runs", "finished jobs", labels=["module"])
        totals: dict[str, list[float]] = {}
        for row in self.node.index.job_counts():
            jobs.add_metric([row["module"], row["state"]], row["count"])
            if row["state"] in ("done", "failed"):
                total = totals.setdefault(row["module"], [0.0, 0.0])
                total[0] += row["seconds"]
                total[1] += row["count"]
        for module, (secs, runs) in totals.items():
            seconds.add_metric([module], secs)
            finished.add_metric([module], runs)
        outbox = GaugeMetricFamily("cmr_node_outbox", "outbox items by destination and state (dead = dead letters)",
                                   labels=["destination", "state"])
        for destination, states in self.node.index.status()["outbox"].items():
            for state, count in states.items():
                outbox.add_metric([destination, state], count)
        yield from (jobs, seconds, finished, outbox)


def health(node) -> tuple[bool, dict]:
    checks = {"listener": node.receiver.serving(), "scheduler": bool(node.scheduler.running)}
    try:
        node.index.status()
        checks["index"] = True
    except sqlite3.Error:
        checks["index"] = False
    free = shutil.disk_usage(node.layout.root).free
    checks["disk"] = free >= node.config.node.min_free_mb * 1024 * 1024
    return all(checks.values()), {"status": "ok" if all(checks.values()) else "failing", "checks": checks,
                                  "free_mb": round(free / 1024 / 1024)}


class MonitoringServer:
    def __init__(self, node, host: str, port: int):
        registry = CollectorRegistry()
        registry.register(NodeCollector(node))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                if self.path == "/healthz":
                    ok, body = health(node)
                    self._reply(200 if ok else 503, "application/json", json.dumps(body).encode())
                elif self.path == "/metrics":
                    self._reply(200, "text/plain; version=0.0.4", generate_latest(registry))
                else:
                    self._reply(404, "text/plain", b"not found: /healthz or /metrics\n")

            def _reply(self, code: int, kind: str, body: bytes):
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):   # scrapes every few seconds: not worth a log line each
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="monitoring", daemon=True)
        self.thread.start()
        log.info("health and metrics on http://%s:%d/healthz and /metrics", host, self.port)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
