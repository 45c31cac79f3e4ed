"""`cmr-node backfill`: a period's CMR studies from an archive, through the node's routes and modules.

The node runs as `serve` does (listener, completion, jobs, outbox, registry); on top, this driver finds the
studies (archive.py), brings in the series the routes can take, marks each study known complete once its
retrieve has ended (no quiet time is waited for), and waits until the node has processed it and sent every
output. At most `in_flight` studies are in the node at once, so an archive of years does not fill the disk.

Resumable: the index's `backfill` table holds each study's state (found, retrieved, done, failed). A second
run skips done studies, waits for retrieved ones (their jobs, if interrupted, are queued again at start), and
retrieves the rest again; jobs are keyed by their inputs, so nothing already processed is processed twice.
"""
from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date
from typing import TextIO

from dicom_out.parametric_map import MANUFACTURER as NODE_MANUFACTURER
from node.backfill.archive import Archive, ArchiveError, ArchiveSeries, ArchiveStudy
from node.config import Config
from node.inputs.kinds import REPORT, RT_STRUCTURE_SET, SEGMENTATION
from node.network.sop_classes import STORAGE_SOP_CLASSES
from node.receive.receiver import RejectedInstance, read_part10_header, store_instance
from node.store.index import Index
from node.store.layout import Layout

log = logging.getLogger("cmr_node.backfill")

# The modality a series of each kind has; every kind not named is an MR image. Reports are the node's own:
# they are made again, never retrieved.
KIND_MODALITIES = {SEGMENTATION: "SEG", RT_STRUCTURE_SET: "RTSTRUCT", REPORT: None}
POLL_S = 0.5
MOVED_INSTANCES_WAIT_S = 60.0


@dataclass(frozen=True)
class PlannedStudy:
    study: ArchiveStudy
    series: tuple[ArchiveSeries, ...]   # to retrieve
    skipped: str | None = None          # why not, when not
    retrieved: bool = False             # by an earlier run: only to wait for


def route_modalities(config: Config) -> set[str]:
    """The modalities of the series some route can take."""
    return {KIND_MODALITIES.get(kind, "MR") for route in config.routes for kind in route.kinds} - {None}


def series_wanted(series: ArchiveSeries, config: Config, description: re.Pattern | None) -> bool:
    """Whether a route may take the series, as far as its query attributes tell (the headers decide later)."""
    if series.modality and series.modality not in route_modalities(config):
        return False
    if description is not None and not description.search(series.description):
        return False
    # a route with a Series Description rule takes only what it matches; a route without one may take anything
    return any(r.series_description is None or r.series_description.search(series.description)
               for r in config.routes)


