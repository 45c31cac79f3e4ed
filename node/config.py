"""Node configuration: a TOML file, validated at start-up.

Every key is checked against the schema below; an unknown key, a wrong type,
a regular expression that does not compile, an unknown module or an unknown
destination stops the node with a message that names the key.
"""
from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from node.store.index import kinds_of
from node.process.modules import MODULES


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


@dataclass(frozen=True)
class NodeSettings:
    ae_title: str = "CMRNODE"
    host: str = "127.0.0.1"
    port: int = 11112
    data_dir: Path = Path("cmr-node-data")
    allowed_callers: tuple[str, ...] = ()
    allowed_networks: tuple[str, ...] = ()   # source addresses let in (CIDR); empty = any
    workers: int = 1
    min_free_mb: float = 1024.0              # below this free space in data_dir, C-STORE answers 0xA700
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0                    # GET /healthz and /metrics; 0 = off


@dataclass(frozen=True)
class CompletionSettings:
    series_quiet_seconds: float = 10.0
    study_quiet_seconds: float = 120.0
    sweep_interval_seconds: float = 1.0


@dataclass(frozen=True)
class DispatchSettings:
    max_attempts: int = 10
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 600.0
    interval_seconds: float = 1.0


@dataclass(frozen=True)
class RegistrySettings:
    path: Path | None = None        # default <data_dir>/registry.sqlite
    salt: str | None = None         # pseudonym salt; default: a random one in salt_file
    salt_file: Path | None = None   # default <data_dir>/registry.salt (created once, mode 600)


@dataclass(frozen=True)
class RetentionSettings:
    days: float = 0.0               # 0 = keep everything
    interval_minutes: float = 60.0


@dataclass(frozen=True)
class TlsSettings:
    certificate: Path | None = None      # PEM; with private_key the listener accepts TLS connections only
    private_key: Path | None = None      # PEM, unencrypted, readable by the node's user only
    ca_certificates: Path | None = None  # PEM bundle: verifies client certificates and TLS destinations
    require_client_certificate: bool = False   # mutual TLS: a scanner without a certificate from the CA is refused

    @property
    def listener(self) -> bool:
        return self.certificate is not None


@dataclass(frozen=True)
class Destination:
    name: str
    host: str
    port: int
    ae_title: str
    tls: bool = False                    # DICOM over TLS; the PACS certificate is checked against [tls]


VIEWER_KINDS = ("grayscale", "colour")   # viewer-ready companions of each Parametric Map (node/process/modules/viewer.py)

# series: each complete series alone; study: all matching series once the study is complete;
# study-so-far: all matching complete series of the study, each time one more completes.
SCOPES = ("series", "study", "study-so-far")


# How a study's T1 maps are spread in time (node/route/router.py): one acquisition per slice, two or three
# (native and post-contrast: ECV), or four or more over minutes (dDCE).
T1_TIMELINES = ("single", "paired", "dynamic")


@dataclass(frozen=True)
class Route:
    name: str
    module: str
    destinations: tuple[str, ...]
    scope: str  # one of SCOPES
    kinds: tuple[str, ...]                 # series kinds it takes (node/inputs/kinds.py); default: the module's
    series_description: re.Pattern | None = None   # optional site rule: re.search on Series Description
    image_type: re.Pattern | None = None   # optional regex, re.search on Image Type joined by backslashes
    t1_timeline: tuple[str, ...] = ()      # optional: only studies whose T1 maps are spread like this
    viewer_images: tuple[str, ...] = ("grayscale",)   # companions of each map: "grayscale", "colour"

    def mismatch(self, series_row, timeline: str | None = None) -> str | None:
        """Why this route does not take the series (None: it does). timeline: the study's T1 timeline."""
        if not kinds_of(series_row) & set(self.kinds):
            return f"route {self.name} takes {', '.join(self.kinds)}"
        if self.series_description is not None and not self.series_description.search(
                series_row["series_description"]):
            return f"route {self.name}: Series Description does not match {self.series_description.pattern!r}"
        if self.image_type is not None and not self.image_type.search(series_row["image_type"] or ""):
            return f"route {self.name}: Image Type does not match {self.image_type.pattern!r}"
        if self.t1_timeline and timeline not in self.t1_timeline:
            return (f"route {self.name} needs {' or '.join(self.t1_timeline)} T1 maps; the study's are "
                    f"{timeline or 'none'}")
        return None

    def matches(self, series_row, timeline: str | None = None) -> bool:
        return self.mismatch(series_row, timeline) is None


