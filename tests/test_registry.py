"""The CMR registry: SR parsing, idempotence, revisions, pseudonyms, export, and SRs sent by others."""
import copy
import csv
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from node.config import parse_config
from node.process.offline import process_folder
from node.registry import Registry, ingest_file
from node.registry.parse import NotAMeasurementReport, parse_report
from node.registry.store import pseudonym
from tests.conftest import node_config_dict, storescu, wait_until, write_toml

SALT = b"test-salt-0123456789"


@pytest.fixture(scope="module")
def ecv_report(tmp_path_factory, ecv_study):
    """The ECV module's SR (path) and results of the phantom study, from `process`."""
    out = tmp_path_factory.mktemp("processed")
    job = process_folder(ecv_study[2][0].parent.parent, out, parse_config({"routes": [
        {"name": "ecv", "series_description": "(?i)moco_t1", "module": "ecv"}]}))["jobs"][0]
    return out / f"{job['results']['report_sop_instance_uid']}.dcm", job["results"]


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request, tmp_path):
    """The registry in an SQLite file, and in PostgreSQL (a fresh database each time): one behaviour."""
    location = tmp_path / "registry.sqlite" if request.param == "sqlite" else \
        request.getfixturevalue("postgres").new_database()
    r = Registry(location, SALT)
    yield r
    r.close()


def revised(path, tmp_path, content_time: str, name: str):
    """A re-issued report of the same study and producer: new SOP Instance UID, another content time."""
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.ContentTime = content_time
    target = tmp_path / name
    ds.save_as(target, enforce_file_format=True)
    return target, str(ds.SOPInstanceUID)


def test_parse_finds_every_number_with_code_and_unit(ecv_report):
    path, results = ecv_report
    parsed = parse_report(pydicom.dcmread(path))
    assert parsed.producer == "cmr-node ecv"
    found = {(g.region, m.name.value, m.derivation): (m.value, m.unit) for g in parsed.groups for m in g.measurements}
    expected = {(g["region"], m["name"]["value"], m["derivation"]): (m["value"], m["unit"])
                for g in results["measurements"] for m in g["measurements"]}
    assert found.keys() == expected.keys()
    for key, (value, unit) in expected.items():
        assert found[key][1] == unit and found[key][0] == pytest.approx(value, rel=1e-6)
    evaluations = {(g.region, n.meaning, v.meaning) for g in parsed.groups for n, v in g.evaluations}
    assert ("LV myocardium", "Segmentation Method", "Automated") in evaluations


def test_same_report_twice_gives_one_set_of_rows(registry, ecv_report):
    path, _ = ecv_report
    assert ingest_file(registry, path) == "ingested"
    rows = registry.rows()
    assert ingest_file(registry, path) == "duplicate"
    assert registry.rows() == rows and len(rows) > 5


def test_revision_replaces_and_keeps_history(registry, ecv_report, tmp_path):
    path, _ = ecv_report
    ingest_file(registry, path)
    later, later_uid = revised(path, tmp_path, "235959", "later.dcm")
    earlier, _ = revised(path, tmp_path, "000001", "earlier.dcm")
    assert ingest_file(registry, later) == "replaced"
    assert ingest_file(registry, earlier) == "history"     # arrived last, but older: not current
    current = registry.rows()
    assert {r["report_sop_instance_uid"] for r in current} == {later_uid}
    everything = registry.rows(history=True)
    assert len({r["report_sop_instance_uid"] for r in everything}) == 3 and len(everything) == 3 * len(current)
    summary = registry.summary()
    assert (summary["reports_current"], summary["reports_history"], summary["studies"]) == (1, 2, 1)


