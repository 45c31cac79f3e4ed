"""Completion and routing: when a series or a study is complete, which modules run on what.

Completion is derived from the index (last time an instance arrived), so a
restarted node picks up exactly where it stopped. A job is keyed by its route
and a digest of its inputs: the same inputs never give a second job, while a
series that grows (a new T1 map arrives) gives a new job: the re-run.
"""
from __future__ import annotations

import hashlib
import logging
import time

from node.config import Config, Route
from node.index import Index
from node.modules import MODULES

log = logging.getLogger("cmr_node.route")


def input_key(route: Route, sop_instance_uids: list[str], study_inputs: dict[str, str] | None = None) -> str:
    """Digest of module, module version, the exact input instances and any per-study inputs."""
    spec = MODULES[route.module]
    digest = hashlib.sha256(f"{spec.name}\n{spec.version}\n".encode())
    for uid in sorted(sop_instance_uids):
        digest.update(uid.encode() + b"\n")
    for key, value in sorted((study_inputs or {}).items()):
        digest.update(f"{key}={value}\n".encode())
    return digest.hexdigest()


class Router:
    def __init__(self, config: Config, index: Index):
        self.config = config
        self.index = index

    def _queue(self, route: Route, study_uid: str, series_rows: list) -> int | None:
        instances = [i for s in series_rows for i in self.index.instances_of_series(s["series_uid"])]
        if not instances:
            return None
        key = input_key(route, [i["sop_instance_uid"] for i in instances], self.index.study_inputs(study_uid))
        inputs = {"series": [s["series_uid"] for s in series_rows], "files": [i["path"] for i in instances]}
        job_id = self.index.add_job(route.name, route.module, study_uid, key, inputs)
        if job_id is not None:
            log.info("queued job %d: route %s, module %s, study %s, %d series, %d instances",
                     job_id, route.name, route.module, study_uid, len(series_rows), len(instances))
        return job_id

    def route_series(self, series_row) -> list[int]:
        jobs = []
        study_uid = series_row["study_uid"]
        for route in self.config.routes:
            if not route.matches(series_row):
                continue
            if route.scope == "series":
                jobs.append(self._queue(route, study_uid, [series_row]))
            elif route.scope == "study-so-far":
                matching = [s for s in self.index.complete_series_of_study(study_uid) if route.matches(s)]
                jobs.append(self._queue(route, study_uid, matching))
        return [j for j in jobs if j is not None]

    def route_study(self, study_uid: str) -> list[int]:
        series = self.index.series_of_study(study_uid)
        jobs = []
        for route in self.config.routes:
            if route.scope != "study":
                continue
            matching = [s for s in series if route.matches(s)]
            if matching:
                jobs.append(self._queue(route, study_uid, matching))
        return [j for j in jobs if j is not None]

    def sweep(self, now: float | None = None) -> list[int]:
        """Complete quiet series and studies and queue their jobs (run by the scheduler)."""
        now = time.time() if now is None else now
        c = self.config.completion
        jobs = []
        for row in self.index.complete_quiet_series(c.series_quiet_seconds, now):
            log.info("series %s complete", row["series_uid"])
            jobs += self.route_series(row)
        for study_uid in self.index.complete_quiet_studies(c.study_quiet_seconds, now):
            log.info("study %s complete", study_uid)
            jobs += self.route_study(study_uid)
        return jobs
