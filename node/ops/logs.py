"""Logging set-up. Log lines carry UIDs, AE titles and counts, never patient data.

Two formats: "text" for a person at a terminal, "json" (one object per line: time, level, logger,
message, and exception when there is one) for journald, Docker and log collectors.
"""
from __future__ import annotations

import json
import logging
import sys
import warnings
from datetime import datetime, timezone

FORMATS = ("text", "json")
_current = ("INFO", "text")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "INFO", log_format: str = "text") -> None:
    """Set up this process's logging; worker processes call it too (see settings())."""
    global _current
    _current = (level, log_format)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pynetdicom logs dataset summaries (which can hold patient data) at DEBUG/INFO: keep it quiet.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "skipped: already running" is routine
    logging.getLogger("highdicom").setLevel(logging.WARNING)
    # pydicom's warnings and messages quote attribute values ("Invalid value for VR PN: '...'"), which can be
    # patient data; the node logs its own reason for every rejection instead.
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    # highdicom's too ('The string "<patient name>" is unlikely to represent the intended person name ...')
    warnings.filterwarnings("ignore", module=r"highdicom(\.|$)")
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    logging.captureWarnings(True)   # any other warning becomes a log line in the chosen format


def settings() -> tuple[str, str]:
    """(level, format) this process was configured with, for worker processes to use the same."""
    return _current
