"""The guard in conftest.py: a test not marked integration starts none of the real external programs, the node
as a process, or a node on a port; ordinary programs and the node's worker processes (multiprocessing) go on."""
import multiprocessing
import os
import subprocess
import sys

import pytest

from tests.conftest import node_config_dict
from tests.unit_guard import external_program

PYTHON = os.path.basename(sys.executable)


@pytest.mark.parametrize("command, shell, found", [
    (["/usr/bin/storescu", "-aet", "SCANNER", "127.0.0.1", "104", "a.dcm"], False, "storescu"),
    (["dciodvfy", "x.dcm"], False, "dciodvfy"),
    ("/usr/bin/storescu --version", True, "storescu"),                    # os.popen, shell=True
    (["sh", "-c", "openssl req -new"], False, "openssl"),
    (["strace", "-f", sys.executable, "-m", "node.cli", "serve"], False, "strace"),
    ([sys.executable, "-m", "node.cli", "process", "in"], False, f"{PYTHON} -m node.cli"),
    ([sys.executable, "-c", "print(1)"], False, None),
    (["git", "log", "--", "storescu"], False, None),                      # naming a program is not starting it
])
def test_external_programs_are_recognised(command, shell, found):
    assert external_program(command, shell) == found


def test_a_unit_test_cannot_start_them():
    with pytest.raises(pytest.fail.Exception, match="not marked integration but started storescu"):
        subprocess.run(["/usr/bin/storescu", "--version"], capture_output=True, timeout=60)
    with pytest.raises(pytest.fail.Exception, match="started .*-m node.cli"):
        subprocess.run([sys.executable, "-m", "node.cli", "--help"], capture_output=True, timeout=60)
    with pytest.raises(pytest.fail.Exception, match="started dcm2niix"):
        os.system("dcm2niix -h")


def test_a_unit_test_cannot_start_a_node_on_a_port(tmp_path, make_node):
    with pytest.raises(pytest.fail.Exception, match="a node listening on port"):
        make_node(node_config_dict(tmp_path / "data"))


def test_other_programs_and_worker_processes_go_on():
    assert subprocess.run(["true"], timeout=60).returncode == 0
    worker = multiprocessing.get_context("spawn").Process(target=os.getpid)   # as the node's job runner starts them
    worker.start()
    worker.join(60)
    assert worker.exitcode == 0
