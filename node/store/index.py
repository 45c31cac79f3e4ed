"""The node's index: received instances, series/study completion, jobs and the outbox.

One SQLite file (WAL, synchronous=FULL so that a commit survives a power cut; the
receive path's own connection uses NORMAL, see Index), shared by the receive
threads, the scheduler and the CLI. Schema version is
kept in PRAGMA user_version.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from node.errors import Failure
from node.store.group_commit import GroupFlush

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    sop_class_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    transfer_syntax TEXT NOT NULL,
    acquisition_datetime TEXT,
    calling_ae TEXT,
    received_at REAL NOT NULL,
    kinds TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_description TEXT NOT NULL DEFAULT '',
    image_type TEXT NOT NULL DEFAULT '',
    modality TEXT,
    first_received_at REAL NOT NULL,
    last_received_at REAL NOT NULL,
    completed_at REAL,
    kinds TEXT NOT NULL DEFAULT '',
    classification TEXT
);
CREATE INDEX IF NOT EXISTS series_study ON series(study_uid);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    last_received_at REAL NOT NULL,
    completed_at REAL,
    known_complete_at REAL,     -- what arrived up to then is known to be all (a finished retrieve, the node's
                                -- own outputs taken back in): no quiet time is waited for it
    settled_at REAL             -- complete, and its routing pass queued nothing more
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    route TEXT NOT NULL,
    module TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    input_key TEXT NOT NULL,
    inputs TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,                 -- why it failed: one line, never a class name or a traceback
    failure_kind TEXT,          -- 'input' (the data cannot give the result) or 'internal' (a defect; see the log)
    failure_step TEXT,          -- where: 'read inputs', 'compute', 'build outputs', 'write outputs', 'run module'
    output_dir TEXT,
    waiting_for TEXT,           -- done, but the module waits for more input (a study-so-far route's final run)
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    UNIQUE (route, input_key)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    destination TEXT NOT NULL,
    path TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    sent_at REAL,
    UNIQUE (destination, sop_instance_uid, job_id)
);
CREATE TABLE IF NOT EXISTS study_inputs (
    study_uid TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    set_at REAL NOT NULL,
    PRIMARY KEY (study_uid, key)
);
CREATE TABLE IF NOT EXISTS backfill (
    study_uid TEXT PRIMARY KEY,
    source TEXT NOT NULL,       -- the [[sources]] name it came from
    study_date TEXT,
    series TEXT NOT NULL,       -- JSON list of the Series Instance UIDs retrieved
    state TEXT NOT NULL CHECK (state IN ('found', 'retrieved', 'done', 'failed')),
    error TEXT,
    found_at REAL NOT NULL,
    retrieved_at REAL,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, destination, next_attempt_at);
"""


# A study a backfill is retrieving (or failed to retrieve whole) does not complete by quiet time: a series
# of it would be processed with part of its instances, a study-so-far route with part of its series.
_NOT_BEING_RETRIEVED = ("NOT EXISTS (SELECT 1 FROM backfill b WHERE b.study_uid = {study} "
                        "AND b.state IN ('found', 'failed'))")


def kinds_of(row) -> set[str]:
    """The kinds (node/inputs/kinds.py) an instance or series row holds; stored comma-separated."""
    return set(filter(None, (row["kinds"] or "").split(",")))


@dataclass(frozen=True)
class InstanceRecord:
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    series_description: str
    modality: str | None
    path: str
    size: int
    transfer_syntax: str
    acquisition_datetime: str | None
    calling_ae: str | None
    image_type: str = ""      # Image Type values joined by backslashes


@dataclass
class _PendingInstance:
    record: InstanceRecord
    received_at: float
    error: Exception | None = None


def _instance_statements(pending: _PendingInstance) -> list[tuple[str, tuple]]:
    rec, now = pending.record, pending.received_at
    return [
        ("INSERT OR REPLACE INTO instances (sop_instance_uid, sop_class_uid, study_uid, series_uid, path, size, "
         "transfer_syntax, acquisition_datetime, calling_ae, received_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
         (rec.sop_instance_uid, rec.sop_class_uid, rec.study_uid, rec.series_uid, rec.path, rec.size,
          rec.transfer_syntax, rec.acquisition_datetime, rec.calling_ae, now)),
        ("INSERT INTO series (series_uid, study_uid, series_description, image_type, modality, first_received_at, "
         "last_received_at, completed_at) VALUES (?,?,?,?,?,?,?,NULL) ON CONFLICT(series_uid) DO UPDATE SET "
         "last_received_at=excluded.last_received_at, completed_at=NULL",
         (rec.series_uid, rec.study_uid, rec.series_description, rec.image_type, rec.modality, now, now)),
        ("INSERT INTO studies (study_uid, last_received_at, completed_at) VALUES (?,?,NULL) ON CONFLICT(study_uid) "
         "DO UPDATE SET last_received_at=excluded.last_received_at, completed_at=NULL, settled_at=NULL",
         (rec.study_uid, now)),
    ]


