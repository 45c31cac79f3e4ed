"""The deployment files: what hospital IT installs must be as locked down as the README says."""
import re
import subprocess
from pathlib import Path

import pytest

from node.config import load_config
from tests.conftest import require_tool

DEPLOY = Path(__file__).parent.parent / "deploy"


@pytest.mark.integration
def test_systemd_unit_runs_unprivileged_and_confined():
    unit = (DEPLOY / "cmr-node.service").read_text()
    assert re.search(r"^User=cmr-node$", unit, re.M) and re.search(r"^UMask=0077$", unit, re.M)
    assert re.search(r"^StateDirectoryMode=0700$", unit, re.M)
    # systemd's own assessment, offline: exposure 2.0 or lower ("OK"); 10.0 is an unconfined root service.
    result = subprocess.run([require_tool("systemd-analyze"), "security", "--offline=yes", "--threshold=20",
                             str(DEPLOY / "cmr-node.service")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_container_runs_as_its_own_user_with_json_logs():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users and users[-1] == "cmr-node"
    assert "chmod 0700 /var/lib/cmr-node" in dockerfile
    assert '"--log-format", "json"' in dockerfile


def test_deployed_configurations_are_valid():
    docker = load_config(DEPLOY / "docker-node.toml")
    assert docker.destination("orthanc").host == "orthanc"
    cluster = load_config(DEPLOY / "docker-cluster-node.toml")
    assert cluster.executor.kind == "dask" and cluster.executor.scheduler == "tcp://dask-scheduler:8786"
    assert cluster.source("orthanc").host == "orthanc"
    compose = (DEPLOY / "docker-compose.cluster.yml").read_text()
    # the Orthanc archive knows the node as C-MOVE destination by the AE title and port the node listens on
    assert f'["{cluster.node.ae_title}", "cmr-node", {cluster.node.port}]' in compose
    assert "tcp://dask-scheduler:8786" in compose
    example = load_config(DEPLOY / "node.example.toml")
    # the example is the hardened one: callers and networks restricted, metrics local, a disk guard
    assert example.node.allowed_callers and example.node.allowed_networks
    assert example.node.metrics_host == "127.0.0.1" and example.node.min_free_mb >= 1024
