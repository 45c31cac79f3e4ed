"""The guard that keeps `pytest -m "not integration"` free of real external programs (a pytest plugin).

A test not marked `integration` fails when it, or a fixture it is the first to need, starts DCMTK, Orthanc,
dciodvfy, dcm2niix, strace, openssl, systemd-analyze, the node as a process, or a node on a port.
"""
from __future__ import annotations

import inspect
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

import pytest

from node.service import Node

# ---- the unit tests (`pytest -m "not integration"`) start no real external program ----------------------------
# A test that is not marked `integration` fails when it (or a fixture it is the first to need) starts one of these,
# the node itself as a process (`python -m node.cli`, `cmr-node`), or a node listening on a port. The node's own
# worker processes are not affected: multiprocessing starts them with _posixsubprocess, not subprocess.Popen.
EXTERNAL_PROGRAMS = frozenset({
    # DCMTK
    "storescu", "storescp", "echoscu", "findscu", "movescu", "getscu", "termscu", "dcmsend", "dcmrecv", "dcmqrscp",
    "dcmcjpeg", "dcmdjpeg", "dcmcjpls", "dcmdjpls", "dcmcrle", "dcmdrle", "dcmconv", "dcmodify", "dcmdump",
    "img2dcm", "dcm2pnm", "dcmj2pnm", "dcm2xml", "dcm2json", "dsrdump",
    # the PACS, the validators and readers, system tools
    "Orthanc", "dciodvfy", "dcentvfy", "dcdump", "dcm2niix", "strace", "openssl", "systemd-analyze",
    # the node as a program
    "cmr-node",
})
COMMAND_RUNNERS = frozenset({"sh", "bash", "dash", "env", "nice", "timeout", "xargs", "sudo"})
_POPEN_PARAMETERS = inspect.signature(subprocess.Popen.__init__)
_REAL = {"Popen.__init__": subprocess.Popen.__init__, "os.system": os.system,
         "os.posix_spawn": os.posix_spawn, "os.posix_spawnp": os.posix_spawnp, "Node.start": Node.start}
_unit_test: str | None = None            # node id of the unit test being set up, run or torn down
_violations: list[str] = []              # what it started, for the report (threads and scripts cannot raise into it)
_SHIMS: Path | None = None               # PATH directory of stand-ins that record their use (for `sh script`)


def _words(command) -> list[str]:
    if isinstance(command, (str, bytes, os.PathLike)):
        command = os.fsdecode(command)
        try:
            return shlex.split(command)
        except ValueError:
            return command.split()
    return [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in command]


def external_program(command, shell: bool = False, executable=None) -> str | None:
    """What of EXTERNAL_PROGRAMS (or `python -m node...`) a command line starts; None if nothing of them."""
    words = _words(command)
    if not words:
        return None
    program = os.path.basename(os.fsdecode(executable) if executable is not None else words[0])
    # through a shell or a runner (sh -c '...', env, timeout), any word of the command line may be the program
    candidates = [w for word in words for w in _words(word)] if shell or program in COMMAND_RUNNERS else [program]
    for word in candidates:
        if os.path.basename(word) in EXTERNAL_PROGRAMS:
            return os.path.basename(word)
    if program.startswith("python") or words[0] == sys.executable:
        for flag, module in zip(words, words[1:]):
            if flag == "-m" and module.split(".")[0] == "node":
                return f"{program} -m {module}"
    return None


def _refuse(what: str) -> None:
    here = Path(__file__).parent
    caller = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(traceback.extract_stack()[:-2])
                   if Path(f.filename).parent == here and Path(f.filename) != Path(__file__)), "a fixture")
    message = (f"{_unit_test} is not marked integration but started {what} (from {caller}): mark it "
               f"@pytest.mark.integration (or the file pytestmark = pytest.mark.integration), or do without it")
    if threading.current_thread() is threading.main_thread():
        pytest.fail(message, pytrace=False)
    _violations.append(message)          # another thread: the report says so (pytest_runtest_makereport)
    raise RuntimeError(message)