@dataclass(frozen=True)
class Job:
    id: int
    route: str
    module: str
    study_uid: str
    input_key: str
    inputs: dict
    state: str
    attempts: int


@dataclass(frozen=True)
class OutboxItem:
    id: int
    job_id: int
    destination: str
    path: str
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    attempts: int


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring an index written by an earlier cmr-node up to date: columns added since get their default.

    Without this, an upgraded node would answer every C-STORE with Out of Resources (the insert fails)."""
    reference = sqlite3.connect(":memory:")
    reference.executescript(_SCHEMA)
    tables = [r[0] for r in reference.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    for table in tables:
        present = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for _, name, kind, not_null, default, _ in reference.execute(f"PRAGMA table_info({table})"):
            if name in present:
                continue
            if not_null and default is None:
                raise RuntimeError(f"index table {table} lacks column {name}, which has no default: move the old "
                                   "data_dir aside (nothing in it is lost) and start again")
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"
                       + (" NOT NULL" if not_null else "") + (f" DEFAULT {default}" if default is not None else ""))
            if (table, name) == ("studies", "settled_at"):
                # studies an earlier version completed were routed then: settled, not routed again at start
                db.execute("UPDATE studies SET settled_at = completed_at")
    reference.close()


class Index:
    def __init__(self, path: Path | str, flush_commits: bool = True):
        """flush_commits=False (synchronous=NORMAL): a commit survives the process's crash but not a power
        cut, which may take the last ones. The receive path's connection, whose instances' files are
        flushed before Success and indexed again at start if a power cut took their rows
        (node/receive/receiver.py, index_unindexed_files)."""
        self.path = str(path)
        self._lock = threading.RLock()
        self._pending_lock = threading.Lock()
        self._pending: list[_PendingInstance] = []       # instances waiting for the next group commit
        self._commits = GroupFlush()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if flush_commits else 'NORMAL'}")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise RuntimeError(f"index schema version {version} is newer than this cmr-node ({SCHEMA_VERSION})")
            self._db.executescript(_SCHEMA)
            _add_missing_columns(self._db)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, statements):
        """Run (sql, params) pairs in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                results = [self._db.execute(sql, params) for sql, params in statements]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return results

    def _query(self, sql: str, params=()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # ---- receive ---------------------------------------------------------------------------
    def record_instance(self, rec: InstanceRecord, now: float | None = None) -> None:
        """Index one stored instance; (re)opens its series and study for completion. Instances recorded by
        several threads at once share one commit (group commit): each returns once its row is committed
        (and flushed, unless this connection was opened with flush_commits=False)."""
        pending = _PendingInstance(rec, time.time() if now is None else now)
        with self._pending_lock:
            self._pending.append(pending)
        self._commits.flush("instances", self._commit_pending)
        if pending.error is not None:
            raise pending.error

    def _commit_pending(self, _key) -> None:
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self._tx([statement for pending in batch for statement in _instance_statements(pending)])
        except Exception as exc:      # every instance of the batch is refused, each by its own thread
            for pending in batch:
                pending.error = exc

    def instance_uids(self) -> set[str]:
        return {r[0] for r in self._query("SELECT sop_instance_uid FROM instances")}

    # ---- completion ------------------------------------------------------------------------
    def complete_quiet_series(self, quiet_seconds: float, now: float) -> list[sqlite3.Row]:
        """Mark series with no new instance for quiet_seconds complete; return them."""
        with self._lock:
            rows = self._query(
                "SELECT * FROM series x WHERE completed_at IS NULL AND (last_received_at <= ? OR EXISTS (SELECT 1 "
                "FROM studies s WHERE s.study_uid = x.study_uid AND s.known_complete_at >= x.last_received_at)) "
                f"AND {_NOT_BEING_RETRIEVED.format(study='x.study_uid')}", (now - quiet_seconds,))
            self._tx([("UPDATE series SET completed_at=? WHERE series_uid=? AND last_received_at=?",
                       (now, r["series_uid"], r["last_received_at"])) for r in rows])
            return rows

    def complete_quiet_studies(self, quiet_seconds: float, now: float) -> list[str]:
        """Mark studies complete: quiet for quiet_seconds, every series complete, and no job of the
        study queued or running (its outputs, such as T1 maps from raw MOLLI, may come back in)."""
        with self._lock:
            rows = self._query(
                "SELECT study_uid, last_received_at FROM studies s WHERE completed_at IS NULL "
                "AND (last_received_at <= ? OR known_complete_at >= last_received_at) "
                f"AND {_NOT_BEING_RETRIEVED.format(study='s.study_uid')} AND NOT EXISTS (SELECT 1 FROM series x "
                "WHERE x.study_uid = s.study_uid AND x.completed_at IS NULL) AND NOT EXISTS (SELECT 1 FROM jobs j "
                "WHERE j.study_uid = s.study_uid AND j.state IN ('queued', 'running'))", (now - quiet_seconds,))
            self._tx([("UPDATE studies SET completed_at=? WHERE study_uid=? AND last_received_at=?",
                       (now, r["study_uid"], r["last_received_at"])) for r in rows])
            return [r["study_uid"] for r in rows]

    def mark_known_complete(self, study_uid: str, only_if_marked: bool = False) -> None:
        """What the study holds now is all there is to wait for (a retrieve finished; only_if_marked: the node's
        own outputs were taken back into a study marked so before): its series and the study complete at the
        next sweep, without the quiet times that wait for a scanner."""
        self._tx([("UPDATE studies SET known_complete_at=? WHERE study_uid=?"
                   + (" AND known_complete_at IS NOT NULL" if only_if_marked else ""), (time.time(), study_uid))])

    def mark_settled(self, study_uid: str) -> None:
        """The complete study's routing pass queued nothing more: every job it will get has been made."""
        self._tx([("UPDATE studies SET settled_at=? WHERE study_uid=? AND completed_at IS NOT NULL",
                   (time.time(), study_uid))])

    def unsettled_studies(self) -> list[str]:
        """Complete studies whose routing has not settled while no job of them is queued or running: a job
        that failed brought no report back in, or the node stopped between completing a study and routing it."""
        return [r[0] for r in self._query(
            "SELECT study_uid FROM studies s WHERE completed_at IS NOT NULL AND settled_at IS NULL AND NOT EXISTS "
            "(SELECT 1 FROM jobs j WHERE j.study_uid = s.study_uid AND j.state IN ('queued', 'running'))")]

    def study_finished(self, study_uid: str) -> bool:
        """Settled, no job queued or running, and no output still waiting to be sent (sent or dead letters)."""
        return bool(self._query(
            "SELECT 1 FROM studies s WHERE study_uid=? AND settled_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM jobs "
            "j WHERE j.study_uid = s.study_uid AND j.state IN ('queued', 'running')) AND NOT EXISTS (SELECT 1 FROM "
            "outbox o WHERE o.study_uid = s.study_uid AND o.state = 'pending')", (study_uid,)))

    def study_processed(self, study_uid: str) -> bool:
        """The study is settled here with at least one job: the node has processed it (received live, say)."""
        return bool(self._query("SELECT 1 FROM studies s WHERE study_uid=? AND settled_at IS NOT NULL AND EXISTS "
                                "(SELECT 1 FROM jobs j WHERE j.study_uid = s.study_uid)", (study_uid,)))

    # ---- backfill ------------------------------------------------------------------------------
    def backfill_rows(self, source: str | None = None) -> dict[str, sqlite3.Row]:
        rows = self._query("SELECT * FROM backfill" + (" WHERE source=?" if source else "") + " ORDER BY found_at",
                           (source,) if source else ())
        return {r["study_uid"]: r for r in rows}

    def backfill_found(self, study_uid: str, source: str, study_date: str | None, series: list[str]) -> None:
        """Record a study to retrieve (again, unless done: a failed or half-retrieved one starts over)."""
        self._tx([("INSERT INTO backfill (study_uid, source, study_date, series, state, found_at) VALUES "
                   "(?,?,?,?,'found',?) ON CONFLICT(study_uid) DO UPDATE SET series=excluded.series, state='found', "
                   "error=NULL WHERE backfill.state != 'done'",
                   (study_uid, source, study_date, json.dumps(series), time.time()))])

    def backfill_retrieved(self, study_uid: str) -> None:
        """Every series of the study is in: mark it so, and the study known complete, in one transaction."""
        now = time.time()
        self._tx([("UPDATE backfill SET state='retrieved', retrieved_at=? WHERE study_uid=?", (now, study_uid)),
                  ("UPDATE studies SET known_complete_at=? WHERE study_uid=?", (now, study_uid))])

    def backfill_ended(self, study_uid: str, error: str | None = None) -> None:
        self._tx([("UPDATE backfill SET state=?, error=?, done_at=? WHERE study_uid=?",
                   ("failed" if error else "done", error, time.time(), study_uid))])

    # ---- retention -----------------------------------------------------------------------------
    def purgeable_studies(self, received_before: float) -> list[str]:
        """Complete studies last touched before received_before, with no job queued or running and every
        output of every job delivered: nothing of them is still owed to anyone."""
        return [r[0] for r in self._query(
            "SELECT study_uid FROM studies s WHERE completed_at IS NOT NULL AND last_received_at < ? "
            "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.study_uid = s.study_uid AND j.state IN ('queued', 'running')) "
            "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.study_uid = s.study_uid AND o.state != 'sent')",
            (received_before,))]

    def forget_study(self, study_uid: str) -> tuple[list[str], list[str]]:
        """Remove a study's instances from the index: (instance paths, job output folders) to delete.
        Jobs and outbox rows stay as history (what was made and where it went)."""
        with self._lock:
            paths = [r[0] for r in self._query("SELECT path FROM instances WHERE study_uid=?", (study_uid,))]
            outputs = [r[0] for r in self._query("SELECT output_dir FROM jobs WHERE study_uid=? AND output_dir "
                                                 "IS NOT NULL", (study_uid,))]
            self._tx([("DELETE FROM instances WHERE study_uid=?", (study_uid,)),
                      ("DELETE FROM series WHERE study_uid=?", (study_uid,)),
                      ("DELETE FROM studies WHERE study_uid=?", (study_uid,))])
            return paths, outputs

    def set_series_kinds(self, series_uid: str, kinds: list[str], classification: dict,
                         instance_kinds: dict[str, set[str]]) -> sqlite3.Row:
        """Record what a complete series was classified as (node/inputs/kinds.py); return its row."""
        self._tx([("UPDATE series SET kinds=?, classification=? WHERE series_uid=?",
                   (",".join(kinds), json.dumps(classification), series_uid))]
                 + [("UPDATE instances SET kinds=? WHERE sop_instance_uid=?", (",".join(sorted(k)), uid))
                    for uid, k in instance_kinds.items()])
        return self._query("SELECT * FROM series WHERE series_uid=?", (series_uid,))[0]

    def all_series(self) -> list[sqlite3.Row]:
        return self._query("SELECT * FROM series ORDER BY study_uid, first_received_at")

    def all_jobs(self) -> list[Job]:
        return [self._job(r) for r in self._query("SELECT * FROM jobs ORDER BY id")]

    def has_jobs(self, study_uid: str) -> bool:
        return bool(self._query("SELECT 1 FROM jobs WHERE study_uid=? LIMIT 1", (study_uid,)))

    def series_of_study(self, study_uid: str) -> list[sqlite3.Row]:
        return self._query("SELECT * FROM series WHERE study_uid=? ORDER BY first_received_at", (study_uid,))

    def complete_series_of_study(self, study_uid: str) -> list[sqlite3.Row]:
        return self._query("SELECT * FROM series WHERE study_uid=? AND completed_at IS NOT NULL "
                           "ORDER BY first_received_at", (study_uid,))

    # ---- per-study inputs --------------------------------------------------------------------
    def set_study_inputs(self, study_uid: str, values: dict[str, str]) -> None:
        """Store per-study values and reopen the study's series so that its routes run again."""
        now = time.time()
        statements = [("INSERT INTO study_inputs (study_uid, key, value, set_at) VALUES (?,?,?,?) "
                       "ON CONFLICT(study_uid, key) DO UPDATE SET value=excluded.value, set_at=excluded.set_at",
                       (study_uid, k, v, now))
                      for k, v in values.items()]
        statements += [("UPDATE series SET completed_at=NULL WHERE study_uid=?", (study_uid,)),
                       ("UPDATE studies SET completed_at=NULL, settled_at=NULL WHERE study_uid=?", (study_uid,))]
        self._tx(statements)

    def study_inputs(self, study_uid: str) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._query(
            "SELECT key, value FROM study_inputs WHERE study_uid=? ORDER BY key", (study_uid,))}

    def instances_of_classes(self, sop_classes: list[str]) -> list[sqlite3.Row]:
        marks = ",".join("?" * len(sop_classes))
        return self._query(f"SELECT * FROM instances WHERE sop_class_uid IN ({marks}) ORDER BY received_at",
                           tuple(sop_classes))

    def instances_of_series(self, series_uid: str) -> list[sqlite3.Row]:
        return self._query("SELECT * FROM instances WHERE series_uid=? ORDER BY sop_instance_uid", (series_uid,))

    # ---- jobs ------------------------------------------------------------------------------
    def add_job(self, route: str, module: str, study_uid: str, input_key: str, inputs: dict) -> int | None:
        """Queue a job unless the same route already has one for exactly these inputs."""
        with self._lock:
            cur = self._tx([(
                "INSERT OR IGNORE INTO jobs (route, module, study_uid, input_key, inputs, state, created_at) "
                "VALUES (?,?,?,?,?,'queued',?)",
                (route, module, study_uid, input_key, json.dumps(inputs), time.time()))])[0]
            return cur.lastrowid if cur.rowcount else None

    def requeue_interrupted_jobs(self) -> int:
        """Jobs left 'running' by a stop or crash go back to the queue."""
        return self._tx([("UPDATE jobs SET state='queued' WHERE state='running'", ())])[0].rowcount

    def claim_jobs(self, limit: int) -> list[Job]:
        with self._lock:
            rows = self._query("SELECT * FROM jobs WHERE state='queued' ORDER BY id LIMIT ?", (limit,))
            self._tx([("UPDATE jobs SET state='running', attempts=attempts+1, started_at=? WHERE id=?",
                       (time.time(), r["id"])) for r in rows])
            return [self._job(r, state="running", attempts=r["attempts"] + 1) for r in rows]

    def release_job(self, job_id: int) -> None:
        """A claimed job that never ran (its executor lost it) goes back to the queue, its attempt not counted."""
        self._tx([("UPDATE jobs SET state='queued', attempts=max(attempts-1, 0) WHERE id=? AND state='running'",
                   (job_id,))])

    @staticmethod
    def _job(r, **override) -> Job:
        fields = dict(id=r["id"], route=r["route"], module=r["module"], study_uid=r["study_uid"],
                      input_key=r["input_key"], inputs=json.loads(r["inputs"]), state=r["state"],
                      attempts=r["attempts"])
        fields.update(override)
        return Job(**fields)

    def finish_job(self, job_id: int, output_dir: str, outputs: list[dict], destinations: list[str],
                   study_uid: str, waiting_for: str | None = None) -> None:
        """Mark a job done and put every output for every destination into the outbox, atomically; waiting_for:
        what its module still waits for, if anything."""
        now = time.time()
        statements = [("UPDATE jobs SET state='done', error=NULL, output_dir=?, finished_at=?, waiting_for=? "
                       "WHERE id=?", (output_dir, now, waiting_for, job_id))]
        for dest in destinations:
            for out in outputs:
                statements.append((
                    "INSERT OR IGNORE INTO outbox (job_id, destination, path, sop_instance_uid, sop_class_uid, "
                    "study_uid, state, next_attempt_at) VALUES (?,?,?,?,?,?,'pending',?)",
                    (job_id, dest, out["path"], out["sop_instance_uid"], out["sop_class_uid"], study_uid, now)))
        self._tx(statements)

    def fail_job(self, job_id: int, failure: Failure, output_dir: str | None = None) -> None:
        """Record why a job failed; output_dir holds its results.json saying so (purged with the study)."""
        self._tx([("UPDATE jobs SET state='failed', error=?, failure_kind=?, failure_step=?, output_dir=?, "
                   "finished_at=? WHERE id=?", (failure.reason[:2000], str(failure.kind), str(failure.step),
                                                output_dir, time.time(), job_id))])

    def failed_jobs(self, limit: int = 20) -> list[dict]:
        """The latest failures, newest first: what `cmr-node status` shows."""
        rows = self._query("SELECT id, route, module, study_uid, failure_kind, failure_step, error FROM jobs "
                           "WHERE state='failed' ORDER BY finished_at DESC, id DESC LIMIT ?", (limit,))
        return [{"job": r["id"], "route": r["route"], "module": r["module"], "study_instance_uid": r["study_uid"],
                 "kind": r["failure_kind"], "step": r["failure_step"], "reason": r["error"]} for r in rows]

    def waiting_job(self, study_uid: str, route: str) -> Job | None:
        """The route's latest job of the study, when it is done and its module was still waiting for input."""
        rows = self._query("SELECT * FROM jobs WHERE study_uid=? AND route=? ORDER BY id DESC LIMIT 1",
                           (study_uid, route))
        return self._job(rows[0]) if rows and rows[0]["state"] == "done" and rows[0]["waiting_for"] else None

    def jobs(self, state: str | None = None) -> list[Job]:
        sql, params = "SELECT * FROM jobs ORDER BY id", ()
        if state:
            sql, params = "SELECT * FROM jobs WHERE state=? ORDER BY id", (state,)
        return [self._job(r) for r in self._query(sql, params)]

    def job_row(self, job_id: int) -> sqlite3.Row:
        return self._query("SELECT * FROM jobs WHERE id=?", (job_id,))[0]

    # ---- outbox ----------------------------------------------------------------------------
    def due_outbox(self, now: float) -> dict[str, list[OutboxItem]]:
        """Pending items whose retry time has come, per destination, in queue order.

        A study reaches a destination in queue order: an item waiting for its retry holds back the later
        items of its study for that destination (a dead letter does not; it is given up on).
        """
        rows = self._query("SELECT * FROM outbox WHERE state='pending' ORDER BY id")
        due: dict[str, list[OutboxItem]] = {}
        held: set[tuple[str, str]] = set()
        for r in rows:
            key = (r["destination"], r["study_uid"])
            if key in held or r["next_attempt_at"] > now:
                held.add(key)
                continue
            due.setdefault(r["destination"], []).append(OutboxItem(
                id=r["id"], job_id=r["job_id"], destination=r["destination"], path=r["path"],
                sop_instance_uid=r["sop_instance_uid"], sop_class_uid=r["sop_class_uid"],
                study_uid=r["study_uid"], attempts=r["attempts"]))
        return due

    def mark_sent(self, item_id: int) -> None:
        self._tx([("UPDATE outbox SET state='sent', sent_at=?, last_error=NULL WHERE id=?", (time.time(), item_id))])

    def mark_failed_attempt(self, item_id: int, error: str, next_attempt_at: float, dead: bool) -> None:
        self._tx([("UPDATE outbox SET attempts=attempts+1, last_error=?, next_attempt_at=?, state=? WHERE id=?",
                   (error[:500], next_attempt_at, "dead" if dead else "pending", item_id))])

    def retry_dead(self, destination: str | None = None) -> int:
        """Give dead letters a fresh set of attempts (the `cmr-node retry` command)."""
        sql = "UPDATE outbox SET state='pending', attempts=0, next_attempt_at=? WHERE state='dead'"
        params: tuple = (time.time(),)
        if destination:
            sql += " AND destination=?"
            params += (destination,)
        return self._tx([(sql, params)])[0].rowcount

    def outbox_rows(self) -> list[sqlite3.Row]:
        return self._query("SELECT * FROM outbox ORDER BY id")

    # ---- status ----------------------------------------------------------------------------
    def status(self) -> dict:
        def counts(sql):
            return {r[0]: r[1] for r in self._query(sql)}
        return {
            "instances": self._query("SELECT COUNT(*) FROM instances")[0][0],
            "series": counts("SELECT CASE WHEN completed_at IS NULL THEN 'open' ELSE 'complete' END, COUNT(*) "
                             "FROM series GROUP BY 1"),
            "studies": self._query("SELECT COUNT(*) FROM studies")[0][0],
            "jobs": counts("SELECT state, COUNT(*) FROM jobs GROUP BY state"),
            "failed_jobs": self.failed_jobs(),
            "outbox": {dest: counts_by_state for dest, counts_by_state in self._outbox_counts().items()},
        }

    def job_counts(self) -> list[sqlite3.Row]:
        """(module, state, count, seconds): seconds is the summed run time of the jobs that finished."""
        return self._query("SELECT module, state, COUNT(*) AS count, "
                           "COALESCE(SUM(CASE WHEN finished_at IS NOT NULL AND started_at IS NOT NULL "
                           "THEN finished_at - started_at END), 0) AS seconds FROM jobs GROUP BY module, state")

    def _outbox_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self._query("SELECT destination, state, COUNT(*) FROM outbox GROUP BY 1, 2"):
            out.setdefault(r[0], {})[r[1]] = r[2]
        return out
