"""Retention: received instances and outputs go once they are old enough and owed to nobody.

A study is purged when `[retention] days` have passed since its last instance
arrived, it is complete, none of its jobs is queued or running, and every
output of every job has been accepted by every destination (no pending or dead
outbox item). The index forgets its instances first, then the files go; jobs,
outbox history, the registry and the audit log stay. Quarantined files older
than the same age go too. Runs on the scheduler every `interval_minutes`.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

log = logging.getLogger("cmr_node.retention")


class Purger:
    def __init__(self, index, layout, days: float, audit=None):
        self.index = index
        self.layout = layout
        self.max_age_seconds = days * 86400.0
        self.audit = audit

    def sweep(self, now: float | None = None) -> int:
        """Purge what is due; returns the number of studies purged."""
        now = time.time() if now is None else now
        studies = self.index.purgeable_studies(now - self.max_age_seconds)
        for study_uid in studies:
            paths, outputs = self.index.forget_study(study_uid)
            for path in paths:
                Path(path).unlink(missing_ok=True)
            for folder in outputs:
                shutil.rmtree(folder, ignore_errors=True)
            study_dir = self.layout.incoming / study_uid
            shutil.rmtree(study_dir, ignore_errors=True)
            log.info("purged study %s: %d instances, %d job output folders", study_uid, len(paths), len(outputs))
            if self.audit:
                self.audit.record("purged", study_uid=study_uid, instances=len(paths), job_outputs=len(outputs))
        for old in self.layout.quarantine.glob("*"):
            if old.stat().st_mtime < now - self.max_age_seconds:
                old.unlink(missing_ok=True)
        return len(studies)
