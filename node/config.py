"""Node configuration: a TOML file, validated at start-up.

Every key is checked against its declaration in node/settings.py (type, default,
check); an unknown key, a wrong type, a regular expression that does not compile,
an unknown module or an unknown destination stops the node with a message that
names the key.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import MISSING, dataclass, field
from pathlib import Path

from node.process.modules import MODULES
from node.settings import (SECTIONS, CompletionSettings, Destination, DispatchSettings, ExecutorSettings,
                           ModuleSettings, NodeSettings, RegistrySettings, RetentionSettings, Route, Source,
                           TlsSettings, file_fields, value_type)


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


@dataclass(frozen=True)
class Config:
    node: NodeSettings = field(default_factory=NodeSettings)
    completion: CompletionSettings = field(default_factory=CompletionSettings)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    destinations: tuple[Destination, ...] = ()
    routes: tuple[Route, ...] = ()
    inputs: ModuleSettings = field(default_factory=ModuleSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    sources: tuple[Source, ...] = ()
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)

    def destination(self, name: str) -> Destination:
        return next(d for d in self.destinations if d.name == name)

    def source(self, name: str) -> Source:
        """The archive `cmr-node backfill --from NAME` reads; ConfigError when no [[sources]] is so named."""
        for source in self.sources:
            if source.name == name:
                return source
        raise ConfigError(f"--from {name!r}: no [[sources]] of that name (configured: "
                          f"{', '.join(s.name for s in self.sources) or 'none'})")


# The TOML type each Python type is written as; ints are numbers too.
_TOML_TYPES: dict[type, type | tuple[type, ...]] = {float: (int, float), int: int, str: str, bool: bool, Path: str,
                                                    tuple: list, dict: dict, re.Pattern: str}


def _schema(cls) -> dict[str, tuple[type | tuple[type, ...], bool]]:
    """key -> (TOML type, required) of a section, from its dataclass (node/settings.py)."""
    return {f.name: (_TOML_TYPES[value_type(cls, f.name)], f.default is MISSING) for f in file_fields(cls)}


_SCHEMA = {section: _schema(cls) for section, cls in SECTIONS.items()}
_TABLE_ARRAYS = {"destinations", "sources", "routes"}


def _check_table(where: str, section: str, table: object) -> dict:
    """Unknown keys, wrong types and missing required keys, each named."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    schema = _SCHEMA[section]
    for key, value in table.items():
        if key not in schema:
            raise ConfigError(f"{where}.{key}: unknown key (allowed: {', '.join(schema)})")
        expected, _ = schema[key]
        if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
            raise ConfigError(f"{where}.{key}: wrong type {type(value).__name__}")
    for key, (_, required) in schema.items():
        if required and key not in table:
            raise ConfigError(f"{where}.{key}: required key missing")
    return table


def _convert(cls, key: str, value, base_dir: Path):
    kind = value_type(cls, key)
    if kind is Path:
        return _resolve(value, base_dir)
    if kind is re.Pattern:
        return re.compile(value)
    if kind is tuple:
        return tuple(value)
    if kind is dict:   # of numbers (relaxivity) or of [low, high] pairs (reference ranges)
        return {str(k): tuple(map(float, v)) if isinstance(v, (list, tuple)) else float(v) for k, v in value.items()}
    return float(value) if kind is float else value


def _parse_section(where: str, section: str, table: object, base_dir: Path = Path(".")):
    """A section's dataclass from its table: types, then each key's own check (node/settings.py)."""
    table = _check_table(where, section, table)
    cls = SECTIONS[section]
    values = {}
    for f in file_fields(cls):
        if f.name in table:
            check = f.metadata["check"]
            if check is not None and (problem := check(table[f.name])) is not None:
                raise ConfigError(f"{where}.{f.name}" + (problem if problem[0] in "[." else f": {problem}"))
            values[f.name] = _convert(cls, f.name, table[f.name], base_dir)
        elif value_type(cls, f.name) is Path and isinstance(f.default, Path):
            values[f.name] = _resolve(f.default, base_dir)   # a default path is relative to the file too
    return cls(**values)


def _parse_route(i: int, t: dict, destination_names: set[str]) -> Route:
    from node.inputs.kinds import KINDS
    where = f"[[routes]][{i}]"
    t = _check_table(where, "routes", t)
    module = t["module"]
    if module not in MODULES:
        raise ConfigError(f"{where}.module: unknown module {module!r} (known: {', '.join(MODULES)})")
    for j, kind in enumerate(t.get("kinds", [])):
        if kind not in MODULES[module].kinds:
            raise ConfigError(f"{where}.kinds[{j}]: module {module} reads {', '.join(MODULES[module].kinds)}, "
                              f"not {kind!r}" + ("" if kind in KINDS else f" (kinds: {', '.join(KINDS)})"))
    if "kinds" not in t and "series_description" not in t:
        raise ConfigError(f"{where}.series_description: a route names kinds, a series_description, or both")
    for j, name in enumerate(t.get("destinations", [])):
        if name not in destination_names:
            raise ConfigError(f"{where}.destinations[{j}]: unknown destination {name!r}")
    route = _parse_section(where, "routes", t)
    return dataclasses.replace(route, kinds=route.kinds or MODULES[module].kinds,
                               scope=route.scope or MODULES[module].scope)


