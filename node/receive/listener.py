"""The listening socket: one thread per connection, TLS when configured, a cap on concurrent associations."""
from __future__ import annotations

import logging
import socket
import ssl
import threading
from typing import Callable

log = logging.getLogger("cmr_node.receive")

ACCEPT_POLL_SECONDS = 0.5        # how soon stop() is noticed by the accept loop
STOP_WAIT_SECONDS = 30           # how long stop() lets associations finish the instance they are writing
HANDSHAKE_TIMEOUT_SECONDS = 30   # a TLS client must finish its handshake within this


class Listener:
    """Accepts connections and runs serve(connection, address) for each on its own thread."""

    def __init__(self, serve: Callable[[socket.socket, tuple[str, int]], None], maximum_associations: int,
                 ssl_context: ssl.SSLContext | None = None):
        self.serve = serve
        self.maximum_associations = maximum_associations
        self.ssl_context = ssl_context
        self._socket: socket.socket | None = None
        self._stopping = threading.Event()
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._lock = threading.Lock()
        self._accept_thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1] if self._socket else 0

    def at_capacity(self) -> bool:
        """True when more connections are open than associations are allowed (the caller's own included)."""
        with self._lock:
            return len(self._connections) > self.maximum_associations

    def start(self, host: str, port: int) -> None:
        self._socket = socket.create_server((host, port), backlog=64)
        self._socket.settimeout(ACCEPT_POLL_SECONDS)
        self._accept_thread = threading.Thread(target=self._accept_loop, name="dicom-listener", daemon=True)
        self._accept_thread.start()

    def _accept_loop(self) -> None:
        assert self._socket is not None
        while not self._stopping.is_set():
            try:
                connection, address = self._socket.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            thread = threading.Thread(target=self._run, args=(connection, address), daemon=True,
                                      name=f"association-{address[0]}:{address[1]}")
            with self._lock:
                self._connections[thread] = connection
            thread.start()

    def _run(self, connection: socket.socket, address: tuple[str, int]) -> None:
        """The connection's thread: TLS handshake (here, so that a silent client stalls no one else), then serve."""
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # responses are small: no Nagle wait
            if self.ssl_context is not None:
                wrapped = self._handshake(connection, address)
                if wrapped is None:
                    return
                connection = wrapped
                with self._lock:
                    self._connections[threading.current_thread()] = connection
            self.serve(connection, address)
        except Exception:
            log.exception("association from %s ended by an internal error", address[0])
        finally:
            with self._lock:
                self._connections.pop(threading.current_thread(), None)
            try:
                connection.close()
            except OSError:
                pass

    def _handshake(self, connection: socket.socket, address: tuple[str, int]) -> ssl.SSLSocket | None:
        connection.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        try:
            wrapped = self.ssl_context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
            wrapped.do_handshake()
            return wrapped
        except (ssl.SSLError, OSError) as exc:
            log.warning("TLS handshake with %s refused: %s", address[0], exc)
            connection.close()
            return None

    def stop(self) -> None:
        """No new connections; open ones are shut, each after the instance it is writing (its thread is joined)."""
        self._stopping.set()
        if self._accept_thread:
            self._accept_thread.join()
        if self._socket:
            self._socket.close()
            self._socket = None
        with self._lock:
            open_connections = list(self._connections.items())
        for thread, connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)    # wakes a thread waiting for the next PDU
            except OSError:
                pass
        for thread, _ in open_connections:
            thread.join(timeout=STOP_WAIT_SECONDS)
