"""The CMR registry: every TID 1500 report's numbers, in an SQLite file (one node, the default) or in
PostgreSQL (`[registry] url`: several nodes, one registry; node/registry/database.py).

Schema (version SCHEMA_VERSION below; the tables in node/registry/database.py):
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
import time
from pathlib import Path

from node.registry.database import RegistryError, connect
from node.registry.parse import ParsedReport

SCHEMA_VERSION = 3   # 2: reports.source_series; 3: measurements.ci95_low, ci95_high

__all__ = ["EXPORT_COLUMNS", "Registry", "RegistryError", "SCHEMA_VERSION", "pseudonym"]

EXPORT_COLUMNS = ("pseudonym", "study_date", "accession_number", "study_uid", "report_sop_instance_uid", "producer",
                  "source_series", "content_datetime", "current", "region", "finding", "finding_site", "concept_code",
                  "concept_scheme", "concept_meaning", "derivation", "value", "unit", "ci95_low", "ci95_high")


def pseudonym(patient_id: str, salt: bytes) -> str:
    """Salted one-way pseudonym of a patient ID: the same patient maps to the same value under one salt."""
    return hmac.new(salt, patient_id.encode(), hashlib.sha256).hexdigest()[:16]


def _migrate(db, version: int) -> None:
    """Bring an older SQLite registry up to SCHEMA_VERSION (PostgreSQL registries start at 3)."""
    if version == 1:   # version 1 had no source_series: every report counted as on the same series
        db.execute("ALTER TABLE reports ADD COLUMN source_series TEXT NOT NULL DEFAULT ''")
    if version in (1, 2):   # no intervals before version 3: the numbers had none
        for column in ("ci95_low", "ci95_high"):
            db.execute(f"ALTER TABLE measurements ADD COLUMN {column} REAL")


class Registry:
    def __init__(self, location: Path | str, salt: bytes):
        """location: an SQLite file, or a postgresql:// URL."""
        self.salt = salt
        self.db = connect(location, SCHEMA_VERSION, _migrate)
        self.errors = self.db.errors       # what a failing write raises, for the callers that go on

    @property
    def path(self) -> Path | str:
        """The SQLite file, or the PostgreSQL host and database (never the password)."""
        return self.db.where

    def close(self) -> None:
        self.db.close()    # never while another thread is inside a transaction on this connection

    def known(self, sop_instance_uid: str) -> bool:
        """True when this SR was already ingested or already judged not ingestible."""
        return bool(self.db.query(
            "SELECT 1 FROM reports WHERE sop_instance_uid=? UNION "
            "SELECT 1 FROM not_ingested WHERE sop_instance_uid=?", (sop_instance_uid, sop_instance_uid)))

    def reject(self, sop_instance_uid: str, reason: str) -> None:
        self.db.execute("INSERT INTO not_ingested VALUES (?,?,?) ON CONFLICT (sop_instance_uid) DO UPDATE "
                        "SET reason = excluded.reason, seen_at = excluded.seen_at",
                        (sop_instance_uid, reason, time.time()))

    def ingest(self, report: ParsedReport) -> str:
        """Store one parsed report: 'ingested', 'replaced' (an earlier report of the study, producer and source
        series became history), 'history' (this one is older than the current one) or 'duplicate' (this SR is
        in already, from this node or another)."""
        with self.db.transaction(report.study_instance_uid):
            if self.db.query("SELECT 1 FROM reports WHERE sop_instance_uid=?", (report.sop_instance_uid,)):
                return "duplicate"
            self.db.execute(
                "INSERT INTO studies VALUES (?,?,?,?) ON CONFLICT (study_uid) DO UPDATE SET "
                "study_date = COALESCE(excluded.study_date, studies.study_date), "
                "accession_number = COALESCE(excluded.accession_number, studies.accession_number)",
                (report.study_instance_uid, pseudonym(report.patient_id, self.salt), report.study_date,
                 report.accession_number))
            mine = set(report.source_series.split())
            # the current reports this one competes with: same study and producer, measured on any of the same
            # series (or either names none): a re-run on more series replaces, native and post-contrast do not
            rivals = [r for r in self.db.query(
                "SELECT id, content_datetime, source_series FROM reports WHERE study_uid=? AND producer=? "
                "AND current=1", (report.study_instance_uid, report.producer))
                if not mine or not r["source_series"] or mine & set(r["source_series"].split())]
            newest = max(rivals, key=lambda r: r["content_datetime"] or "", default=None)
            newer = newest is None or (report.content_datetime or "") >= (newest["content_datetime"] or "")
            [row] = self.db.query(
                "INSERT INTO reports (sop_instance_uid, series_instance_uid, study_uid, producer, content_datetime, "
                "ingested_at, current, superseded_by, source_series) VALUES (?,?,?,?,?,?,?,?,?) RETURNING id",
                (report.sop_instance_uid, report.series_instance_uid, report.study_instance_uid, report.producer,
                 report.content_datetime, time.time(), int(newer), None if newer else newest["id"],
                 report.source_series))
            if newer:
                for rival in rivals:
                    self.db.execute("UPDATE reports SET current=0, superseded_by=? WHERE id=?", (row["id"], rival["id"]))
            self._insert_rows(row["id"], report)
        if not rivals:
            return "ingested"
        return "replaced" if newer else "history"

    def _insert_rows(self, report_id: int, report: ParsedReport) -> None:
        for g in report.groups:
            finding = (g.finding.value, g.finding.scheme, g.finding.meaning) if g.finding else (None, None, None)
            site = (g.site.value, g.site.scheme, g.site.meaning) if g.site else (None, None, None)
            self.db.executemany(
                "INSERT INTO measurements (report_id, region, tracking_uid, finding_code, finding_scheme, "
                "finding_meaning, site_code, site_scheme, site_meaning, concept_code, concept_scheme, concept_meaning, "
                "derivation, value, unit, ci95_low, ci95_high) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(report_id, g.region, g.tracking_uid, *finding, *site, m.name.value, m.name.scheme, m.name.meaning,
                  m.derivation, m.value, m.unit, m.ci95_low, m.ci95_high) for m in g.measurements])
            self.db.executemany(
                "INSERT INTO evaluations VALUES (?,?,?,?,?,?,?,?)",
                [(report_id, g.region, n.value, n.scheme, n.meaning, v.value, v.scheme, v.meaning)
                 for n, v in g.evaluations])

    def rows(self, since: str | None = None, history: bool = False) -> list[dict]:
        """Flat measurement rows (EXPORT_COLUMNS); since: study date YYYY-MM-DD, inclusive."""
        query = (
            "SELECT s.pseudonym, s.study_date, s.accession_number, s.study_uid, r.sop_instance_uid "
            "AS report_sop_instance_uid, r.producer, r.source_series, r.content_datetime, r.current, m.region, "
            "m.finding_meaning "
            "AS finding, m.site_meaning AS finding_site, m.concept_code, m.concept_scheme, m.concept_meaning, "
            "m.derivation, m.value, m.unit, m.ci95_low, m.ci95_high FROM measurements m JOIN reports r "
            "ON r.id = m.report_id JOIN studies s ON s.study_uid = r.study_uid "
            "WHERE (? = 1 OR r.current = 1) AND (CAST(? AS TEXT) IS NULL OR s.study_date >= ?) "
            f"ORDER BY s.study_date, s.study_uid, r.producer, r.id, {self.db.row_order}")
        return self.db.query(query, (int(history), since, since))

    def summary(self) -> dict:
        def count(sql):
            return self.db.query(f"SELECT COUNT(*) AS n FROM {sql}")[0]["n"]
        measures = self.db.query(
            "SELECT r.producer, m.region, MIN(m.concept_meaning) AS concept_meaning, m.concept_code, m.concept_scheme, "
            "m.derivation, m.unit, COUNT(*) AS n, AVG(m.value) AS mean, MIN(m.value) AS min, MAX(m.value) AS max, "
            "AVG(m.value * m.value) AS mean_square FROM measurements m JOIN reports r ON r.id = m.report_id "
            "WHERE r.current = 1 GROUP BY r.producer, m.region, m.concept_code, m.concept_scheme, m.derivation, m.unit "
            "ORDER BY r.producer, m.region, MIN(m.concept_meaning)")
        return {
            "schema_version": SCHEMA_VERSION, "studies": count("studies"),
            "reports_current": count("reports WHERE current=1"),
            "reports_history": count("reports WHERE current=0"),
            "not_ingested": count("not_ingested"),
            "measures": [{
                "producer": m["producer"], "region": m["region"], "concept": m["concept_meaning"],
                "code": f"{m['concept_code']}^{m['concept_scheme']}", "derivation": m["derivation"], "unit": m["unit"],
                "n": m["n"], "mean": m["mean"], "sd": max(m["mean_square"] - m["mean"] ** 2, 0.0) ** 0.5,
                "min": m["min"], "max": m["max"]} for m in measures]}
