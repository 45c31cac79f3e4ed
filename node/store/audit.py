"""Append-only audit log: who sent us what, and what we sent where.

One JSON object per line in data_dir/audit.log (mode 0600): time (UTC, ISO
8601), event, and AE titles, addresses, Study and SOP Instance UIDs and counts.
Never patient names, IDs or dates of birth. Lines are only ever appended, and
flushed to disk as they are written, so the log survives a crash of the node.
"""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path


class AuditLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()

    def record(self, event: str, **fields) -> None:
        line = json.dumps({"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                           "event": event, **fields}, sort_keys=False) + "\n"
        with self._lock:
            os.write(self._fd, line.encode())
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)
