"""The registry's database: an SQLite file (one node, the default) or PostgreSQL (several nodes, one registry).

The store (node/registry/store.py) writes its SQL once, with `?` placeholders, in the part of SQL both speak
(upserts with ON CONFLICT, INSERT ... RETURNING); this module runs it on either. What differs:
- the schema's types: SQLite INTEGER PRIMARY KEY / REAL, PostgreSQL BIGSERIAL / DOUBLE PRECISION;
- the schema version: SQLite's PRAGMA user_version, a `registry_meta` row in PostgreSQL;
- how a report's transaction keeps another writer out: SQLite locks the file (BEGIN IMMEDIATE); PostgreSQL
  takes a transaction-scoped advisory lock on the study, so two nodes ingesting reports of one study take
  turns (which report is current depends on the others) while other studies go on in parallel;
- the order measurement rows were written in: SQLite's rowid, PostgreSQL a BIGSERIAL id column.
"""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

_TABLES = """
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY, pseudonym TEXT NOT NULL, study_date TEXT, accession_number TEXT);
CREATE TABLE IF NOT EXISTS reports (
    id {serial}, sop_instance_uid TEXT UNIQUE NOT NULL, series_instance_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL REFERENCES studies(study_uid), producer TEXT NOT NULL, content_datetime TEXT,
    ingested_at {real} NOT NULL, current INTEGER NOT NULL, superseded_by BIGINT REFERENCES reports(id),
    source_series TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS reports_by_study ON reports(study_uid, producer);
CREATE TABLE IF NOT EXISTS measurements ({measurement_id}
    report_id BIGINT NOT NULL REFERENCES reports(id), region TEXT NOT NULL, tracking_uid TEXT,
    finding_code TEXT, finding_scheme TEXT, finding_meaning TEXT, site_code TEXT, site_scheme TEXT, site_meaning TEXT,
    concept_code TEXT NOT NULL, concept_scheme TEXT NOT NULL, concept_meaning TEXT, derivation TEXT,
    value {real} NOT NULL, unit TEXT NOT NULL, ci95_low {real}, ci95_high {real});
CREATE INDEX IF NOT EXISTS measurements_by_report ON measurements(report_id);
CREATE TABLE IF NOT EXISTS evaluations (
    report_id BIGINT NOT NULL REFERENCES reports(id), region TEXT NOT NULL, concept_code TEXT, concept_scheme TEXT,
    concept_meaning TEXT, value_code TEXT, value_scheme TEXT, value_meaning TEXT);
CREATE TABLE IF NOT EXISTS not_ingested (sop_instance_uid TEXT PRIMARY KEY, reason TEXT NOT NULL, seen_at {real});
"""


class RegistryError(RuntimeError):
    pass


def is_url(location: str | Path) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))


class SqliteDatabase:
    row_order = "m.rowid"          # measurement rows in the order they were written
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, path: Path, schema_version: int, migrate):
        self.where: Path | str = path
        self.db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.lock = threading.RLock()   # one connection, used by the job runner's and the scheduler's threads
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > schema_version:
            raise RegistryError(f"{path}: registry schema {version} is newer than this cmr-node ({schema_version})")
        migrate(self, version)
        self.db.executescript(_TABLES.format(serial="INTEGER PRIMARY KEY", real="REAL", measurement_id=""))
        self.db.execute(f"PRAGMA user_version={schema_version}")

    def query(self, sql: str, params=()) -> list[dict]:
        with self.lock:
            return [dict(row) for row in self.db.execute(sql, params)]

    def execute(self, sql: str, params=()) -> None:
        with self.lock:
            self.db.execute(sql, params)

    def executemany(self, sql: str, rows) -> None:
        with self.lock:
            self.db.executemany(sql, rows)

    @contextmanager
    def transaction(self, study_uid: str):
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self.db.close()


class PostgresDatabase:
    row_order = "m.id"

    def __init__(self, url: str, schema_version: int, migrate):
        import psycopg                      # here: a node on SQLite never needs the driver
        from psycopg.rows import dict_row
        self.errors = (psycopg.Error,)
        self.where: Path | str = url.split("@")[-1]     # host/database, never the password
        try:
            self.db = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        except psycopg.Error as exc:
            raise RegistryError(f"registry database {self.where}: {exc}") from None
        self.lock = threading.RLock()
        with self.db.transaction():
            # one node creates the schema at a time; the others wait and find it made
            self.db.execute("SELECT pg_advisory_xact_lock(hashtext('cmr-node registry schema'))")
            self.db.execute("CREATE TABLE IF NOT EXISTS registry_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = self.db.execute("SELECT value FROM registry_meta WHERE key = 'schema_version'").fetchone()
            version = int(row["value"]) if row else 0
            if version > schema_version:
                raise RegistryError(f"{self.where}: registry schema {version} is newer than this cmr-node "
                                    f"({schema_version})")
            migrate(self, version)
            for statement in _TABLES.format(serial="BIGSERIAL PRIMARY KEY", real="DOUBLE PRECISION",
                                            measurement_id="id BIGSERIAL PRIMARY KEY,").split(";"):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute("INSERT INTO registry_meta VALUES ('schema_version', %s) ON CONFLICT (key) DO UPDATE "
                            "SET value = excluded.value", (str(schema_version),))

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def query(self, sql: str, params=()) -> list[dict]:
        with self.lock:
            return list(self.db.execute(self._sql(sql), params).fetchall())

    def execute(self, sql: str, params=()) -> None:
        with self.lock:
            self.db.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows) -> None:
        with self.lock, self.db.cursor() as cursor:
            cursor.executemany(self._sql(sql), list(rows))

    @contextmanager
    def transaction(self, study_uid: str):
        with self.lock, self.db.transaction():
            self.db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (study_uid,))
            yield

    def close(self) -> None:
        with self.lock:
            self.db.close()


def connect(location: str | Path, schema_version: int, migrate):
    """The registry's database at location: a postgresql:// URL, else an SQLite file. migrate(db, version) brings
    an older schema up to date before the tables are made."""
    if is_url(location):
        return PostgresDatabase(str(location), schema_version, migrate)
    return SqliteDatabase(Path(location), schema_version, migrate)