@dataclass(frozen=True)
class Inputs:
    hematocrit: float = 0.42                         # fraction
    injection_to_first_map_minutes: float | None = None   # used when no Contrast Bolus Start Time
    ddce_windows_minutes: tuple[float, ...] = (5.0, 30.0)
    relaxivity: tuple[tuple[str, float], ...] = ()   # agent name -> r1 (L/mmol/s), overrides the table
    t1_noise_fraction: float = 0.03                  # relative SD of scanner T1 maps
    oximetry_calibration: str = "lu2012_3T"          # key of analysis.oximetry.CALIBRATIONS
    clinical: tuple[tuple[str, float], ...] = ()     # configured defaults: hb_g_per_dl, sao2, ...
    lge_target_minutes: float = 15.0                 # synthetic LGE: time after injection it shows
    lge_fit_window_minutes: float = 5.0              # synthetic LGE: the dDCE window it is made from
    lge_infarct_method: str = "nsd"                  # "nsd" (mean + n SD of remote) or "fwhm"
    lge_n_sd: float = 5.0

    def as_settings(self) -> dict:
        """The module settings these inputs give (per-study values are merged over them)."""
        return {"hematocrit": self.hematocrit,
                "injection_to_first_map_minutes": self.injection_to_first_map_minutes,
                "ddce_windows_minutes": list(self.ddce_windows_minutes),
                "relaxivity": dict(self.relaxivity), "t1_noise_fraction": self.t1_noise_fraction,
                "oximetry_calibration": self.oximetry_calibration, **dict(self.clinical),
                "lge_target_minutes": self.lge_target_minutes, "lge_fit_window_minutes": self.lge_fit_window_minutes,
                "lge_infarct_method": self.lge_infarct_method, "lge_n_sd": self.lge_n_sd}


@dataclass(frozen=True)
class Config:
    node: NodeSettings = field(default_factory=NodeSettings)
    completion: CompletionSettings = field(default_factory=CompletionSettings)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    destinations: tuple[Destination, ...] = ()
    routes: tuple[Route, ...] = ()
    inputs: Inputs = field(default_factory=Inputs)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)

    def destination(self, name: str) -> Destination:
        return next(d for d in self.destinations if d.name == name)


# Clinical numbers images do not hold (oximetry); none has a default: missing means not computed.
CLINICAL_INPUTS = ("hb_g_per_dl", "sao2", "mbf_ml_per_min_per_g", "stroke_volume_ml",
                   "mean_arterial_pressure_mmhg", "heart_rate_per_min", "lv_mass_g")

# section -> key -> (type, required); types are checked with isinstance.
_NUMBER = (int, float)
_SCHEMA: dict[str, dict[str, tuple[type | tuple, bool]]] = {
    "node": {
        "ae_title": (str, False), "host": (str, False), "port": (int, False),
        "data_dir": (str, False), "allowed_callers": (list, False), "workers": (int, False),
        "allowed_networks": (list, False), "min_free_mb": (_NUMBER, False), "metrics_host": (str, False),
        "metrics_port": (int, False),
    },
    "completion": {
        "series_quiet_seconds": (_NUMBER, False), "study_quiet_seconds": (_NUMBER, False),
        "sweep_interval_seconds": (_NUMBER, False),
    },
    "dispatch": {
        "max_attempts": (int, False), "retry_base_seconds": (_NUMBER, False),
        "retry_max_seconds": (_NUMBER, False), "interval_seconds": (_NUMBER, False),
    },
    "destinations": {
        "name": (str, True), "host": (str, True), "port": (int, True), "ae_title": (str, True),
        "tls": (bool, False),
    },
    "routes": {
        "name": (str, True), "series_description": (str, False), "module": (str, True),
        "destinations": (list, False), "scope": (str, False), "image_type": (str, False),
        "viewer_images": (list, False), "kinds": (list, False), "t1_timeline": (list, False),
    },
    "retention": {"days": (_NUMBER, False), "interval_minutes": (_NUMBER, False)},
    "tls": {"certificate": (str, False), "private_key": (str, False), "ca_certificates": (str, False),
            "require_client_certificate": (bool, False)},
    "registry": {"path": (str, False), "salt": (str, False), "salt_file": (str, False)},
    "inputs": {"hematocrit": (_NUMBER, False), "injection_to_first_map_minutes": (_NUMBER, False),
               "ddce_windows_minutes": (list, False), "relaxivity": (dict, False),
               "t1_noise_fraction": (_NUMBER, False), "oximetry_calibration": (str, False),
               "lge_target_minutes": (_NUMBER, False), "lge_fit_window_minutes": (_NUMBER, False),
               "lge_infarct_method": (str, False), "lge_n_sd": (_NUMBER, False),
               **{key: (_NUMBER, False) for key in CLINICAL_INPUTS}},
}
_TABLE_ARRAYS = {"destinations", "routes"}


