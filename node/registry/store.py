"""The CMR registry: an SQLite file of every TID 1500 report's numbers.

Schema (version in PRAGMA user_version; SCHEMA_VERSION below):
- studies(study_uid, pseudonym, study_date, accession_number): the patient only
  as a salted pseudonym, HMAC-SHA256(salt, Patient ID), 16 hex digits.
- reports(id, sop_instance_uid, series_instance_uid, study_uid, producer,
  content_datetime, ingested_at, current, superseded_by, source_series): one
  row per SR. Among the reports of one study and producer (the algorithm or
  device that made it) measured on overlapping source series (the series its
  Image Library images are in) one is current: the one with the latest content
  date/time. Earlier ones stay as history (current = 0, superseded_by = the
  report that replaced it). So the native and the post-contrast MOLLI report of
  a study are both current, while a re-run on more series replaces the earlier.
- measurements(report_id, region, tracking_uid, finding_*, site_*, concept_code,
  concept_scheme, concept_meaning, derivation, value, unit, ci95_low, ci95_high): one row per number, with
  its 95 % interval where the report gives one (TID 310 upper and lower measurement uncertainty).
- evaluations(report_id, region, concept_*, value_*): qualitative evaluations.
- not_ingested(sop_instance_uid, reason, seen_at): SRs that were stored but
  are not TID 1500 reports (or not readable as one).
Ingesting the same SR twice changes nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
import time
from pathlib import Path

from node.registry.parse import ParsedReport

SCHEMA_VERSION = 3   # 2: reports.source_series; 3: measurements.ci95_low, ci95_high

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY, pseudonym TEXT NOT NULL, study_date TEXT, accession_number TEXT);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY, sop_instance_uid TEXT UNIQUE NOT NULL, series_instance_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL REFERENCES studies(study_uid), producer TEXT NOT NULL, content_datetime TEXT,
    ingested_at REAL NOT NULL, current INTEGER NOT NULL, superseded_by INTEGER REFERENCES reports(id),
    source_series TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS reports_by_study ON reports(study_uid, producer);
CREATE TABLE IF NOT EXISTS measurements (
    report_id INTEGER NOT NULL REFERENCES reports(id), region TEXT NOT NULL, tracking_uid TEXT,
    finding_code TEXT, finding_scheme TEXT, finding_meaning TEXT, site_code TEXT, site_scheme TEXT, site_meaning TEXT,
    concept_code TEXT NOT NULL, concept_scheme TEXT NOT NULL, concept_meaning TEXT, derivation TEXT,
    value REAL NOT NULL, unit TEXT NOT NULL, ci95_low REAL, ci95_high REAL);
CREATE INDEX IF NOT EXISTS measurements_by_report ON measurements(report_id);
CREATE TABLE IF NOT EXISTS evaluations (
    report_id INTEGER NOT NULL REFERENCES reports(id), region TEXT NOT NULL, concept_code TEXT, concept_scheme TEXT,
    concept_meaning TEXT, value_code TEXT, value_scheme TEXT, value_meaning TEXT);
CREATE TABLE IF NOT EXISTS not_ingested (sop_instance_uid TEXT PRIMARY KEY, reason TEXT NOT NULL, seen_at REAL);
"""

EXPORT_COLUMNS = ("pseudonym", "study_date", "accession_number", "study_uid", "report_sop_instance_uid", "producer",
                  "source_series", "content_datetime", "current", "region", "finding", "finding_site", "concept_code",
                  "concept_scheme", "concept_meaning", "derivation", "value", "unit", "ci95_low", "ci95_high")


class RegistryError(RuntimeError):
    pass


def pseudonym(patient_id: str, salt: bytes) -> str:
    """Salted one-way pseudonym of a patient ID: the same patient maps to the same value under one salt."""
    return hmac.new(salt, patient_id.encode(), hashlib.sha256).hexdigest()[:16]


