"""A node killed with SIGKILL in the middle of 1000 images: every acknowledged instance survives, once,
and every study routed to a module is processed exactly once."""
import os
import re
import signal
import sqlite3
import subprocess
import time

import numpy as np
import pydicom
import pytest

from dicom_out.phantom_studies import write_ecv_study
from dicom_out.synthetic_mr import SyntheticStudy, save_series, t1_map_series
from tests.conftest import node_config_dict, require_tool, serve_process, storescu, wait_until, write_toml

pytestmark = pytest.mark.integration     # `cmr-node serve` as a process, SIGKILLed, with DCMTK storescu

IMAGES = 1000


def _images(directory, count):
    rng = np.random.default_rng(1)
    study = SyntheticStudy()
    paths = []
    for start in range(0, count, 100):
        block = rng.integers(0, 4000, size=(100, 64, 64)).astype(float)
        paths += save_series(t1_map_series(block, study, series_description=f"CRASH_{start}", series_number=start,
                                           acquired=study.study_datetime, pixel_mm=1.0), directory / str(start))
    return paths


def _indexed(db) -> set[str]:
    with sqlite3.connect(db, timeout=10) as con:
        return {r[0] for r in con.execute("SELECT sop_instance_uid FROM instances")}


def _jobs(db) -> list[tuple[str, str, int]]:
    with sqlite3.connect(db, timeout=10) as con:
        return con.execute("SELECT study_uid, state, id FROM jobs ORDER BY id").fetchall()


def test_sigkill_mid_stream_loses_no_acknowledged_instance(tmp_path):
    filler = _images(tmp_path / "scanner", IMAGES)
    # Two ECV studies routed to the ecv module: one sent first, one straddling the moment of the kill.
    first, _, first_files = write_ecv_study(tmp_path / "first", SyntheticStudy())
    straddling, _, straddling_files = write_ecv_study(tmp_path / "straddling", SyntheticStudy())
    files = first_files + filler[:296] + straddling_files[:1] + filler[296:310] + straddling_files[1:] + filler[310:]
    uid_of = {str(f): str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    config = node_config_dict(tmp_path / "data")
    config["routes"] = config["routes"][:1]     # the ECV route alone: one job per study
    # As on a real node, a study waits long enough for the scanner's re-send after a restart.
    config["completion"]["study_quiet_seconds"] = 20
    toml = write_toml(config, tmp_path / "node.toml")
    port = config["node"]["port"]
    node = serve_process(toml)
    try:
        wait_until(lambda: storescu(port, files[:1]).returncode == 0, timeout=30, what="node up")
        sender = subprocess.Popen([require_tool("storescu"), "-v", "-aet", "SCANNER", "-aec", "CMRNODE", "127.0.0.1",
                                   str(port), *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        log, acknowledged, current = [], [], None
        for line in sender.stdout:
            log.append(line)
            if m := re.match(r"I: Sending file: (.*)", line.strip()):
                current = m.group(1)
            elif "Received Store Response (Success)" in line and current:
                acknowledged.append(uid_of[current])
                if len(acknowledged) == 300:
                    os.killpg(node.pid, signal.SIGKILL)      # mid-stream, while more images are on the wire
        sender.wait(timeout=60)
        node.wait(timeout=30)
        assert 300 <= len(acknowledged) < IMAGES and sender.returncode != 0
        db = tmp_path / "data" / "index.sqlite"
        indexed = _indexed(db)
        assert set(acknowledged) <= indexed                      # every Success is in the index ...
        on_disk = list((tmp_path / "data" / "incoming").rglob("*.dcm"))
        for path in on_disk:                                     # ... and every file there is whole
            ds = pydicom.dcmread(path)
            assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
        assert {p.stem for p in on_disk} >= set(acknowledged)
        node = serve_process(toml)                                      # restart; the scanner sends everything again
        wait_until(lambda: storescu(port, files[:1]).returncode == 0, timeout=30, what="node up again")
        again = storescu(port, files)
        assert again.returncode == 0, again.stderr[-500:]
        sent = set(uid_of.values())
        indexed = _indexed(db)
        assert indexed & sent == sent
        on_disk = [p for p in (tmp_path / "data" / "incoming").rglob("*.dcm") if p.stem in sent]
        assert len(on_disk) == len(files)                               # one file per instance
        # processed exactly once: one finished job per routed study, one folder of results each
        wait_until(lambda: [s for _, s, _ in _jobs(db)] == ["done", "done"], timeout=120, what="both ECV jobs done")
        time.sleep(4)   # several completion sweeps after the re-send: nothing is queued again
        jobs = _jobs(db)
        assert len(_indexed(db) - sent) == len(jobs)                    # and each job's report, taken back in
        assert sorted(study for study, _, _ in jobs) == sorted([first.study_uid, straddling.study_uid])
        assert [state for _, state, _ in jobs] == ["done", "done"]
        assert sorted(p.name for p in (tmp_path / "data" / "results").iterdir()) == sorted(str(i) for *_, i in jobs)
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=60)