@pytest.mark.integration     # no external program, but a raw MOLLI study through the module (about 5 s)
def test_native_and_post_contrast_reports_of_one_producer_are_both_current(registry, tmp_path):
    """The MOLLI module reports a study's native and its post-contrast T1 separately: both stay current (a
    report is current per study, producer and source series); a revision replaces only its own."""
    from dicom_out.phantom_studies import write_raw_molli_ecv_study
    from node.config import offline_config
    write_raw_molli_ecv_study(tmp_path / "raw")
    report = process_folder(tmp_path / "raw", tmp_path / "out", offline_config())
    molli = [j for j in report["jobs"] if j["module"] == "molli"]
    paths = [tmp_path / "out" / f"{j['results']['report_sop_instance_uid']}.dcm" for j in molli]
    assert [ingest_file(registry, p) for p in paths] == ["ingested", "ingested"]
    current = registry.rows()
    assert len({r["report_sop_instance_uid"] for r in current}) == 2
    assert len({r["source_series"] for r in current}) == 2 and all(r["source_series"] for r in current)
    region = {r["region"] for r in current}
    assert region == {"Whole field of view, every fitted voxel (not a tissue region)", "Quality control"}
    assert {r["finding"] for r in current} == {"Image Region", "Quality Assessment"}
    later, later_uid = revised(paths[0], tmp_path, "235959", "later.dcm")
    assert ingest_file(registry, later) == "replaced"
    assert len({r["report_sop_instance_uid"] for r in registry.rows()}) == 2


# the registry's tables as version 1 wrote them (no source series, no intervals)
VERSION_1_SCHEMA = """
CREATE TABLE studies (study_uid TEXT PRIMARY KEY, pseudonym TEXT NOT NULL, study_date TEXT, accession_number TEXT);
CREATE TABLE reports (
    id INTEGER PRIMARY KEY, sop_instance_uid TEXT UNIQUE NOT NULL, series_instance_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL REFERENCES studies(study_uid), producer TEXT NOT NULL, content_datetime TEXT,
    ingested_at REAL NOT NULL, current INTEGER NOT NULL, superseded_by INTEGER REFERENCES reports(id));
CREATE INDEX reports_by_study ON reports(study_uid, producer);
CREATE TABLE measurements (
    report_id INTEGER NOT NULL REFERENCES reports(id), region TEXT NOT NULL, tracking_uid TEXT,
    finding_code TEXT, finding_scheme TEXT, finding_meaning TEXT, site_code TEXT, site_scheme TEXT, site_meaning TEXT,
    concept_code TEXT NOT NULL, concept_scheme TEXT NOT NULL, concept_meaning TEXT, derivation TEXT,
    value REAL NOT NULL, unit TEXT NOT NULL);
CREATE TABLE evaluations (
    report_id INTEGER NOT NULL REFERENCES reports(id), region TEXT NOT NULL, concept_code TEXT, concept_scheme TEXT,
    concept_meaning TEXT, value_code TEXT, value_scheme TEXT, value_meaning TEXT);
CREATE TABLE not_ingested (sop_instance_uid TEXT PRIMARY KEY, reason TEXT NOT NULL, seen_at REAL);
"""


def test_a_version_1_registry_is_brought_up_to_date(tmp_path, ecv_report):
    """A registry written before reports had source series keeps its rows and takes new reports."""
    import sqlite3
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(VERSION_1_SCHEMA)
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    registry = Registry(path, SALT)
    assert ingest_file(registry, ecv_report[0]) == "ingested"
    assert registry.summary()["schema_version"] == 3 and registry.rows()[0]["source_series"]
    assert registry.rows()[0]["ci95_low"] is None          # the interval columns are there, empty for ECV
    registry.close()


def test_patient_only_as_salted_pseudonym(registry, ecv_report, ecv_study):
    path, _ = ecv_report
    ingest_file(registry, path)
    study = ecv_study[0]
    rows = registry.rows()
    assert {r["pseudonym"] for r in rows} == {pseudonym(study.patient_id, SALT)}
    assert pseudonym(study.patient_id, SALT) != pseudonym(study.patient_id, b"another-salt-000000")
    assert {(r["study_date"], r["accession_number"]) for r in rows} == {
        (study.study_datetime.date().isoformat(), study.accession_number)}
    if not isinstance(registry.path, Path):
        return                                   # PostgreSQL: no file to look into
    registry.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = registry.path.read_bytes()
    assert study.patient_id.encode() not in raw and study.patient_name.encode() not in raw


