"""A throwaway PostgreSQL server for the tests: Debian's postgresql binaries, a cluster in a temporary folder
(initdb), started on a free port (pg_ctl), trust authentication on 127.0.0.1 only. PostgreSQL refuses to run as
root, so as root the cluster belongs to the `postgres` user the Debian package creates."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "cmrnode"


def _binary(name: str) -> str | None:
    """Debian keeps the server programs in /usr/lib/postgresql/<version>/bin, off the PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def available() -> bool:
    return _binary("initdb") is not None and _binary("pg_ctl") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self):
        # its own folder in /tmp: pytest's are private to root, and the server runs as `postgres` under root
        self.directory = Path(tempfile.mkdtemp(prefix="cmr-node-postgres-"))
        self.data = self.directory / "data"
        self.port = _free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self._databases = 0

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> "PostgresServer":
        if self._as:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(_binary("initdb"), "-D", str(self.data), "-U", USER, "-A", "trust", "--no-locale", "-E", "UTF8")
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "server.log"), "-w", "-o",
                  f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1", "start")
        return self

    def stop(self) -> None:
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database's URL."""
        import psycopg
        self._databases += 1
        name = f"registry_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)