def _check_table(where: str, section: str, table: object) -> dict:
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


def _ae_title(where: str, value: str) -> str:
    if not 0 < len(value) <= 16 or "\\" in value or not value.isprintable():
        raise ConfigError(f"{where}: AE title must be 1-16 printable characters")
    return value


def _port(where: str, value: int) -> int:
    if not 0 <= value <= 65535:
        raise ConfigError(f"{where}: port out of range")
    return value


def _positive(where: str, value: float) -> float:
    if value <= 0:
        raise ConfigError(f"{where}: must be > 0")
    return float(value)


def _parse_node(t: dict, base_dir: Path) -> NodeSettings:
    t = _check_table("[node]", "node", t)
    callers = t.get("allowed_callers", [])
    for i, c in enumerate(callers):
        if not isinstance(c, str):
            raise ConfigError(f"[node].allowed_callers[{i}]: must be a string")
        _ae_title(f"[node].allowed_callers[{i}]", c)
    data_dir = _resolve(t.get("data_dir", NodeSettings.data_dir), base_dir)
    workers = t.get("workers", NodeSettings.workers)
    if workers < 1:
        raise ConfigError("[node].workers: must be >= 1")
    networks = t.get("allowed_networks", [])
    for i, net in enumerate(networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except (ValueError, TypeError):
            raise ConfigError(f"[node].allowed_networks[{i}]: {net!r} is not a network like 10.1.0.0/16") from None
    min_free = t.get("min_free_mb", NodeSettings.min_free_mb)
    if min_free < 0:
        raise ConfigError("[node].min_free_mb: must be >= 0")
    metrics_port = t.get("metrics_port", 0)
    return NodeSettings(
        ae_title=_ae_title("[node].ae_title", t.get("ae_title", NodeSettings.ae_title)),
        host=t.get("host", NodeSettings.host),
        port=_port("[node].port", t.get("port", NodeSettings.port)),
        data_dir=data_dir, allowed_callers=tuple(callers), workers=workers,
        allowed_networks=tuple(networks), min_free_mb=float(min_free),
        metrics_host=t.get("metrics_host", NodeSettings.metrics_host),
        metrics_port=_port("[node].metrics_port", metrics_port) if metrics_port else 0,
    )


def _parse_numbers(section: str, t: dict, cls):
    t = _check_table(f"[{section}]", section, t)
    values = {}
    for key, value in t.items():
        where = f"[{section}].{key}"
        values[key] = int(value) if key == "max_attempts" else _positive(where, value)
        if key == "max_attempts" and value < 1:
            raise ConfigError(f"{where}: must be >= 1")
    return cls(**values)


def _parse_destination(i: int, t: dict) -> Destination:
    where = f"[[destinations]][{i}]"
    t = _check_table(where, "destinations", t)
    return Destination(
        name=t["name"], host=t["host"], port=_port(f"{where}.port", t["port"]),
        ae_title=_ae_title(f"{where}.ae_title", t["ae_title"]), tls=t.get("tls", False),
    )


def _parse_route(i: int, t: dict, destination_names: set[str]) -> Route:
    from node.inputs.kinds import KINDS
    where = f"[[routes]][{i}]"
    t = _check_table(where, "routes", t)
    module = t["module"]
    if module not in MODULES:
        raise ConfigError(f"{where}.module: unknown module {module!r} (known: {', '.join(MODULES)})")
    kinds = t.get("kinds", list(MODULES[module].kinds))
    for j, kind in enumerate(kinds):
        if kind not in MODULES[module].kinds:
            raise ConfigError(f"{where}.kinds[{j}]: module {module} reads {', '.join(MODULES[module].kinds)}, "
                              f"not {kind!r}" + ("" if kind in KINDS else f" (kinds: {', '.join(KINDS)})"))
    if "kinds" not in t and "series_description" not in t:
        raise ConfigError(f"{where}.series_description: a route names kinds, a series_description, or both")
    pattern = _regex(f"{where}.series_description", t["series_description"]) if "series_description" in t else None
    image_type = _regex(f"{where}.image_type", t["image_type"]) if "image_type" in t else None
    destinations = t.get("destinations", [])
    for j, name in enumerate(destinations):
        if name not in destination_names:
            raise ConfigError(f"{where}.destinations[{j}]: unknown destination {name!r}")
    scope = t.get("scope", MODULES[module].scope)
    if scope not in SCOPES:
        raise ConfigError(f"{where}.scope: must be one of {', '.join(SCOPES)}")
    viewer = t.get("viewer_images", list(Route.viewer_images))
    for j, kind in enumerate(viewer):
        if kind not in VIEWER_KINDS:
            raise ConfigError(f"{where}.viewer_images[{j}]: {kind!r} is not one of {', '.join(VIEWER_KINDS)}")
    timeline = t.get("t1_timeline", [])
    for j, value in enumerate(timeline):
        if value not in T1_TIMELINES:
            raise ConfigError(f"{where}.t1_timeline[{j}]: {value!r} is not one of {', '.join(T1_TIMELINES)}")
    return Route(name=t["name"], series_description=pattern, module=module, destinations=tuple(destinations),
                 scope=scope, kinds=tuple(kinds), image_type=image_type, viewer_images=tuple(viewer),
                 t1_timeline=tuple(timeline))


def _regex(where: str, text: str) -> re.Pattern:
    try:
        return re.compile(text)
    except re.error as exc:
        raise ConfigError(f"{where}: bad regular expression: {exc}") from None


def parse_config(data: dict, base_dir: Path = Path(".")) -> Config:
    """Build a validated Config from a parsed TOML document."""
    for section in data:
        if section not in _SCHEMA:
            raise ConfigError(f"[{section}]: unknown section (allowed: {', '.join(_SCHEMA)})")
    for section in _TABLE_ARRAYS:
        if section in data and not isinstance(data[section], list):
            raise ConfigError(f"[[{section}]]: must be an array of tables")
    destinations = tuple(_parse_destination(i, t) for i, t in enumerate(data.get("destinations", [])))
    names = [d.name for d in destinations]
    if len(set(names)) != len(names):
        raise ConfigError("[[destinations]].name: names must be unique")
    # no [[routes]]: the built-in ones, each sending to every destination
    tables = data["routes"] if "routes" in data else builtin_routes(destinations=names)
    routes = tuple(_parse_route(i, t, set(names)) for i, t in enumerate(tables))
    if len({r.name for r in routes}) != len(routes):
        raise ConfigError("[[routes]].name: names must be unique")
    inputs = _parse_inputs(_check_table("[inputs]", "inputs", data.get("inputs", {})))
    return Config(
        node=_parse_node(data.get("node", {}), base_dir),
        completion=_parse_numbers("completion", data.get("completion", {}), CompletionSettings),
        dispatch=_parse_numbers("dispatch", data.get("dispatch", {}), DispatchSettings),
        destinations=destinations, routes=routes, inputs=inputs,
        registry=_parse_registry(_check_table("[registry]", "registry", data.get("registry", {})), base_dir),
        retention=_parse_retention(_check_table("[retention]", "retention", data.get("retention", {}))),
        tls=_parse_tls(_check_table("[tls]", "tls", data.get("tls", {})), base_dir, destinations),
    )


def _parse_tls(t: dict, base_dir: Path, destinations: tuple[Destination, ...]) -> TlsSettings:
    paths = {}
    for key in ("certificate", "private_key", "ca_certificates"):
        if key in t:
            path = _resolve(t[key], base_dir)
            if not path.is_file():
                raise ConfigError(f"[tls].{key}: no such file {path}")
            paths[key] = path
    if ("certificate" in paths) != ("private_key" in paths):
        raise ConfigError("[tls].private_key: certificate and private_key go together")
    required = t.get("require_client_certificate", False)
    if required and ("certificate" not in paths or "ca_certificates" not in paths):
        raise ConfigError("[tls].require_client_certificate: needs certificate, private_key and ca_certificates")
    for d in destinations:
        if d.tls and "ca_certificates" not in paths:
            raise ConfigError(f"[tls].ca_certificates: required by destination {d.name!r} (tls = true)")
    return TlsSettings(**paths, require_client_certificate=required)


def _parse_retention(t: dict) -> RetentionSettings:
    days, interval = t.get("days", 0.0), t.get("interval_minutes", RetentionSettings.interval_minutes)
    if days < 0 or interval <= 0:
        raise ConfigError("[retention]: days must be >= 0 (0 keeps everything), interval_minutes > 0")
    return RetentionSettings(days=float(days), interval_minutes=float(interval))


def _resolve(value: str | Path, base_dir: Path) -> Path:
    """A path from the configuration: relative paths are relative to the configuration file."""
    path = Path(value)
    return path if path.is_absolute() else base_dir / path


def _parse_registry(t: dict, base_dir: Path) -> RegistrySettings:
    def path(key):
        return _resolve(t[key], base_dir) if key in t else None
    if "salt" in t and len(t["salt"]) < 16:
        raise ConfigError("[registry].salt: at least 16 characters (a short salt makes pseudonyms guessable)")
    return RegistrySettings(path=path("path"), salt=t.get("salt"), salt_file=path("salt_file"))


def _parse_inputs(t: dict) -> Inputs:
    hematocrit = float(t.get("hematocrit", Inputs.hematocrit))
    if not 0.1 <= hematocrit <= 0.7:
        raise ConfigError("[inputs].hematocrit: must be a fraction between 0.1 and 0.7")
    windows = t.get("ddce_windows_minutes", list(Inputs.ddce_windows_minutes))
    if not windows or any(isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0 for w in windows):
        raise ConfigError("[inputs].ddce_windows_minutes: must be a list of positive numbers")
    relaxivity = t.get("relaxivity", {})
    for agent, r1 in relaxivity.items():
        if isinstance(r1, bool) or not isinstance(r1, (int, float)) or not 0 < r1 < 50:
            raise ConfigError(f"[inputs].relaxivity.{agent}: must be r1 in L/mmol/s (0-50)")
    noise = float(t.get("t1_noise_fraction", Inputs.t1_noise_fraction))
    if not 0 < noise < 0.5:
        raise ConfigError("[inputs].t1_noise_fraction: must be a fraction between 0 and 0.5")
    first = t.get("injection_to_first_map_minutes")
    if first is not None and first <= 0:
        raise ConfigError("[inputs].injection_to_first_map_minutes: must be > 0")
    from analysis.oximetry import CALIBRATIONS
    calibration = t.get("oximetry_calibration", Inputs.oximetry_calibration)
    if calibration not in CALIBRATIONS:
        raise ConfigError(f"[inputs].oximetry_calibration: unknown calibration (known: {', '.join(CALIBRATIONS)})")
    clinical = tuple((k, float(t[k])) for k in CLINICAL_INPUTS if k in t)
    if any(v <= 0 for _, v in clinical) or ("sao2" in t and not 0 < t["sao2"] <= 1):
        raise ConfigError("[inputs]: clinical inputs must be positive, sao2 a fraction")
    lge = {key: float(t[key]) for key in ("lge_target_minutes", "lge_fit_window_minutes", "lge_n_sd") if key in t}
    if any(v <= 0 for v in lge.values()):
        raise ConfigError("[inputs]: lge_target_minutes, lge_fit_window_minutes and lge_n_sd must be > 0")
    if t.get("lge_infarct_method", "nsd") not in ("nsd", "fwhm"):
        raise ConfigError("[inputs].lge_infarct_method: must be \"nsd\" or \"fwhm\"")
    lge["lge_infarct_method"] = t.get("lge_infarct_method", "nsd")
    return Inputs(**lge, hematocrit=hematocrit, injection_to_first_map_minutes=None if first is None else float(first),
                  oximetry_calibration=calibration, clinical=clinical,
                  ddce_windows_minutes=tuple(sorted(float(w) for w in windows)),
                  relaxivity=tuple((str(k), float(v)) for k, v in relaxivity.items()), t1_noise_fraction=noise)


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
kinds = ["t1_map"]
t1_timeline = ["paired"]

[[routes]]
name = "ddce"
module = "ddce"
kinds = ["t1_map"]
t1_timeline = ["dynamic"]

[[routes]]
name = "lge"
module = "lge"
kinds = ["t1_map", "segmentation"]
t1_timeline = ["dynamic"]
"""


def builtin_routes(**overrides) -> list[dict]:
    """The built-in [[routes]] tables, each with the given keys set (e.g. destinations)."""
    return [dict(t, **overrides) for t in tomllib.loads(DEFAULT_ROUTES_TOML)["routes"]]


def offline_config() -> Config:
    """Configuration for `cmr-node process` when no file is given: the built-in routes only."""
    return parse_config({})
