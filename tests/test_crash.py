"""A node killed with SIGKILL in the middle of 1000 images: every acknowledged instance survives, once."""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pydicom

from dicom_out.synthetic_mr import SyntheticStudy, save_series, t1_map_series
from tests.conftest import node_config_dict, require_tool, storescu, wait_until, write_toml

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


def _serve(toml):
    return subprocess.Popen([sys.executable, "-m", "node.cli", "serve", "--config", str(toml)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _indexed(db) -> set[str]:
    with sqlite3.connect(db, timeout=10) as con:
        return {r[0] for r in con.execute("SELECT sop_instance_uid FROM instances")}


def test_sigkill_mid_stream_loses_no_acknowledged_instance(tmp_path):
    files = _images(tmp_path / "scanner", IMAGES)
    uid_of = {str(f): str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    config = node_config_dict(tmp_path / "data")
    config["routes"] = []
    toml = write_toml(config, tmp_path / "node.toml")
    port = config["node"]["port"]
    node = _serve(toml)
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
            assert ds.pixel_array.shape == (64, 64)
        assert {p.stem for p in on_disk} >= set(acknowledged)
        node = _serve(toml)                                      # restart; the scanner sends everything again
        wait_until(lambda: storescu(port, files[:1]).returncode == 0, timeout=30, what="node up again")
        again = storescu(port, files)
        assert again.returncode == 0, again.stderr[-500:]
        indexed = _indexed(db)
        assert len(indexed) == IMAGES and indexed == set(uid_of.values())
        assert len(list((tmp_path / "data" / "incoming").rglob("*.dcm"))) == IMAGES   # one file per instance
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=60)