def _foreign_report(source: pydicom.Dataset, with_template: bool = True) -> pydicom.Dataset:
    """A TID 1500 report another system might send: a person observer, a planar ROI, no cmr-node codes."""
    region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.CIRCLE,
                               graphic_data=np.array([[80.0, 80.0], [80.0, 90.0]]),
                               source_image=hd.sr.SourceImageForRegion.from_source_image(source))
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier="Septum ROI", uid=pydicom.uid.generate_uid()),
        referenced_region=region, finding_type=codes.SCT.LeftVentricleMyocardium,
        measurements=[hd.sr.Measurement(name=codes.DCM.T1, value=1003.5, unit=codes.UCUM.Millisecond,
                                        derivation=codes.SCT.Mean)])
    context = hd.sr.ObservationContext(observer_person_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Reader^A")))
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=codes.SCT.MagneticResonanceImagingOfHeart,
                                     imaging_measurements=[group], referenced_images=[source])
    sr = hd.sr.Comprehensive3DSR(evidence=[source], content=report, series_instance_uid=pydicom.uid.generate_uid(),
                                 series_number=700, sop_instance_uid=pydicom.uid.generate_uid(), instance_number=1,
                                 manufacturer="Other Vendor", series_description="Workstation T1 ROI")
    if not with_template:
        del sr.ContentTemplateSequence
    return sr


@pytest.mark.parametrize("with_template", [True, False])
def test_another_systems_report_is_ingested(registry, ecv_study, tmp_path, with_template):
    source = pydicom.dcmread(ecv_study[2][0])
    path = tmp_path / "foreign.dcm"
    _foreign_report(source, with_template).save_as(path, enforce_file_format=True)
    assert ingest_file(registry, path) == "ingested"
    [row] = registry.rows()
    assert (row["region"], row["concept_code"], row["derivation"], row["value"], row["unit"]) == (
        "Septum ROI", "113063", "Mean", 1003.5, "ms")
    assert row["producer"] == "Other Vendor Workstation T1 ROI"