class Registry:
    def __init__(self, path: Path, salt: bytes):
        self.path = Path(path)
        self.salt = salt
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.lock = threading.RLock()   # one connection, used by the job runner's and the scheduler's threads
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RegistryError(f"{self.path}: registry schema {version} is newer than this cmr-node ({SCHEMA_VERSION})")
        if version == 1:   # version 1 had no source_series: every report counted as on the same series
            self.db.execute("ALTER TABLE reports ADD COLUMN source_series TEXT NOT NULL DEFAULT ''")
        if version in (1, 2):   # no intervals before version 3: the numbers had none
            for column in ("ci95_low", "ci95_high"):
                self.db.execute(f"ALTER TABLE measurements ADD COLUMN {column} REAL")
        self.db.executescript(_SCHEMA)
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self.lock:   # never while another thread is inside a transaction on this connection
            self.db.close()

    def known(self, sop_instance_uid: str) -> bool:
        """True when this SR was already ingested or already judged not ingestible."""
        with self.lock:
            return bool(self.db.execute(
                "SELECT 1 FROM reports WHERE sop_instance_uid=? UNION "
                "SELECT 1 FROM not_ingested WHERE sop_instance_uid=?", (sop_instance_uid, sop_instance_uid)).fetchone())

    def reject(self, sop_instance_uid: str, reason: str) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO not_ingested VALUES (?,?,?)",
                            (sop_instance_uid, reason, time.time()))

    def ingest(self, report: ParsedReport) -> str:
        """Store one parsed report: 'ingested', 'replaced' (an earlier report of the study, producer and source
        series became history), 'history' (this one is older than the current one) or 'duplicate'."""
        with self.lock:
            return self._ingest(report)

    def _ingest(self, report: ParsedReport) -> str:
        if self.db.execute("SELECT 1 FROM reports WHERE sop_instance_uid=?", (report.sop_instance_uid,)).fetchone():
            return "duplicate"
        with self._transaction():
            self.db.execute(
                "INSERT INTO studies VALUES (?,?,?,?) ON CONFLICT(study_uid) DO UPDATE SET "
                "study_date=COALESCE(excluded.study_date, study_date), "
                "accession_number=COALESCE(excluded.accession_number, accession_number)",
                (report.study_instance_uid, pseudonym(report.patient_id, self.salt), report.study_date,
                 report.accession_number))
            mine = set(report.source_series.split())
            # the current reports this one competes with: same study and producer, measured on any of the same
            # series (or either names none): a re-run on more series replaces, native and post-contrast do not
            rivals = [r for r in self.db.execute(
                "SELECT id, content_datetime, source_series FROM reports WHERE study_uid=? AND producer=? "
                "AND current=1", (report.study_instance_uid, report.producer))
                if not mine or not r["source_series"] or mine & set(r["source_series"].split())]
            newest = max(rivals, key=lambda r: r["content_datetime"] or "", default=None)
            newer = newest is None or (report.content_datetime or "") >= (newest["content_datetime"] or "")
            report_id = self.db.execute(
                "INSERT INTO reports (sop_instance_uid, series_instance_uid, study_uid, producer, content_datetime, "
                "ingested_at, current, superseded_by, source_series) VALUES (?,?,?,?,?,?,?,?,?)",
                (report.sop_instance_uid, report.series_instance_uid, report.study_instance_uid, report.producer,
                 report.content_datetime, time.time(), int(newer), None if newer else newest["id"],
                 report.source_series)).lastrowid
            if newer:
                for rival in rivals:
                    self.db.execute("UPDATE reports SET current=0, superseded_by=? WHERE id=?", (report_id, rival["id"]))
            self._insert_rows(report_id, report)
        if not rivals:
            return "ingested"
        return "replaced" if newer else "history"

    def _insert_rows(self, report_id: int, report: ParsedReport) -> None:
        for g in report.groups:
            finding = (g.finding.value, g.finding.scheme, g.finding.meaning) if g.finding else (None, None, None)
            site = (g.site.value, g.site.scheme, g.site.meaning) if g.site else (None, None, None)
            self.db.executemany(
                "INSERT INTO measurements VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(report_id, g.region, g.tracking_uid, *finding, *site, m.name.value, m.name.scheme, m.name.meaning,
                  m.derivation, m.value, m.unit, m.ci95_low, m.ci95_high) for m in g.measurements])
            self.db.executemany(
                "INSERT INTO evaluations VALUES (?,?,?,?,?,?,?,?)",
                [(report_id, g.region, n.value, n.scheme, n.meaning, v.value, v.scheme, v.meaning)
                 for n, v in g.evaluations])

    def _transaction(self):
        db = self.db

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind, *_):
                db.execute("COMMIT" if kind is None else "ROLLBACK")
        return _Tx()

    def rows(self, since: str | None = None, history: bool = False) -> list[dict]:
        """Flat measurement rows (EXPORT_COLUMNS); since: study date YYYY-MM-DD, inclusive."""
        query = (
            "SELECT s.pseudonym, s.study_date, s.accession_number, s.study_uid, r.sop_instance_uid "
            "AS report_sop_instance_uid, r.producer, r.source_series, r.content_datetime, r.current, m.region, "
            "m.finding_meaning "
            "AS finding, m.site_meaning AS finding_site, m.concept_code, m.concept_scheme, m.concept_meaning, "
            "m.derivation, m.value, m.unit, m.ci95_low, m.ci95_high FROM measurements m JOIN reports r "
            "ON r.id = m.report_id JOIN studies s ON s.study_uid = r.study_uid WHERE (? OR r.current = 1) AND (? IS NULL OR s.study_date >= ?) "
            "ORDER BY s.study_date, s.study_uid, r.producer, r.id, m.rowid")
        return [dict(row) for row in self.db.execute(query, (int(history), since, since))]

    def summary(self) -> dict:
        count = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        measures = self.db.execute(
            "SELECT r.producer, m.region, m.concept_meaning, m.concept_code, m.concept_scheme, m.derivation, m.unit, "
            "COUNT(*) AS n, AVG(m.value) AS mean, MIN(m.value) AS min, MAX(m.value) AS max, "
            "AVG(m.value * m.value) AS mean_square FROM measurements m JOIN reports r ON r.id = m.report_id "
            "WHERE r.current = 1 GROUP BY r.producer, m.region, m.concept_code, m.concept_scheme, m.derivation, m.unit "
            "ORDER BY r.producer, m.region, m.concept_meaning").fetchall()
        return {
            "schema_version": SCHEMA_VERSION, "studies": count("SELECT COUNT(*) FROM studies"),
            "reports_current": count("SELECT COUNT(*) FROM reports WHERE current=1"),
            "reports_history": count("SELECT COUNT(*) FROM reports WHERE current=0"),
            "not_ingested": count("SELECT COUNT(*) FROM not_ingested"),
            "measures": [{
                "producer": m["producer"], "region": m["region"], "concept": m["concept_meaning"],
                "code": f"{m['concept_code']}^{m['concept_scheme']}", "derivation": m["derivation"], "unit": m["unit"],
                "n": m["n"], "mean": m["mean"], "sd": max(m["mean_square"] - m["mean"] ** 2, 0.0) ** 0.5,
                "min": m["min"], "max": m["max"]} for m in measures]}
