"""The outbox sender: C-STORE of finished outputs to every destination of their route.

Items are sent in queue order per destination; within a study, an item that failed holds back
the study's later items until it is delivered or becomes a dead letter. A destination that does not
answer, refuses the association or fails an instance is retried with
exponential backoff (retry_base_seconds * 2^(attempt-1), capped at
retry_max_seconds); after max_attempts an item becomes a dead letter, shown
by `cmr-node status` and revived by `cmr-node retry`. Files are never deleted here.
"""
from __future__ import annotations

import logging
import ssl
import time

import pydicom

from node.network import status
from node.config import Config, Destination, DispatchSettings
from node.store.index import Index, OutboxItem
from node.network.scu import open_association
from node.network.tls import client_context

log = logging.getLogger("cmr_node.dispatch")


def next_attempt_delay(settings: DispatchSettings, attempts: int) -> float:
    """Seconds before attempt number attempts+1, after `attempts` failures (attempts >= 1)."""
    return min(settings.retry_base_seconds * 2 ** (attempts - 1), settings.retry_max_seconds)


def store_files(calling_ae: str, destination: Destination, items: list[OutboxItem], on_result,
                tls_context: ssl.SSLContext | None = None) -> None:
    """One association; on_result(item, error or None) for each item; raises ConnectionError if none."""
    assoc = open_association(calling_ae, destination.host, destination.port, destination.ae_title,
                             [i.sop_class_uid for i in items], tls_context if destination.tls else None)
    failed_studies: set[str] = set()
    try:
        for item in items:
            if item.study_uid in failed_studies:
                continue     # held, not attempted: a study's items arrive in order or not at all
            error = _store_one(assoc, item) if assoc.is_established else "association lost"
            on_result(item, error)
            if error is not None:
                failed_studies.add(item.study_uid)
    finally:
        if assoc.is_established:
            assoc.release()


def _store_one(assoc, item: OutboxItem) -> str | None:
    """C-STORE one outbox file; None when the destination kept it, else what went wrong."""
    try:
        ds = pydicom.dcmread(item.path)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        return f"output file unreadable: {exc}"
    try:
        response = assoc.send_c_store(ds)
    except ValueError:    # pynetdicom: the destination accepted no presentation context for this SOP class
        return f"destination does not accept SOP class {ds.get('SOPClassUID', '?')}"
    code = int(response.Status) if "Status" in response else None
    if code is not None and status.is_stored(code):
        return None
    return "no response" if code is None else f"status 0x{code:04X}"


class Dispatcher:
    def __init__(self, config: Config, index: Index, audit=None):
        self.config = config
        self.index = index
        self.audit = audit
        self.tls_context = client_context(config.tls) if any(d.tls for d in config.destinations) else None

    def _record(self, item: OutboxItem, error: str | None) -> None:
        if error is None:
            self.index.mark_sent(item.id)
            log.info("sent %s to %s", item.sop_instance_uid, item.destination)
            if self.audit:
                self.audit.record("sent", destination=item.destination, study_uid=item.study_uid,
                                  sop_instance_uid=item.sop_instance_uid, sop_class_uid=item.sop_class_uid)
            return
        settings = self.config.dispatch
        attempts = item.attempts + 1
        dead = attempts >= settings.max_attempts
        self.index.mark_failed_attempt(item.id, error, time.time() + next_attempt_delay(settings, attempts), dead)
        log.warning("sending %s to %s failed (attempt %d/%d): %s%s", item.sop_instance_uid, item.destination,
                    attempts, settings.max_attempts, error, " -> dead letter" if dead else "")

    def send_due(self) -> None:
        """Send everything whose time has come (run by the scheduler)."""
        for name, items in self.index.due_outbox(time.time()).items():
            try:
                destination = self.config.destination(name)
            except StopIteration:
                for item in items:
                    self._record(item, f"destination {name!r} is no longer configured")
                continue
            try:
                store_files(self.config.node.ae_title, destination, items, self._record, self.tls_context)
            except (ConnectionError, OSError) as exc:
                for item in items:
                    self._record(item, str(exc))
