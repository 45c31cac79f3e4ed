"""Nothing acknowledged is ever lost: every instance answered Success was on disk and in the index first.

A SIGKILL keeps the page cache, so the crash test (tests/test_crash.py) cannot see a missing fsync. Here the
served node runs under strace, and for every instance its system calls must show, before the C-STORE response
that carries the instance's UID leaves: the file's data flushed (fsync or fdatasync of the temporary file),
then its rename into incoming/, then its directory flushed, and its index row written to the index's
write-ahead log. That write is not flushed: a power cut may take it, never the file, and at start the node
indexes the files its index lacks (tests/test_receive.py, the power-cut test).
"""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from dicom_out.phantom_studies import write_raw_molli_ecv_study
from tests.conftest import node_config_dict, require_tool, storescu, wait_until, write_toml

pytestmark = pytest.mark.integration     # `cmr-node serve` under strace, with DCMTK storescu

SYSCALLS = "openat,close,fsync,fdatasync,pwrite64,mkdir,mkdirat,rename,renameat,renameat2,sendto,sendmsg"


def parse_strace(text: str) -> list[tuple[int, str, str, str]]:
    """(pid, syscall, arguments, result) in completion order; split calls (unfinished/resumed) joined."""
    pending: dict[int, str] = {}
    calls = []
    for line in text.splitlines():
        pid_text, _, rest = line.partition(" ")
        if not pid_text.isdigit():
            continue
        pid, rest = int(pid_text), rest.strip()
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[:-len("<unfinished ...>")].rstrip()
            continue
        resumed = re.match(r"<\.\.\. (\w+) resumed>(.*)", rest)
        if resumed:
            rest = pending.pop(pid, resumed.group(1) + "(") + resumed.group(2)
        call, separator, result = rest.rpartition(" = ")
        match = re.match(r"(\w+)\((.*)\)\s*$", call)
        if separator and match:
            calls.append((pid, match.group(1), match.group(2), result.split()[0]))
    return calls


def _path(arguments: str, index: int = 0) -> str:
    return re.findall(r'"([^"]*)"', arguments)[index]


def flush_order(calls, sop_instance_uid: str, data_dir: Path) -> list[str]:
    """What was missing or out of order for one instance (empty: all flushed before its response)."""
    open_fds: dict[str, str] = {}          # fd -> path, as the calls go
    flushed: list[tuple[int, str]] = []    # (call index, path) of every fsync/fdatasync
    logged: list[int] = []                 # call indexes of writes to the index's write-ahead log
    made: dict[str, int] = {}              # directory -> call index of its mkdir
    renamed = response = None
    source = None
    for k, (_, name, arguments, result) in enumerate(calls):
        if name == "openat" and result.isdigit():
            open_fds[result] = _path(arguments)
        elif name in ("fsync", "fdatasync"):
            flushed.append((k, open_fds.get(arguments.strip(), "?")))
        elif name.startswith("mkdir") and result == "0":
            made.setdefault(_path(arguments), k)
        elif name == "pwrite64" and open_fds.get(arguments.split(",")[0].strip(), "").endswith("index.sqlite-wal"):
            logged.append(k)
        elif name.startswith("rename") and f"{sop_instance_uid}.dcm" in arguments and result == "0":
            renamed, source = k, _path(arguments)
        elif name in ("sendto", "sendmsg") and renamed is not None and sop_instance_uid in arguments:
            response = k
            break
    if renamed is None or response is None:
        return [f"no rename into incoming/ ({renamed}) or no response ({response})"]
    target_dir = str(next((data_dir / "incoming").rglob(f"{sop_instance_uid}.dcm")).parent)
    missing = []
    if not any(k < renamed and path == source for k, path in flushed):
        missing.append("the file's data before its rename")
    if not any(renamed < k < response and path == target_dir for k, path in flushed):
        missing.append("its directory after the rename")
    if not any(renamed < k < response for k in logged):
        missing.append("its index row in the write-ahead log")
    series = Path(target_dir)
    for directory in (series, series.parent):      # new series and study folders: their entries flushed too
        if str(directory) in made and not any(made[str(directory)] < k < response and path == str(directory.parent)
                                              for k, path in flushed):
            missing.append(f"the new folder {directory.name}'s entry in its parent")
    return missing


def _traced_child(strace_pid: int) -> int:
    """The process strace started (the node)."""
    return int(Path(f"/proc/{strace_pid}/task/{strace_pid}/children").read_text().split()[0])


@pytest.mark.parametrize("receive_processes", [0, 2])     # in the node's process, and in receive workers
def test_every_instance_answered_success_was_flushed_before_its_response(tmp_path, receive_processes):
    _, _, files = write_raw_molli_ecv_study(tmp_path / "scanner")
    config = node_config_dict(tmp_path / "data")
    config["routes"] = []                       # the receive path only
    config["node"]["receive_processes"] = receive_processes
    toml = write_toml(config, tmp_path / "node.toml")
    trace = tmp_path / "strace.txt"
    node = subprocess.Popen([require_tool("strace"), "-f", "-qq", "-s", "1024", "-e", f"trace={SYSCALLS}",
                             "-o", str(trace), sys.executable, "-m", "node.cli", "serve", "--config", str(toml)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: storescu(config["node"]["port"], files).returncode == 0, timeout=60, what="node up")
    finally:
        # SIGTERM to the node only: strace exits when it does, writing the whole trace. (A SIGTERM to strace
        # as well can be lost for the node while strace detaches from it.)
        os.kill(_traced_child(node.pid), signal.SIGTERM)
        try:
            node.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)     # a node that ignored SIGTERM must not outlive the test
            raise
    calls = parse_strace(trace.read_text(errors="replace"))
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    assert len(uids) == 16
    problems = {uid: missing for uid in uids if (missing := flush_order(calls, uid, tmp_path / "data"))}
    assert problems == {}