class Backfill:
    def __init__(self, config: Config, archive: Archive, source_name: str, index: Index, layout: Layout,
                 in_flight: int, progress: "Progress | None" = None):
        self.config = config
        self.archive = archive
        self.source_name = source_name
        self.index = index
        self.layout = layout
        self.in_flight = in_flight
        self.progress = progress or Progress(0, None)
        self.stop = threading.Event()

    # ---- what to do ---------------------------------------------------------------------------------------
    def plan(self, since: date, until: date | None, description: re.Pattern | None) -> list[PlannedStudy]:
        states = {uid: row["state"] for uid, row in self.index.backfill_rows().items()}
        plans = []
        for study in sorted(self.archive.studies(since, until), key=lambda s: (s.study_date, s.study_uid)):
            if states.get(study.study_uid) == "done":
                plans.append(PlannedStudy(study, (), "done by an earlier backfill"))
                continue
            if states.get(study.study_uid) == "retrieved":
                plans.append(PlannedStudy(study, (), retrieved=True))
                continue
            if self.index.study_processed(study.study_uid):
                plans.append(PlannedStudy(study, (), "already processed by this node"))
                continue
            series = self.archive.series(study.study_uid)
            # a report of the node's own Manufacturer is its result (a SEG may have been drawn with the same
            # builder, as the phantoms' are)
            if any(s.manufacturer == NODE_MANUFACTURER and s.modality == "SR" for s in series):
                plans.append(PlannedStudy(study, (), "the archive holds cmr-node results of it"))
                continue
            wanted = tuple(sorted((s for s in series if series_wanted(s, self.config, description)),
                                  key=lambda s: (int(s.number) if s.number.isdigit() else 1 << 30, s.series_uid)))
            plans.append(PlannedStudy(study, wanted, None if wanted else "no series a route can take"))
        return plans

    # ---- doing it ----------------------------------------------------------------------------------------
    def run(self, plans: list[PlannedStudy]) -> dict[str, int]:
        todo = [p for p in plans if p.skipped is None]
        waiting = {p.study.study_uid for p in todo if p.retrieved}
        counts = {"studies": len(plans), "skipped": len(plans) - len(todo), "done": 0, "failed": 0}
        self.progress.total = len(todo)
        for plan in (p for p in todo if p.study.study_uid not in waiting):
            while len(waiting) >= self.in_flight and not self.stop.is_set():
                self._collect(waiting, counts)
                self.stop.wait(POLL_S)
            if self.stop.is_set():
                break
            if self._retrieve(plan):
                waiting.add(plan.study.study_uid)
            else:
                counts["failed"] += 1
            self.progress.show(counts, len(waiting))
        while waiting and not self.stop.is_set():
            self._collect(waiting, counts)
            self.stop.wait(POLL_S)
        counts["left"] = len(todo) - counts["done"] - counts["failed"]   # stopped: in the node, or not begun
        self.progress.finish(counts)
        return counts

    def _retrieve(self, plan: PlannedStudy) -> bool:
        uid = plan.study.study_uid
        self.index.backfill_found(uid, self.source_name, plan.study.study_date, [s.series_uid for s in plan.series])
        received = 0
        try:
            for series in plan.series:
                count = self.archive.retrieve(uid, series.series_uid, self.config.node.ae_title,
                                              store=lambda raw, s=series: self._store(raw, uid, s.series_uid))
                self._wait_for_instances(series.series_uid, count)
                received += count
        except ArchiveError as exc:
            log.error("backfill: study %s not retrieved: %s", uid, exc)
            self.index.backfill_ended(uid, str(exc))
            return False
        if not received:
            self.index.backfill_ended(uid, "the archive sent no instance of the series it listed")
            log.error("backfill: study %s: the archive sent no instance", uid)
            return False
        self.index.backfill_retrieved(uid)
        log.info("backfill: study %s retrieved: %d series, %d instances", uid, len(plan.series), received)
        return True

    def _wait_for_instances(self, series_uid: str, count: int) -> None:
        """Some archives answer a C-MOVE before the node has acknowledged every C-STORE of it: the study is
        known complete only once the index holds as many instances of the series as the archive moved."""
        deadline = time.monotonic() + MOVED_INSTANCES_WAIT_S
        while len(self.index.instances_of_series(series_uid)) < count:
            if time.monotonic() > deadline:
                raise ArchiveError(f"series {series_uid}: the archive moved {count} instance(s), the node holds "
                                   f"{len(self.index.instances_of_series(series_uid))}")
            time.sleep(POLL_S)

    def _store(self, raw: bytes, study_uid: str, series_uid: str) -> None:
        """A WADO-RS instance: what a C-STORE gets (free-space guard, accepted SOP class, header checks), that it
        belongs to the series asked for, then on disk and indexed; any refusal is the study's failure."""
        min_free = self.config.node.min_free_mb * 1024 * 1024
        if min_free and shutil.disk_usage(self.layout.root).free < min_free:
            raise ArchiveError("free space in data_dir below [node] min_free_mb")
        try:
            ds, transfer_syntax = read_part10_header(raw)
        except RejectedInstance as exc:
            raise ArchiveError(f"WADO-RS sent an instance the node cannot use: {exc.comment}") from None
        if str(ds.get("SOPClassUID", "")) not in STORAGE_SOP_CLASSES:
            raise ArchiveError(f"WADO-RS sent SOP class {ds.get('SOPClassUID')}, which the node does not accept")
        if (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)) != (study_uid, series_uid):
            raise ArchiveError(f"WADO-RS sent instance {ds.SOPInstanceUID} of another series than {series_uid}")
        try:
            store_instance(self.layout, self.index, raw, ds, transfer_syntax, f"WADO-RS:{self.source_name}"[:64])
        except (OSError, sqlite3.Error) as exc:
            raise ArchiveError(f"could not store instance {ds.SOPInstanceUID}: {type(exc).__name__}: {exc}") from None

    def _collect(self, waiting: set[str], counts: dict[str, int]) -> None:
        for uid in [u for u in waiting if self.index.study_finished(u)]:
            waiting.discard(uid)
            self.index.backfill_ended(uid)
            counts["done"] += 1
            log.info("backfill: study %s processed", uid)
            self.progress.show(counts, len(waiting))


