"""`cmr-node demo`, with Orthanc and with the built-in storage SCP."""
import subprocess
import sys

import node.demo
from tests.conftest import require_tool


def test_demo_with_orthanc(tmp_path):
    require_tool("Orthanc")
    result = subprocess.run([sys.executable, "-m", "node.cli", "demo", "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ECV Parametric Map arrived in the PACS" in result.stdout
    assert "dDCE Parametric Maps (5 and 30 min, 2CXM) arrived" in result.stdout
    assert "Orthanc at http://127.0.0.1:" in result.stdout
    remote = next(line for line in result.stdout.splitlines() if line.startswith("remote"))
    assert abs(float(remote.split()[1]) - 25.0) < 2.0


def test_demo_without_orthanc_uses_builtin_scp(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(node.demo, "orthanc_executable", lambda: None)  # a machine without Orthanc
    assert node.demo.run_demo(tmp_path) == 0
    out = capsys.readouterr().out
    assert "built-in storage SCP" in out
    assert len(list((tmp_path / "pacs").glob("*.dcm"))) == 1 + 12   # ECV map, 6 dDCE maps per window