def parse_config(data: dict, base_dir: Path = Path(".")) -> Config:
    """Build a validated Config from a parsed TOML document."""
    for section in data:
        if section not in _SCHEMA:
            raise ConfigError(f"[{section}]: unknown section (allowed: {', '.join(_SCHEMA)})")
    for section in _TABLE_ARRAYS:
        if section in data and not isinstance(data[section], list):
            raise ConfigError(f"[[{section}]]: must be an array of tables")
    destinations = tuple(_parse_section(f"[[destinations]][{i}]", "destinations", t)
                         for i, t in enumerate(data.get("destinations", [])))
    names = [d.name for d in destinations]
    if len(set(names)) != len(names):
        raise ConfigError("[[destinations]].name: names must be unique")
    # no [[routes]]: the built-in ones, each sending to every destination
    tables = data["routes"] if "routes" in data else builtin_routes(destinations=names)
    routes = tuple(_parse_route(i, t, set(names)) for i, t in enumerate(tables))
    if len({r.name for r in routes}) != len(routes):
        raise ConfigError("[[routes]].name: names must be unique")
    return Config(
        node=_parse_section("[node]", "node", data.get("node", {}), base_dir),
        completion=_parse_section("[completion]", "completion", data.get("completion", {})),
        dispatch=_parse_section("[dispatch]", "dispatch", data.get("dispatch", {})),
        destinations=destinations, routes=routes,
        inputs=_parse_section("[inputs]", "inputs", data.get("inputs", {})),
        registry=_parse_section("[registry]", "registry", data.get("registry", {}), base_dir),
        retention=_parse_section("[retention]", "retention", data.get("retention", {})),
        tls=_check_tls(_parse_section("[tls]", "tls", data.get("tls", {}), base_dir), destinations),
        sources=_parse_sources(data.get("sources", [])),
        executor=_check_executor(_parse_section("[executor]", "executor", data.get("executor", {}))),
    )


def _parse_sources(tables: list) -> tuple[Source, ...]:
    sources = tuple(_parse_section(f"[[sources]][{i}]", "sources", t) for i, t in enumerate(tables))
    for i, source in enumerate(sources):
        if source.protocol == "dicomweb" and source.dicomweb_url is None:
            raise ConfigError(f"[[sources]][{i}].dicomweb_url: required with protocol = \"dicomweb\"")
    if len({s.name for s in sources}) != len(sources):
        raise ConfigError("[[sources]].name: names must be unique")
    return sources


def _check_executor(executor: ExecutorSettings) -> ExecutorSettings:
    if executor.kind == "dask" and not executor.scheduler:
        raise ConfigError("[executor].scheduler: required with kind = \"dask\" (e.g. \"tcp://dask-scheduler:8786\")")
    return executor


def _check_tls(tls: TlsSettings, destinations: tuple[Destination, ...]) -> TlsSettings:
    for key in ("certificate", "private_key", "ca_certificates"):
        path = getattr(tls, key)
        if path is not None and not path.is_file():
            raise ConfigError(f"[tls].{key}: no such file {path}")
    if (tls.certificate is None) != (tls.private_key is None):
        raise ConfigError("[tls].private_key: certificate and private_key go together")
    if tls.require_client_certificate and (tls.certificate is None or tls.ca_certificates is None):
        raise ConfigError("[tls].require_client_certificate: needs certificate, private_key and ca_certificates")
    for d in destinations:
        if d.tls and tls.ca_certificates is None:
            raise ConfigError(f"[tls].ca_certificates: required by destination {d.name!r} (tls = true)")
    return tls


def _resolve(value: str | Path, base_dir: Path) -> Path:
    """A path from the configuration: relative paths are relative to the configuration file."""
    path = Path(value)
    return path if path.is_absolute() else base_dir / path


def load_config(path: Path | str) -> Config:
    """Read and validate a TOML configuration file; relative data_dir is relative to the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, base_dir=path.resolve().parent)


# The built-in routes: by what the headers say a series is, whatever it is called.
DEFAULT_ROUTES_TOML = """
[[routes]]
name = "molli"
module = "molli"
kinds = ["t1_raw"]

[[routes]]
name = "t2map"
module = "t2map"
kinds = ["t2_raw"]

[[routes]]
name = "ecv"
module = "ecv"
kinds = ["t1_map", "segmentation"]
t1_timeline = ["paired"]

[[routes]]
name = "ddce"
module = "ddce"
kinds = ["t1_map", "perfusion"]
t1_timeline = ["dynamic"]

[[routes]]
name = "lge"
module = "lge"
kinds = ["t1_map", "segmentation"]
t1_timeline = ["dynamic"]

[[routes]]
name = "t2segments"
module = "t2segments"
kinds = ["t2_map", "t1_map", "segmentation"]
requires = ["t2_map", "t1_map"]

[[routes]]
name = "summary"
module = "summary"
kinds = ["report", "t1_map"]
requires = ["report", "t1_map"]
last = true
"""


def builtin_routes(**overrides) -> list[dict]:
    """The built-in [[routes]] tables, each with the given keys set (e.g. destinations)."""
    return [dict(t, **overrides) for t in tomllib.loads(DEFAULT_ROUTES_TOML)["routes"]]


def offline_config() -> Config:
    """Configuration for `cmr-node process` when no file is given: the built-in routes only."""
    return parse_config({})
