"""The README's promises, each with a test that fails when the promise breaks (issue: tests that fail when a
promise breaks). Expected values are typed from their published source, never computed with the code's own
tables; each test was checked by breaking the code it guards once (see the mutation report in the README).
"""
import os
import signal
import sqlite3
import sys

import pydicom
import pytest

from analysis.oximetry import CALIBRATIONS, J_PER_ML_MMHG, J_PER_ML_O2, O2_PER_G_HB_ML
from analysis.relaxivity import r1_per_mM_s
from dicom_out.phantom_studies import write_raw_molli_ecv_study
from dicom_out.synthetic_mr import SyntheticStudy
from node.config import builtin_routes
from node.registry.store import pseudonym
from tests.conftest import (dciodvfy_errors, node_config_dict, node_log, orthanc_destination, require_tool,
                            serve_process, storescu, wait_until, write_toml)


# ---- no patient data in logs -----------------------------------------------------------------------------
PATIENT = dict(patient_name="Hartigan^Philomena^Quincy", patient_id="PID-7319-ZX", patient_birth_date="19510704",
               accession_number="ACC-88231")
REFERRER = "Oduya^Benedikt"


def _states(db) -> list[tuple]:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT module, state FROM jobs ORDER BY id").fetchall()
    except sqlite3.Error:
        return []


def _outbox(db) -> list[str]:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return [r[0] for r in con.execute("SELECT state FROM outbox")]
    except sqlite3.Error:
        return []


@pytest.mark.integration
def test_no_patient_data_in_any_log_line_at_debug(tmp_path, orthanc):
    """A served node at DEBUG, its worker processes, a rejected instance and deliveries to a PACS: no name, ID,
    birth date, accession number or referring physician in any line of any process."""
    study = SyntheticStudy(**PATIENT)
    _, _, files = write_raw_molli_ecv_study(tmp_path / "scanner", study)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.ReferringPhysicianName = REFERRER
        ds.save_as(path)
    rejected = pydicom.dcmread(files[0])
    rejected.SOPInstanceUID = rejected.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    rejected.Rows = 20000                                     # absurd size: refused, with a warning in the log
    rejected.save_as(tmp_path / "rejected.dcm")
    config = node_config_dict(tmp_path / "data", [orthanc_destination(orthanc)],
                              routes=builtin_routes(destinations=["orthanc"]))
    toml = write_toml(config, tmp_path / "node.toml")
    db = tmp_path / "data" / "index.sqlite"
    node = serve_process(toml, log_level="DEBUG")
    try:
        wait_until(lambda: storescu(config["node"]["port"], files).returncode == 0, timeout=30, what="node up")
        storescu(config["node"]["port"], [tmp_path / "rejected.dcm"])
        wait_until(lambda: _states(db) == [("molli", "done"), ("molli", "done"), ("ecv", "done")], timeout=240,
                   what="MOLLI and ECV jobs done")
        wait_until(lambda: _outbox(db) and set(_outbox(db)) == {"sent"}, timeout=120, what="outputs sent")
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)
    entries = node_log(toml)
    assert any(e["level"] == "DEBUG" for e in entries)
    assert any("in worker process" in e["message"] for e in entries)        # the workers' lines are there too
    assert any("absurd image size" in e["message"] for e in entries)        # and the rejection's warning
    text = toml.with_name("node.log").read_text().lower()
    birth = PATIENT["patient_birth_date"]
    for value in ("Hartigan", "Philomena", "Quincy", PATIENT["patient_id"], birth, f"{birth[:4]}-{birth[4:6]}-{birth[6:]}",
                  PATIENT["accession_number"], "Oduya", "Benedikt"):
        assert value.lower() not in text, value


# ---- published values, typed from their source --------------------------------------------------------
def test_pseudonym_is_hmac_sha256_truncated_to_16_hex_digits():
    """RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?") =
    5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843."""
    assert pseudonym("what do ya want for nothing?", b"Jefe") == "5bdcc146bf60754e"


def test_lu_2012_calibration_is_the_published_one():
    """Lu et al., MRM 2012;67:42-49, 3 T, tau_CPMG 10 ms: 1/T2 = A + B(1-Y) + C(1-Y)^2, A = -13.5 + 80.2 Hct
    - 75.9 Hct^2, B = -0.5 Hct + 3.4 Hct^2, C = 247.4 Hct (1 - Hct)."""
    calibration = CALIBRATIONS["lu2012_3T"]
    for hct in (0.35, 0.42, 0.50):
        for y in (0.4, 0.6, 0.8, 0.98):
            a = -13.5 + 80.2 * hct - 75.9 * hct ** 2
            b = -0.5 * hct + 3.4 * hct ** 2
            c = 247.4 * hct * (1 - hct)
            assert calibration.r2_per_s(y, hct) == pytest.approx(a + b * (1 - y) + c * (1 - y) ** 2, rel=1e-12)
    assert (calibration.field_strength_t, calibration.refocusing_interval_ms) == (3.0, 10.0)


@pytest.mark.parametrize("agent, r1_15, r1_30", [
    ("Gadovist", 5.2, 5.0), ("Dotarem", 3.6, 3.5), ("Magnevist", 4.1, 3.7), ("MultiHance", 6.3, 5.5),
    ("ProHance", 4.1, 3.7), ("Omniscan", 4.3, 4.0), ("Eovist", 6.9, 6.2)])
def test_relaxivities_are_the_published_plasma_values(agent, r1_15, r1_30):
    """Rohrer et al., Invest Radiol 2005;40:715-724, Table 2: r1 in plasma at 37 C (L/mmol/s)."""
    assert r1_per_mM_s(agent, 1.5) == pytest.approx(r1_15)
    assert r1_per_mM_s(agent, 3.0) == pytest.approx(r1_30)


def test_oxygen_and_work_constants():
    """Huefner factor 1.36 mL O2/g Hb; 1 mL mmHg = 133.322 Pa x 1e-6 m^3 = 1.333e-4 J; 20.1 J/mL O2
    (Knaapen et al., Circulation 2007;115:918)."""
    assert O2_PER_G_HB_ML == 1.36 and J_PER_ML_O2 == 20.1
    assert J_PER_ML_MMHG == pytest.approx(133.322e-6, rel=1e-3)


# ---- the tests' own tools --------------------------------------------------------------------------------
@pytest.mark.integration
def test_tools_are_the_systems_not_the_virtual_environments():
    for tool in ("storescu", "storescp", "echoscu"):
        path = require_tool(tool)
        assert not path.startswith(sys.prefix), path
    assert "dcmtk" in os.popen(f"{require_tool('storescu')} --version").read().lower()


@pytest.mark.integration
def test_dciodvfy_helper_reports_what_dciodvfy_cannot_read(tmp_path):
    assert dciodvfy_errors(tmp_path / "missing.dcm")
    (tmp_path / "junk.dcm").write_bytes(b"not DICOM at all" * 10)
    assert dciodvfy_errors(tmp_path / "junk.dcm")
    study = SyntheticStudy()
    _, _, files = write_raw_molli_ecv_study(tmp_path / "ok", study)
    assert dciodvfy_errors(files[0]) == []
