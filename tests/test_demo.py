"""`cmr-node demo`, with Orthanc and with the built-in storage SCP."""
import subprocess
import sys

from collections import Counter

import pydicom
import pytest

import node.demo.demo as demo
from tests.conftest import PM_SOP_CLASS, SC_SOP_CLASS, SEG_SOP_CLASS, SR_SOP_CLASS, require_tool

pytestmark = pytest.mark.integration     # `cmr-node demo` with Orthanc, and the demo's node on a port


def test_demo_with_orthanc(tmp_path):
    require_tool("Orthanc")
    result = subprocess.run([sys.executable, "-m", "node.cli", "demo", "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ECV Parametric Map arrived in the PACS" in result.stdout
    assert "dDCE Parametric Maps (5 and 30 min, 2CXM) arrived" in result.stdout
    assert "Orthanc at http://127.0.0.1:" in result.stdout
    assert "registry (from the Structured Reports" in result.stdout
    remote = next(line for line in result.stdout.splitlines() if line.startswith("remote"))
    assert abs(float(remote.split()[1]) - 25.0) < 2.0


def test_demo_without_orthanc_uses_builtin_scp(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "orthanc_executable", lambda: None)  # a machine without Orthanc
    assert demo.run_demo(tmp_path) == 0
    out = capsys.readouterr().out
    assert "built-in storage SCP" in out
    kinds = Counter(str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID) for p in (tmp_path / "pacs").glob("*.dcm"))
    assert kinds[PM_SOP_CLASS] == 1 + 6           # ECV map, 3 dDCE maps per window (vp, PS, Fp withheld)
    assert kinds[SR_SOP_CLASS] >= 2 and kinds[SEG_SOP_CLASS] >= 2
    assert kinds[SC_SOP_CLASS] >= 2 * 7            # grayscale and colour companions of every map
    assert "LV myocardium, 30-min window" in out and "LV myocardium (LGE_dDCE)" in out and len(list((tmp_path / "previews").glob("*.png"))) >= 7
