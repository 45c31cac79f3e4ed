"""The listening socket, and the threads that serve its connections (TLS when configured, a cap on how many)."""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from typing import Callable

log = logging.getLogger("cmr_node.receive")

ACCEPT_POLL_SECONDS = 0.5        # how soon stop() is noticed by the accept loop
ACCEPT_RETRY_SECONDS = 0.5       # after a failed accept (no descriptors left, say), before the next
STOP_WAIT_SECONDS = 30           # how long stop() lets associations finish the instance they are writing
HANDSHAKE_TIMEOUT_SECONDS = 30   # a TLS client must finish its handshake within this

Address = tuple[str, int]


class Listener:
    """Accepts connections and hands each to on_connection(connection, address), which owns it from then on."""

    def __init__(self, on_connection: Callable[[socket.socket, Address], None]):
        self.on_connection = on_connection
        self._socket: socket.socket | None = None
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1] if self._socket else 0

    def accepting(self) -> bool:
        return self._accept_thread is not None and self._accept_thread.is_alive()

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
            except OSError as exc:
                if self._stopping.is_set():
                    return
                # out of descriptors or buffers, or a connection gone before accept: the listener must live on
                log.error("accept failed (%s); listening goes on", exc)
                time.sleep(ACCEPT_RETRY_SECONDS)
                continue
            connection.settimeout(None)      # accepted sockets inherit the accept poll's timeout
            try:
                self.on_connection(connection, address)
            except Exception:
                log.exception("connection from %s could not be handed over", address[0])
                connection.close()

    def stop(self) -> None:
        """No new connections."""
        self._stopping.set()
        if self._accept_thread:
            self._accept_thread.join()
        if self._socket:
            self._socket.close()
            self._socket = None


class ConnectionThreads:
    """serve(connection, address) on a thread per connection; at most maximum at a time are served."""

    def __init__(self, serve: Callable[[socket.socket, Address], None], maximum: int,
                 ssl_context: ssl.SSLContext | None = None, on_closed: Callable[[], None] | None = None):
        self.serve = serve
        self.maximum = maximum
        self.ssl_context = ssl_context
        self.on_closed = on_closed
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._serving = 0          # associations accepted and not yet ended
        self._lock = threading.Lock()

    def reserve(self) -> bool:
        """A slot for one more association, if fewer than maximum are served (AssociationSlots)."""
        with self._lock:
            if self._serving >= self.maximum:
                return False
            self._serving += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._serving -= 1


    def run(self, connection: socket.socket, address: Address) -> None:
        thread = threading.Thread(target=self._run, args=(connection, address), daemon=True,
                                  name=f"association-{address[0]}:{address[1]}")
        with self._lock:
            self._connections[thread] = connection
        thread.start()

    def _run(self, connection: socket.socket, address: Address) -> None:
        """The connection's thread: TLS handshake (here, so that a silent client stalls no one else), then serve."""
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # responses are small: no Nagle wait
            if self.ssl_context is not None:
                wrapped = self._handshake(connection, address)
                if wrapped is None:
                    return
                connection = wrapped
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
            if self.on_closed is not None:
                self.on_closed()

    def _handshake(self, connection: socket.socket, address: Address) -> ssl.SSLSocket | None:
        assert self.ssl_context is not None
        connection.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        wrapped = self.ssl_context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        with self._lock:     # what stop() shuts, from here on: wrapping detached the plain socket
            self._connections[threading.current_thread()] = wrapped
        try:
            wrapped.do_handshake()
            return wrapped
        except (ssl.SSLError, OSError) as exc:
            log.warning("TLS handshake with %s refused: %s", address[0], exc)
            wrapped.close()
            return None

    def stop(self) -> None:
        """Shut every open connection, each after the instance it is writing (its thread is joined)."""
        with self._lock:
            open_connections = list(self._connections.items())
        for _, connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)    # wakes a thread waiting for the next PDU
            except OSError:
                pass
        for thread, _ in open_connections:
            thread.join(timeout=STOP_WAIT_SECONDS)