class Progress:
    """A progress line on a terminal (rewritten in place) and a progress line in the log per change."""

    def __init__(self, total: int, stream: TextIO | None = sys.stderr):
        self.total = total
        self.stream = stream if stream is not None and stream.isatty() else None
        self.started = time.monotonic()

    def line(self, counts: dict[str, int], in_flight: int) -> str:
        finished = counts["done"] + counts["failed"]
        hours = (time.monotonic() - self.started) / 3600.0
        rate = counts["done"] / hours if hours > 0 else 0.0
        return (f"backfill: {finished}/{self.total} studies ({counts['done']} done, {counts['failed']} failed), "
                f"{in_flight} in the node, {rate:.0f} studies/h")

    def show(self, counts: dict[str, int], in_flight: int) -> None:
        text = self.line(counts, in_flight)
        log.info("%s", text)
        if self.stream is not None:
            self.stream.write("\r" + text.ljust(100))
            self.stream.flush()

    def finish(self, counts: dict[str, int]) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()


def print_plan(plans: list[PlannedStudy], out: TextIO) -> None:
    """`--dry-run`: each study, what would be retrieved or why not."""
    for plan in plans:
        what = f"skip: {plan.skipped}" if plan.skipped else \
            "retrieved by an earlier run; wait for the node" if plan.retrieved else "retrieve " + "; ".join(
                f"{s.modality} #{s.number} {s.description!r}" for s in plan.series)
        out.write(f"{plan.study.study_date or '????????'} {plan.study.study_uid}: {what}\n")
    todo = [p for p in plans if p.skipped is None]
    out.write(f"{len(plans)} studies found, {len(todo)} to process "
              f"({sum(len(p.series) for p in todo)} series), {len(plans) - len(todo)} skipped\n")


def run_backfill(config: Config, source_name: str, since: date, until: date | None,
                 description: re.Pattern | None, dry_run: bool = False, in_flight: int | None = None,
                 out: TextIO = sys.stdout) -> int:
    """The `cmr-node backfill` command: 0 when every study to process was processed, 1 when some failed or
    the run was stopped, 2 when the archive could not be queried."""
    import signal

    from node.backfill.archive import open_archive
    from node.service import Node
    source = config.source(source_name)
    archive = open_archive(source, config.node.ae_title)
    if dry_run:
        layout = Layout(config.node.data_dir)
        index = Index(layout.index_path if layout.index_path.exists() else ":memory:")
        try:
            print_plan(Backfill(config, archive, source.name, index, layout, 1).plan(since, until, description), out)
        except ArchiveError as exc:
            out.write(f"cmr-node backfill: {exc}\n")
            return 2
        finally:
            index.close()
        return 0
    node = Node(config)
    node.start()
    try:
        backfill = Backfill(config, archive, source.name, node.index, node.layout,
                            in_flight or max(2, 2 * node.runner.capacity()), Progress(0))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: backfill.stop.set())
        try:
            plans = backfill.plan(since, until, description)
        except ArchiveError as exc:
            out.write(f"cmr-node backfill: {exc}\n")
            return 2
        counts = backfill.run(plans)
    finally:
        node.stop()
    out.write(f"backfill from {source.name}: {counts['studies']} studies found, {counts['done']} processed, "
              f"{counts['failed']} failed, {counts['skipped']} skipped, {counts['left']} left"
              + (" (stopped; run the same command again to go on)" if counts["left"] else "") + "\n")
    return 1 if counts["failed"] or counts["left"] else 0
