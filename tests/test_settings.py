"""Every setting is declared once (node/settings.py); the README, the example file and `inputs set` follow it."""
import dataclasses
import re
from pathlib import Path

import pytest

from node.config import ConfigError, parse_config
from node.settings import (SECTIONS, STUDY_VALUE_TYPES, ModuleSettings, file_fields, reference_table, study_value,
                           with_study_values)

ROOT = Path(__file__).parent.parent


def test_every_setting_has_a_meaning_and_a_check_or_a_reason_to_need_none():
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"[{section}].{f.name} has no documentation"


def test_readme_table_is_the_one_generated_from_the_declarations():
    readme = (ROOT / "README.md").read_text()
    generated = re.search(r"<!-- generated from node/settings.py.*?-->\n(.*?)<!-- end of generated table -->",
                          readme, re.S)
    assert generated, "README lost its generated settings table"
    assert generated.group(1).strip() == reference_table().strip(), \
        "README's settings table is stale: paste the output of `python -m node.settings`"


def test_example_configuration_names_every_key_in_its_section():
    """Each key appears in deploy/node.example.toml, set or commented out, under its own section."""
    text = (ROOT / "deploy" / "node.example.toml").read_text()
    sections = re.split(r"^#?\s*(\[\[?[a-z_.]+\]\]?)", text, flags=re.M)
    keys_by_section: dict[str, set[str]] = {}
    for header, body in zip(sections[1::2], sections[2::2]):
        name = header.strip("[]").split(".")[0]
        keys_by_section.setdefault(name, set()).update(re.findall(r"^#?\s*([a-z_0-9]+)\s*=", body, flags=re.M))
    keys_by_section.setdefault("inputs", set()).add("relaxivity")   # a table of its own: [inputs.relaxivity]
    for section, cls in SECTIONS.items():
        missing = {f.name for f in file_fields(cls)} - keys_by_section.get(section, set())
        assert not missing, f"deploy/node.example.toml [{section}] does not show {sorted(missing)}"


@pytest.mark.parametrize("key, text, expected", [
    ("hematocrit", "0.38", 0.38),
    ("injection_time", "101500", "101500"),
    ("sao2", "0.97", 0.97),
    ("lv_mass_g", "120", 120.0),
])
def test_study_values_are_typed_from_the_declaration(key, text, expected):
    assert study_value(key, text) == expected
    merged = with_study_values(ModuleSettings(), {key: text})
    assert getattr(merged, key) == expected and merged.lge_n_sd == ModuleSettings().lge_n_sd


@pytest.mark.parametrize("key, text, problem", [
    ("hematocrit", "42", "between 0.1 and 0.7"),      # the configuration's check holds per study too
    ("sao2", "1.5", "between 0 and 1"),
    ("hb_g_per_dl", "-3", "> 0"),
    ("hematocrit", "abc", "must be a number"),
    ("lge_n_sd", "3", "not a per-study value"),
    ("injection_time", "10:15", "must be YYYYMMDDHHMMSS or HHMMSS"),
])
def test_bad_study_values_are_refused_with_the_reason(key, text, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        study_value(key, text)


def test_per_study_keys_are_the_declared_ones():
    assert set(STUDY_VALUE_TYPES) == {"hematocrit", "injection_time", "injection_to_first_map_minutes",
                                      "hb_g_per_dl", "sao2", "mbf_ml_per_min_per_g", "stroke_volume_ml",
                                      "mean_arterial_pressure_mmhg", "heart_rate_per_min", "lv_mass_g"}


def test_modules_receive_the_typed_section_with_declared_defaults():
    inputs = parse_config({"inputs": {"ddce_windows_minutes": [30, 5, 10], "relaxivity": {"gadobutrol": 5}}}).inputs
    assert isinstance(inputs, ModuleSettings)
    assert inputs.ddce_windows_minutes == (5.0, 10.0, 30.0) and inputs.relaxivity == {"gadobutrol": 5.0}
    assert inputs.lge_target_minutes == 15.0 and inputs.hb_g_per_dl is None


@pytest.mark.parametrize("data, message", [
    ({"inputs": {"sao2": 2}}, "[inputs].sao2: must be between 0 and 1"),
    ({"inputs": {"relaxivity": {"gadobutrol": 80}}}, "[inputs].relaxivity.gadobutrol: must be r1"),
    ({"inputs": {"lge_infarct_method": "otsu"}}, "[inputs].lge_infarct_method: must be one of nsd, fwhm"),
    ({"inputs": {"injection_time": "101500"}}, "[inputs].injection_time: unknown key"),   # per study only
    ({"retention": {"days": -1}}, "[retention].days: must be >= 0"),
    ({"dispatch": {"max_attempts": 0}}, "[dispatch].max_attempts: must be >= 1"),
    ({"node": {"allowed_callers": ["OK", ""]}}, "[node].allowed_callers[1]: AE title"),
    ({"routes": [{"name": "r", "module": "ecv", "kinds": ["t1_map"], "viewer_images": ["sepia"]}]},
     "[[routes]][0].viewer_images[0]: must be one of grayscale, colour"),
])
def test_each_declared_check_names_the_key(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value)


def test_paths_default_or_given_are_relative_to_the_configuration_file():
    assert parse_config({}, Path("/etc/cmr-node")).node.data_dir == Path("/etc/cmr-node/cmr-node-data")
    given = parse_config({"node": {"data_dir": "state"}, "registry": {"path": "/srv/r.sqlite"}}, Path("/etc/c"))
    assert given.node.data_dir == Path("/etc/c/state") and given.registry.path == Path("/srv/r.sqlite")