def test_malformed_and_other_srs_are_not_ingested(registry, ecv_study, ecv_report, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    basic = _foreign_report(pydicom.dcmread(ecv_study[2][0]))
    basic.ConceptNameCodeSequence[0].CodeValue = "18748-4"          # a diagnostic imaging report, not TID 1500
    basic.ConceptNameCodeSequence[0].CodingSchemeDesignator = "LN"
    basic.save_as(tmp_path / "other.dcm", enforce_file_format=True)
    broken = pydicom.dcmread(ecv_report[0])
    container = next(i for i in broken.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010")
    del container.ContentSequence                                     # the Imaging Measurements container emptied
    broken.SOPInstanceUID = pydicom.uid.generate_uid()
    broken.save_as(tmp_path / "broken.dcm", enforce_file_format=True)
    (tmp_path / "garbage.dcm").write_bytes(b"\0" * 200)
    for name in ("other.dcm", "broken.dcm", "garbage.dcm"):
        assert ingest_file(registry, tmp_path / name) == "not ingested", name
    assert registry.rows() == [] and registry.summary()["not_ingested"] == 2
    assert "not ingested" in caplog.text and "Imaging Measurement Report" in caplog.text


def test_not_a_report_raises_clearly():
    ds = pydicom.Dataset()
    ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID = "1.2.3", "1.2.4", "1.2.5"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    with pytest.raises(NotAMeasurementReport, match="not an SR class"):
        parse_report(ds)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "node.cli", "registry", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.integration
def test_cli_ingest_export_and_summary(tmp_path, ecv_report, ecv_study):
    toml = write_toml(node_config_dict(tmp_path / "data", registry={"salt": SALT.decode()}), tmp_path / "node.toml")
    result = _cli("ingest", str(ecv_report[0]), "--config", str(toml))
    assert result.returncode == 0 and "ingested" in result.stdout
    rows = list(csv.DictReader(io.StringIO(_cli("export", "--config", str(toml)).stdout)))
    assert rows and rows[0]["pseudonym"] == pseudonym(ecv_study[0].patient_id, SALT)
    date = ecv_study[0].study_datetime.date().isoformat()
    assert json.loads(_cli("export", "--format", "json", "--since", "2999-01-01", "--config", str(toml)).stdout) == []
    assert len(json.loads(_cli("export", "--format", "json", "--since", date, "--config", str(toml)).stdout)) == len(rows)
    summary = json.loads(_cli("summary", "--config", str(toml)).stdout)
    ecv = next(m for m in summary["measures"]
               if m["code"] == "ECV^99CMRN" and m["derivation"] == "Median" and m["region"] == "LV myocardium")
    assert ecv["n"] == 1 and ecv["unit"] == "%"
    segments = [m for m in summary["measures"] if m["code"] == "ECV^99CMRN" and m["region"].startswith("AHA ")]
    assert {m["region"].split()[1] for m in segments} == {"7", "8", "9", "10", "11", "12"}
    bad = _cli("export", "--since", "yesterday", "--config", str(toml))
    assert bad.returncode == 2 and "--since" in bad.stderr
    # a revision: the export holds the current report, --history both, and --out writes the file
    later, later_uid = revised(ecv_report[0], tmp_path, "235959", "later.dcm")
    assert "replaced" in _cli("ingest", str(later), "--config", str(toml)).stdout
    current = json.loads(_cli("export", "--format", "json", "--config", str(toml)).stdout)
    assert {r["report_sop_instance_uid"] for r in current} == {later_uid}
    out = tmp_path / "history.csv"
    assert _cli("export", "--history", "--out", str(out), "--config", str(toml)).returncode == 0
    history = list(csv.DictReader(out.open()))
    assert len(history) == 2 * len(current) and {r["current"] for r in history} == {"0", "1"}


@pytest.mark.integration
def test_node_ingests_reports_sent_to_it(tmp_path, ecv_study, ecv_report, make_node):
    """A report that arrives by C-STORE (from a workstation, or our own sent back) reaches the registry."""
    config = node_config_dict(tmp_path / "data")
    config["routes"] = []
    node = make_node(config)
    foreign = tmp_path / "foreign.dcm"
    _foreign_report(pydicom.dcmread(ecv_study[2][0])).save_as(foreign, enforce_file_format=True)
    other = tmp_path / "other.dcm"
    ds = copy.deepcopy(pydicom.dcmread(foreign))
    ds.ConceptNameCodeSequence[0].CodeValue, ds.ConceptNameCodeSequence[0].CodingSchemeDesignator = "18748-4", "LN"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(other, enforce_file_format=True)
    assert storescu(node.port, [ecv_report[0], foreign, other], extra=["-R"]).returncode == 0
    wait_until(lambda: node.registry.summary()["reports_current"] == 2 and node.registry.summary()["not_ingested"] == 1,
               timeout=30, what="two reports ingested and one refused")
    assert node.index.status()["instances"] == 3     # the refused one is stored all the same


def test_without_a_configured_salt_the_node_makes_its_own_once(tmp_path):
    from node.registry import open_registry
    config = parse_config({"node": {"data_dir": str(tmp_path / "data")}})
    first = open_registry(config)
    salt_file = tmp_path / "data" / "registry.salt"
    assert salt_file.stat().st_mode & 0o777 == 0o600 and len(salt_file.read_text()) == 64
    again = open_registry(config)
    assert first.salt == again.salt     # the same patient keeps the same pseudonym across restarts
    first.close()
    again.close()


def _ingest_on_cue(url: str, salt: bytes, paths: list[str], start_at: float, step_s: float) -> dict[str, str]:
    """One node's registry connection ingesting SR files, the k-th at start_at + k * step_s (time.time()), so that
    two nodes given cues alike reach their k-th reports at the same moment (run in its own process)."""
    import time
    registry = Registry(url, salt)
    reports = [(Path(p).name, parse_report(pydicom.dcmread(p))) for p in paths]   # the reading done beforehand
    statuses = {}
    try:
        for k, (name, report) in enumerate(reports):
            time.sleep(max(0.0, start_at + k * step_s - time.time()))
            statuses[name] = registry.ingest(report)
        return statuses
    finally:
        registry.close()


def _of_study(path, tmp_path, study: int, content_time: str, name: str) -> str:
    """A copy of the report as another report of study number `study` (its own Study Instance UID)."""
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.StudyInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["registry race", str(study)])
    ds.ContentTime = content_time
    ds.save_as(tmp_path / name, enforce_file_format=True)
    return str(tmp_path / name)


@pytest.mark.integration     # a real PostgreSQL, two processes
def test_two_nodes_ingest_into_one_postgresql_registry_at_once(postgres, ecv_report, ecv_study, tmp_path):
    """Two nodes (processes with their own connection and the shared salt) at the same moments, 5 times over:
    each sends the same report (stored once: the other finds it there), then each its own report of a study
    that is new to both (one of the two is current, never both); the patient is one pseudonym throughout."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor
    rounds = 5
    shared = [_of_study(ecv_report[0], tmp_path, 1000 + k, "100000", f"s{k}.dcm") for k in range(rounds)]
    mine = [[_of_study(ecv_report[0], tmp_path, k, f"1{node}0000", f"n{node}-{k}.dcm") for k in range(rounds)]
            for node in (1, 2)]
    url = postgres.new_database()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        start_at = time.time() + 6.0        # both workers started, connected and done reading by then
        futures = [pool.submit(_ingest_on_cue, url, SALT, [p for k in range(rounds) for p in (shared[k], own[k])],
                               start_at, 0.1) for own in mine]
        statuses = [f.result(timeout=300) for f in futures]
    for path in shared:
        name = Path(path).name
        assert sorted(s[name] == "duplicate" for s in statuses) == [False, True], (name, statuses)
    registry = Registry(url, SALT)
    rows = registry.rows(history=True)
    assert len({r["report_sop_instance_uid"] for r in rows}) == 3 * rounds
    current = {}
    for r in registry.rows():
        current.setdefault(r["study_uid"], set()).add(r["report_sop_instance_uid"])
    assert len(current) == 2 * rounds and all(len(uids) == 1 for uids in current.values())
    assert {r["pseudonym"] for r in rows} == {pseudonym(ecv_study[0].patient_id, SALT)}
    registry.close()


@pytest.mark.integration     # a real PostgreSQL
def test_a_node_still_writing_holds_the_other_back_until_it_is_done(postgres, ecv_report, tmp_path, monkeypatch):
    """Node A is half a second inside its transaction when node B brings the same report, then another report
    of the same study: B waits for A and finds the report there (stored once, no error), and of A's and B's
    reports of one study one is current, not both."""
    import threading
    import time
    url = postgres.new_database()
    a, b = Registry(url, SALT), Registry(url, SALT)
    write_rows = Registry._insert_rows

    def slow_for_a(self, report_id, report):
        write_rows(self, report_id, report)
        if self is a:
            time.sleep(0.5)
    monkeypatch.setattr(Registry, "_insert_rows", slow_for_a)

    def at_once(report_a, report_b) -> list[str]:
        results = {}
        thread = threading.Thread(target=lambda: results.setdefault("a", a.ingest(report_a)))
        thread.start()
        time.sleep(0.15)
        results["b"] = b.ingest(report_b)
        thread.join()
        return [results["a"], results["b"]]
    report = parse_report(pydicom.dcmread(ecv_report[0]))
    assert at_once(report, report) == ["ingested", "duplicate"]
    later = [parse_report(pydicom.dcmread(revised(ecv_report[0], tmp_path, time, f"{time}.dcm")[0]))
             for time in ("235900", "235958")]
    at_once(*later)
    assert len({r["report_sop_instance_uid"] for r in a.rows()}) == 1
    a.close()
    b.close()


@pytest.mark.integration     # a real PostgreSQL; the CLI in its own process
def test_cli_on_a_postgresql_registry_exports_parquet_with_its_types(postgres, tmp_path, ecv_report):
    """`[registry] url`: ingest and export go to PostgreSQL; the Parquet export is what pandas, DuckDB and R
    arrow read, values as doubles and absent intervals as nulls, equal to the JSON export."""
    import pyarrow.parquet as pq
    config = node_config_dict(tmp_path / "data", registry={"salt": SALT.decode(), "url": postgres.new_database()})
    toml = write_toml(config, tmp_path / "node.toml")
    assert "ingested" in _cli("ingest", str(ecv_report[0]), "--config", str(toml)).stdout
    assert not (tmp_path / "data" / "registry.sqlite").exists()
    out = tmp_path / "registry.parquet"
    assert _cli("export", "--format", "parquet", "--out", str(out), "--config", str(toml)).returncode == 0
    table = pq.read_table(out)
    assert str(table.schema.field("value").type) == "double" and str(table.schema.field("ci95_low").type) == "double"
    assert table.to_pylist() == json.loads(_cli("export", "--format", "json", "--config", str(toml)).stdout)
    no_file = _cli("export", "--format", "parquet", "--config", str(toml))
    assert no_file.returncode == 2 and "--out" in no_file.stderr
