import subprocess
import sys
from pathlib import Path

import pytest

from node.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).parent.parent / "deploy" / "node.example.toml"


def test_example_config_is_valid():
    config = load_config(EXAMPLE)
    assert config.node.ae_title == "CMRNODE"
    routes = {r.name: r for r in config.routes}
    assert routes["ecv"].module == "ecv" and routes["ecv"].scope == "study"
    assert routes["ecv"].kinds == ("t1_map", "segmentation") and routes["ecv"].t1_timeline == ("paired",)
    assert routes["molli"].kinds == ("t1_raw",) and routes["molli"].series_description is None
    assert routes["ddce"].scope == "study-so-far" and routes["ddce"].t1_timeline == ("dynamic",)
    assert config.destination("pacs").port == 104
    assert config.inputs.hematocrit == 0.42


def test_without_routes_the_built_in_ones_send_to_every_destination():
    config = parse_config({"destinations": [{"name": "a", "host": "h", "port": 104, "ae_title": "A"},
                                            {"name": "b", "host": "h", "port": 105, "ae_title": "B"}]})
    assert [r.name for r in config.routes] == ["molli", "t2map", "ecv", "ddce", "lge", "t2segments", "summary"]
    assert all(r.destinations == ("a", "b") for r in config.routes)
    assert parse_config({"routes": []}).routes == ()


def test_a_description_route_still_gets_only_its_modules_kinds():
    [route] = parse_config({"routes": [{"name": "r", "series_description": "MOLLI", "module": "molli"}]}).routes
    assert route.kinds == ("t1_raw",)
    assert route.mismatch({"kinds": "phase", "series_description": "MOLLI", "image_type": ""}) == \
        "route r takes t1_raw"
    assert route.matches({"kinds": "t1_raw", "series_description": "MOLLI", "image_type": ""})


def test_defaults():
    config = parse_config({})
    assert config.completion.series_quiet_seconds == 10
    assert config.completion.study_quiet_seconds == 120
    assert config.node.allowed_callers == ()


@pytest.mark.parametrize("data, key", [
    ({"node": {"aetitle": "X"}}, "[node].aetitle"),
    ({"nodes": {}}, "[nodes]"),
    ({"node": {"port": "104"}}, "[node].port"),
    ({"node": {"port": 70000}}, "[node].port"),
    ({"node": {"ae_title": "A_TITLE_FAR_TOO_LONG"}}, "[node].ae_title"),
    ({"completion": {"series_quiet_seconds": -1}}, "[completion].series_quiet_seconds"),
    ({"inputs": {"hematocrit": 42}}, "[inputs].hematocrit"),
    ({"routes": [{"name": "r", "series_description": "(unclosed", "module": "ecv"}]},
     "[[routes]][0].series_description"),
    ({"routes": [{"name": "r", "series_description": "x", "module": "nosuch"}]}, "[[routes]][0].module"),
    ({"routes": [{"name": "r", "series_description": "x", "module": "ecv", "destinations": ["gone"]}]},
     "[[routes]][0].destinations[0]"),
    ({"routes": [{"name": "r", "module": "ecv"}]}, "[[routes]][0].series_description"),
    ({"routes": [{"name": "r", "module": "ecv", "kinds": ["t1_raw"]}]}, "[[routes]][0].kinds[0]"),
    ({"routes": [{"name": "r", "module": "ddce", "kinds": ["t1_map"], "t1_timeline": ["sometimes"]}]},
     "[[routes]][0].t1_timeline[0]"),
    ({"destinations": [{"name": "p", "host": "h", "port": 1}]}, "[[destinations]][0].ae_title"),
    ({"sources": [{"name": "a", "host": "h", "port": 104, "ae_title": "A", "protocol": "dicomweb"}]},
     "[[sources]][0].dicomweb_url"),
    ({"sources": [{"name": "a", "host": "h", "port": 104, "ae_title": "A", "protocol": "wado"}]},
     "[[sources]][0].protocol"),
    ({"sources": [{"name": "a", "host": "h", "port": 104, "ae_title": "A", "dicomweb_url": "pacs:8042"}]},
     "[[sources]][0].dicomweb_url"),
    ({"sources": {"name": "a"}}, "[[sources]]"),
    ({"executor": {"kind": "dask"}}, "[executor].scheduler"),
    ({"executor": {"kind": "slurm"}}, "[executor].kind"),
    ({"executor": {"kind": "dask", "scheduler": "tcp://s:8786", "inputs": "nfs"}}, "[executor].inputs"),
])
def test_bad_config_names_the_key(data, key):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert key in str(info.value)


@pytest.mark.integration
def test_cli_reports_config_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nport = 11112\ncolour = "blue"\n')
    result = subprocess.run([sys.executable, "-m", "node.cli", "serve", "--config", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "[node].colour" in result.stderr


def test_registry_section():
    from node.config import ConfigError, parse_config
    config = parse_config({"node": {"data_dir": "/srv/cmr"}, "registry": {"salt": "0123456789abcdef!"}}, Path("/etc"))
    assert config.registry.salt == "0123456789abcdef!" and config.registry.path is None
    assert parse_config({"registry": {"path": "reg.sqlite"}}, Path("/etc")).registry.path == Path("/etc/reg.sqlite")
    with pytest.raises(ConfigError, match=r"\[registry\].salt"):
        parse_config({"registry": {"salt": "short"}})
    with pytest.raises(ConfigError, match=r"\[registry\].owner"):
        parse_config({"registry": {"owner": "x"}})


def test_node_security_and_operations_keys():
    from node.config import ConfigError, parse_config
    node = parse_config({"node": {"allowed_networks": ["10.1.0.0/16", "127.0.0.1"], "min_free_mb": 500,
                                  "metrics_port": 9108}}).node
    assert node.allowed_networks == ("10.1.0.0/16", "127.0.0.1") and node.min_free_mb == 500 and node.metrics_port == 9108
    with pytest.raises(ConfigError, match=r"\[node\].allowed_networks\[0\]"):
        parse_config({"node": {"allowed_networks": ["10.1.0.0/33"]}})
    with pytest.raises(ConfigError, match=r"\[node\].metrics_port"):
        parse_config({"node": {"metrics_port": 70000}})


def test_backfill_names_a_source_the_configuration_has():
    config = parse_config({"sources": [{"name": "archive", "host": "pacs", "port": 104, "ae_title": "PACS"}]})
    assert config.source("archive").protocol == "dimse" and config.executor.kind == "local"
    with pytest.raises(ConfigError, match="--from 'pacs': no \\[\\[sources\\]\\] of that name .configured: archive"):
        config.source("pacs")