def _guarded_popen_init(self, *args, **kwargs):
    if _unit_test is not None:
        bound = _POPEN_PARAMETERS.bind(self, *args, **kwargs).arguments
        if found := external_program(bound["args"], bound.get("shell", False), bound.get("executable")):
            _refuse(found)
    _REAL["Popen.__init__"](self, *args, **kwargs)


def _guarded_system(command):
    if _unit_test is not None and (found := external_program(command, shell=True)):
        _refuse(found)
    return _REAL["os.system"](command)


def _guarded_spawn(name):
    def spawn(path, argv, *args, **kwargs):
        if _unit_test is not None and (found := external_program(argv, executable=path)):
            _refuse(found)
        return _REAL[name](path, argv, *args, **kwargs)
    return spawn


def _guarded_node_start(self):
    if _unit_test is not None:
        _refuse(f"a node listening on port {self.config.node.port}")
    return _REAL["Node.start"](self)


def _write_shims(directory: Path) -> Path:
    """Stand-ins on PATH for programs a script finds by name (deploy/make-certificates.sh runs openssl)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in EXTERNAL_PROGRAMS:
        shim = directory / name
        shim.write_text('#!/bin/sh\nprintf \'%s\\n\' "$(basename "$0") $*" >> "$CMR_NODE_TEST_SHIM_LOG"\n'
                        'echo "$(basename "$0"): an external program, refused in a test not marked integration" >&2\n'
                        'exit 127\n')
        shim.chmod(0o755)
    return directory


def pytest_configure(config):
    global _SHIMS
    subprocess.Popen.__init__ = _guarded_popen_init
    os.system = _guarded_system
    os.posix_spawn, os.posix_spawnp = _guarded_spawn("os.posix_spawn"), _guarded_spawn("os.posix_spawnp")
    Node.start = _guarded_node_start
    _SHIMS = _write_shims(Path(tempfile.mkdtemp(prefix="cmr-node-test-shims-")))


def pytest_unconfigure(config):
    subprocess.Popen.__init__ = _REAL["Popen.__init__"]
    os.system, os.posix_spawn, os.posix_spawnp = _REAL["os.system"], _REAL["os.posix_spawn"], _REAL["os.posix_spawnp"]
    Node.start = _REAL["Node.start"]
    if _SHIMS is not None:
        shutil.rmtree(_SHIMS, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Guard the setup, call and teardown of every test not marked integration, including the module and
    session fixtures it is the first to need (they are set up before any function-scoped autouse fixture)."""
    global _unit_test
    if item.get_closest_marker("integration") is not None:
        yield
        return
    log = _SHIMS / "used.log"
    saved = {k: os.environ.get(k) for k in ("PATH", "CMR_NODE_TEST_SHIM_LOG")}
    os.environ["PATH"] = f"{_SHIMS}{os.pathsep}{saved['PATH'] or ''}"
    os.environ["CMR_NODE_TEST_SHIM_LOG"] = str(log)
    _unit_test = item.nodeid
    try:
        yield
    finally:
        _unit_test = None
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        log.unlink(missing_ok=True)
        _violations.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A launch the test could not raise in (from another thread, or a script's child via PATH) fails it too."""
    outcome = yield
    if _unit_test is None:
        return
    report = outcome.get_result()
    log = _SHIMS / "used.log"
    found = list(_violations) + [f"{_unit_test} is not marked integration but a script it started ran `{line}`: "
                                  f"mark it @pytest.mark.integration" for line in
                                  (log.read_text().splitlines() if log.exists() else [])]
    _violations.clear()
    log.unlink(missing_ok=True)
    if found:
        report.outcome = "failed"
        report.longrepr = "\n".join(found + ([f"\n{report.longrepr}"] if report.longrepr else []))
