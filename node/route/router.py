"""Completion and routing: when a series or a study is complete, which modules run on what.

Completion is derived from the index (last time an instance arrived), so a
restarted node picks up exactly where it stopped. A complete series is
classified from its headers (node/inputs/kinds.py): the kinds it holds go
into the index and the log, and routes take series by kind (Series
Description rules are a site's addition). A route gives a module only the
instances of the kinds it takes, so the raw images and the inline map that
Philips keeps in one series go to different modules. A job is keyed by its
route and a digest of its inputs: the same inputs never give a second job,
while a series that grows (a new T1 map arrives) gives a new job: the re-run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime

from analysis.geometry import same_slice
from node.config import Config, Route
from node.store.index import Index, kinds_of
from node.process.modules import MODULES
from node.inputs.kinds import SAME_ACQUISITION_S, T1_MAP, classify_files

log = logging.getLogger("cmr_node.route")

DYNAMIC_ACQUISITIONS = 3      # three acquisitions of one slice ...
DYNAMIC_WINDOW_MIN = 10.0     # ... within ten minutes: maps every 1-2 min after injection, dDCE
PAIR_GAP_MIN = 5.0            # a native and a post-contrast map are minutes apart (ECV: 10-20 min)


def input_key(route: Route, sop_instance_uids: list[str], study_inputs: dict[str, str] | None = None) -> str:
    """Digest of module, module version, the exact input instances and any per-study inputs."""
    spec = MODULES[route.module]
    digest = hashlib.sha256(f"{spec.name}\n{spec.version}\n".encode())
    for uid in sorted(sop_instance_uids):
        digest.update(uid.encode() + b"\n")
    for key, value in sorted((study_inputs or {}).items()):
        digest.update(f"{key}={value}\n".encode())
    return digest.hexdigest()


def t1_timeline(series_rows) -> str | None:
    """How the study's T1 maps are spread in time, from the slice planes and acquisition times their headers
    give: 'dynamic' when a slice was acquired DYNAMIC_ACQUISITIONS times within DYNAMIC_WINDOW_MIN (dDCE);
    else 'paired' when a slice was acquired twice PAIR_GAP_MIN or more apart (native and post-contrast:
    ECV); else 'single' (one acquisition, repeats of it, or a dDCE study before its second post-contrast
    map); None without T1 maps. Maps less than SAME_ACQUISITION_S apart are one acquisition."""
    planes: list[tuple[tuple, list[datetime]]] = []
    for row in series_rows:
        if T1_MAP not in kinds_of(row) or not row["classification"]:
            continue
        for plane, acquired in json.loads(row["classification"])["kinds"][T1_MAP].get("acquired", []):
            match = next((times for key, times in planes if key[:-1] == tuple(plane[:-1])
                          and same_slice(key[-1], plane[-1])), None)
            if match is None:
                planes.append((tuple(plane), match := []))
            match.append(datetime.fromisoformat(acquired))
    if not planes:
        return None
    timeline = "single"
    for _, times in planes:
        times.sort()
        starts = [t for k, t in enumerate(times) if k == 0 or (t - times[k - 1]).total_seconds() >= SAME_ACQUISITION_S]
        minutes = [(t - starts[0]).total_seconds() / 60.0 for t in starts]
        if any(sum(m <= t <= m + DYNAMIC_WINDOW_MIN for t in minutes) >= DYNAMIC_ACQUISITIONS for m in minutes):
            return "dynamic"
        if minutes[-1] >= PAIR_GAP_MIN:
            timeline = "paired"
    return timeline


class Router:
    def __init__(self, config: Config, index: Index):
        self.config = config
        self.index = index

    def classify(self, series_row):
        """Classify a complete series from its files' headers; record and log it; return the updated row."""
        instances = self.index.instances_of_series(series_row["series_uid"])
        try:
            found = classify_files([i["path"] for i in instances])
        except Exception as exc:   # a file the receiver took but pydicom now cannot read: say so, route nothing
            log.error("series %s could not be classified: %s: %s", series_row["series_uid"], type(exc).__name__, exc)
            return self.index.set_series_kinds(series_row["series_uid"], ["other"], {"error": str(exc)}, {})
        series = found[0]
        log.info("series %s (number %s): %s", series_row["series_uid"], series.series_number, series.explain())
        return self.index.set_series_kinds(series_row["series_uid"], series.kinds, series.summary(),
                                           dict(series.instances))

    def _queue(self, route: Route, study_uid: str, series_rows: list) -> int | None:
        instances = [i for s in series_rows for i in self.index.instances_of_series(s["series_uid"])
                     if kinds_of(i) & set(route.kinds)]
        present = set().union(*(kinds_of(i) for i in instances)) if instances else set()
        if not instances or not set(route.requires) <= present:
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
        complete = self.index.complete_series_of_study(study_uid)
        timeline = t1_timeline(complete)
        for route in self.config.routes:
            if not route.matches(series_row, timeline):
                continue
            if route.scope == "series":
                jobs.append(self._queue(route, study_uid, [series_row]))
            elif route.scope == "study-so-far":
                matching = [s for s in complete if route.matches(s, timeline)]
                jobs.append(self._queue(route, study_uid, matching))
        return [j for j in jobs if j is not None]

    def final_runs(self, study_uid: str) -> list[int]:
        """For each study-so-far route whose latest job of the study ended waiting for more input (dDCE maps
        that never reached the first window), one last run that knows the study is complete, so that its
        module can report what is missing."""
        jobs = []
        for route in (r for r in self.config.routes if r.scope == "study-so-far"):
            if (waiting := self.index.waiting_job(study_uid, route.name)) is not None:
                job_id = self.index.add_job(route.name, route.module, study_uid, f"{waiting.input_key}:final",
                                            {**waiting.inputs, "final": True})
                if job_id is not None:
                    log.info("queued job %d: final run of route %s for study %s", job_id, route.name, study_uid)
                    jobs.append(job_id)
        return jobs

    def route_study(self, study_uid: str) -> list[int]:
        series = self.index.series_of_study(study_uid)
        timeline = t1_timeline(series)

        def queue(routes) -> list[int | None]:
            return [self._queue(route, study_uid, matching) for route in routes if route.scope == "study"
                    if (matching := [s for s in series if route.matches(s, timeline)])]
        jobs: list[int | None] = self.final_runs(study_uid) + queue(r for r in self.config.routes if not r.last)
        # routes marked last wait for a pass in which no other route queues anything (a final run included):
        # their outputs come first
        if not any(j is not None for j in jobs):
            jobs += queue(r for r in self.config.routes if r.last)
            # settled: no later pass queues more unless something new comes in (which unsettles the study)
            self.index.mark_settled(study_uid)
        jobs = [j for j in jobs if j is not None]
        if not jobs:
            if not self.index.has_jobs(study_uid):
                for line in self.unrouted(study_uid):
                    log.warning("study %s: nothing routed: %s", study_uid, line)
        return jobs

    def unrouted(self, study_uid: str) -> list[str]:
        """Why no route took each series of the study: its kinds and each route's reason."""
        series = self.index.series_of_study(study_uid)
        timeline = t1_timeline(series)
        lines = []
        for row in series:
            reasons = [route.mismatch(row, timeline) for route in self.config.routes]
            lines.append(f"series {row['series_uid']} ({row['kinds'] or 'unclassified'}): "
                         + ("; ".join(r for r in reasons if r) if self.config.routes else "no routes configured"))
        return lines

    def sweep(self, now: float | None = None) -> list[int]:
        """Complete quiet series and studies and queue their jobs (run by the scheduler)."""
        now = time.time() if now is None else now
        c = self.config.completion
        jobs = []
        complete = self.index.complete_quiet_series(c.series_quiet_seconds, now)
        for row in complete:
            log.info("series %s complete", row["series_uid"])
        # all of them classified before any is routed: a study-so-far route sees every one of its kinds
        for row in [self.classify(row) for row in complete]:
            jobs += self.route_series(row)
        for study_uid in self.index.complete_quiet_studies(c.study_quiet_seconds, now):
            log.info("study %s complete", study_uid)
            jobs += self.route_study(study_uid)
        # routed again until settled: its jobs ended with nothing taken back in (one failed), or a stop came
        # between completing and routing it; jobs are keyed by their inputs, so none is made twice
        for study_uid in self.index.unsettled_studies():
            jobs += self.route_study(study_uid)
        return jobs
