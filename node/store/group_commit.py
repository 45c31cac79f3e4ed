"""Group commit: threads that need the same flush share one, and none returns before a flush that began after
its own write has finished.

Several scanners sending at once each need, per instance, their directory flushed and their index row committed.
One fsync covers every change made before it began, so a thread that arrives while a flush is running waits for
it to end and then starts the next one for everybody who arrived meanwhile (the leader/follower scheme of
database group commit: Gray & Reuter, Transaction Processing, 1993, section 9.4.7).
"""
from __future__ import annotations

import threading
from typing import Callable, Hashable


class GroupFlush:
    """flush(key, action): action(key) runs once for all callers with that key waiting at the time it starts."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._requested: dict[Hashable, int] = {}    # per key: tickets handed out
        self._flushed: dict[Hashable, int] = {}      # per key: every ticket up to this one is covered by a flush
        self._callers: dict[Hashable, int] = {}      # per key: callers inside flush(); the key is forgotten at 0
        self._running: set[Hashable] = set()

    def flush(self, key: Hashable, action: Callable[[Hashable], None]) -> None:
        """Return once a call of action(key) that started after this call began has completed; raise what
        action raised if the flush that was to cover this call failed."""
        with self._changed:
            ticket = self._requested[key] = self._requested.get(key, 0) + 1
            self._callers[key] = self._callers.get(key, 0) + 1
        try:
            self._until_flushed(key, ticket, action)
        finally:
            with self._changed:
                self._callers[key] -= 1
                if self._callers[key] == 0:
                    del self._callers[key], self._requested[key]
                    self._flushed.pop(key, None)

    def _until_flushed(self, key: Hashable, ticket: int, action: Callable[[Hashable], None]) -> None:
        with self._changed:
            while self._flushed.get(key, 0) < ticket:
                if key not in self._running:
                    break
                self._changed.wait()
            else:
                return
            self._running.add(key)
            covers = self._requested[key]
        flushed = False
        try:
            action(key)
            flushed = True
        finally:
            with self._changed:
                self._running.discard(key)
                if flushed:
                    self._flushed[key] = max(self._flushed.get(key, 0), covers)
                self._changed.notify_all()
