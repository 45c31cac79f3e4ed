"""pynetdicom's polling intervals, shortened for the receive path (issue 15).

pynetdicom 3 moves every message through two polling loops: the DUL thread reads the socket and sleeps
`DULServiceProvider._run_loop_delay` (1 ms) when a pass found nothing, and the association's reactor
sleeps a hard-coded 1 ms (`time.sleep(0.001)` at the top of `Association._run_reactor`) before it looks for
a decoded message. A C-STORE waits in both, so a no-op C-STORE handler tops out at 221-271 images/s on the
2-core machine, and at 304-334 with both at 0.1 ms. POLL_S sets both: the DUL's per association (an
EVT_CONN_OPEN handler), the reactor's by giving pynetdicom.association a `time` whose sleep(0.001) sleeps
POLL_S and is otherwise the standard module. An idle open association then wakes 10,000 times a second
instead of 1,000 (measured: about 2 % of a core each). The proper fix, upstream, is a configurable
reactor delay, or an event instead of the poll.
"""
from __future__ import annotations

import time
import types

import pynetdicom.association

POLL_S = 0.0001
_REACTOR_SLEEP_S = 0.001     # the literal in Association._run_reactor (pynetdicom 3.0)


def _sleep(seconds: float) -> None:
    time.sleep(POLL_S if seconds == _REACTOR_SLEEP_S else seconds)


def shorten_reactor_poll() -> None:
    """Once per process: the association reactor's 1 ms poll becomes POLL_S (idempotent)."""
    if getattr(pynetdicom.association.time, "shortened", False):
        return
    clock = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time) if not name.startswith("__")})
    clock.sleep = _sleep
    clock.shortened = True
    pynetdicom.association.time = clock      # type: ignore[assignment]


def on_connection_open(event) -> None:
    """EVT_CONN_OPEN handler: this association's DUL polls every POLL_S when idle."""
    event.assoc.dul._run_loop_delay = POLL_S
