"""Every setting, declared once: its TOML key, type, default, unit, check and meaning.

One frozen dataclass per section of the configuration file. The parser (node/config.py) takes the keys,
types, defaults and checks from here; the README's configuration table is generated from here
(`python -m node.settings`, tested); modules receive `ModuleSettings` itself, with a study's own values
(`cmr-node inputs set`) merged over it by `with_study_values`.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

Check = Callable[[Any], str | None]   # value -> what is wrong with it, or None


def setting(default: Any = MISSING, *, doc: str, unit: str = "", check: Check | None = None,
            per_study: bool = False, in_file: bool = True, shown_default: str | None = None) -> Any:
    """A dataclass field with what the parser, the README and `cmr-node inputs` need to know about it.

    per_study: `cmr-node inputs set` may give a study its own value. in_file: a key of the TOML file.
    shown_default: the default as the README says it, where the value itself does not say it well."""
    metadata = {"doc": doc, "unit": unit, "check": check, "per_study": per_study, "in_file": in_file,
                "shown_default": shown_default}
    return field(metadata=metadata) if default is MISSING else field(default=default, metadata=metadata)


# ---- checks: each returns what is wrong, naming no key (the parser adds it) ------------------------------
def between(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    def check(value):
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        return f"must be between {low:g} and {high:g}" if too_low or too_high else None
    return check


def positive(value) -> str | None:
    return "must be > 0" if value <= 0 else None


def at_least(minimum: float) -> Check:
    return lambda value: f"must be >= {minimum:g}" if value < minimum else None


def one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def each(check: Check) -> Check:
    """A check of every item of a list (or every value of a table); names the first bad one."""
    def check_all(values):
        items = values.items() if isinstance(values, dict) else enumerate(values)
        for key, value in items:
            if (problem := check(value)) is not None:
                return f"[{key}]: {problem}" if isinstance(key, int) else f".{key}: {problem}"
        return None
    return check_all


def check_ae_title(value: str) -> str | None:
    valid = isinstance(value, str) and 0 < len(value) <= 16 and "\\" not in value and value.isprintable()
    return None if valid else "AE title must be 1-16 printable characters"


def check_port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "port out of range"


def check_network(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except (ValueError, TypeError):
        return f"{value!r} is not a network like 10.1.0.0/16"
    return None


def check_regex(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as exc:
        return f"bad regular expression: {exc}"
    return None


def check_number_list(value) -> str | None:
    good = value and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)
    return None if good else "must be a list of positive numbers"


def check_relaxivity_table(value: dict) -> str | None:
    for agent, r1 in value.items():
        if isinstance(r1, bool) or not isinstance(r1, (int, float)) or not 0 < r1 < 50:
            return f".{agent}: must be r1 in L/mmol/s (0-50)"
    return None


def check_dicom_time(value: str) -> str | None:
    from node.inputs.frames import parse_datetime
    return None if parse_datetime(value, "20000101") else "must be YYYYMMDDHHMMSS or HHMMSS"


def check_reference_ranges(value: dict) -> str | None:
    for key, pair in value.items():
        if not re.fullmatch(r"[a-z0-9_]+_\d+(\.\d+)?T", key):
            return f".{key}: keys are a quantity and a field strength, e.g. native_t1_ms_1.5T"
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair) and pair[0] < pair[1]):
            return f".{key}: must be [low, high]"
    return None


# MOLLI, healthy volunteers, mean +- 2 SD (Dabir et al., JCMR 2014;16:69: native T1 950 +- 21 ms at 1.5 T,
# 1052 +- 23 ms at 3 T; ECV 25 +- 4 % and 26 +- 4 %). SCMR asks for local ranges (Messroghli et al., JCMR
# 2017;19:75): a site sets its own with `reference_ranges`.
DEFAULT_REFERENCE_RANGES = {"native_t1_ms_1.5T": (908.0, 992.0), "native_t1_ms_3T": (1006.0, 1098.0),
                            "ecv_percent_1.5T": (17.0, 33.0), "ecv_percent_3T": (18.0, 34.0)}


def check_calibration(value: str) -> str | None:
    from analysis.oximetry import CALIBRATIONS   # here: the receive path never loads analysis code
    return None if value in CALIBRATIONS else f"unknown calibration (known: {', '.join(CALIBRATIONS)})"


# ---- the sections --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeSettings:
    ae_title: str = setting("CMRNODE", doc="AE title the scanners call", check=check_ae_title)
    host: str = setting("127.0.0.1", doc="interface to listen on")
    port: int = setting(11112, doc="DICOM port to listen on", check=check_port)
    data_dir: Path = setting(Path("cmr-node-data"), doc="all state; created with mode 0700; relative to the "
                             "configuration file")
    allowed_callers: tuple[str, ...] = setting((), doc="calling AE titles let in; empty = any", check=each(check_ae_title))
    allowed_networks: tuple[str, ...] = setting((), doc="source addresses let in, CIDR (`10.20.30.0/24`, "
                                                "`127.0.0.1`); empty = any. Others are rejected at association "
                                                "(rejected-permanent)", check=each(check_network))
    workers: int = setting(1, doc="module worker processes", check=at_least(1))
    receive_processes: int = setting(2, check=at_least(0),
                                     doc="processes that serve associations, each on its own core (the listener "
                                         "hands every new association to the least busy); 0 = in the node's own "
                                         "process")
    min_free_mb: float = setting(1024.0, unit="MB", check=at_least(0),
                                 doc="when data_dir has less free space, C-STORE is answered `0xA700` Out of "
                                     "Resources and nothing is written; service resumes by itself when space returns")
    metrics_host: str = setting("127.0.0.1", doc="where `GET /healthz` and `GET /metrics` (Prometheus) listen")
    metrics_port: int = setting(0, doc="port of /healthz and /metrics; 0 = off", check=check_port)


@dataclass(frozen=True)
class CompletionSettings:
    series_quiet_seconds: float = setting(10.0, unit="s", check=positive,
                                          doc="a series is complete after this long without a new instance")
    study_quiet_seconds: float = setting(120.0, unit="s", check=positive,
                                         doc="a study is complete after this long, once all its series are")
    sweep_interval_seconds: float = setting(1.0, unit="s", check=positive, doc="how often completion is checked")


@dataclass(frozen=True)
class DispatchSettings:
    max_attempts: int = setting(10, check=at_least(1), doc="delivery attempts before an item becomes a dead letter "
                                "(`cmr-node status`, `cmr-node retry`)")
    retry_base_seconds: float = setting(5.0, unit="s", check=positive,
                                        doc="backoff: base × 2^(attempt−1), capped at retry_max_seconds")
    retry_max_seconds: float = setting(600.0, unit="s", check=positive, doc="longest wait between two attempts")
    interval_seconds: float = setting(1.0, unit="s", check=positive, doc="how often the outbox is looked at")


@dataclass(frozen=True)
class Destination:
    name: str = setting(doc="unique name routes refer to")
    host: str = setting(doc="the PACS (C-STORE SCP) host")
    port: int = setting(doc="its DICOM port", check=check_port)
    ae_title: str = setting(doc="its AE title", check=check_ae_title)
    tls: bool = setting(False, doc="DICOM over TLS to this PACS; its certificate must name `host` and chain to "
                        "`[tls].ca_certificates`; the node presents `[tls].certificate` when set")


@dataclass(frozen=True)
class Source:
    name: str = setting(doc="unique name `cmr-node backfill --from` refers to")
    host: str = setting(doc="the archive's (Query/Retrieve SCP's) host")
    port: int = setting(doc="its DICOM port", check=check_port)
    ae_title: str = setting(doc="its AE title; C-MOVE sends to the node's `ae_title`, which the archive must know "
                            "with the node's host and port", check=check_ae_title)
    protocol: str = setting("dimse", check=one_of("dimse", "dicomweb"),
                            doc="`dimse`: C-FIND and C-MOVE; `dicomweb`: QIDO-RS and WADO-RS at `dicomweb_url`")
    dicomweb_url: str | None = setting(None, check=lambda u: None if u.startswith(("http://", "https://")) else
                                       "must be an http:// or https:// URL",
                                       doc="the archive's DICOMweb root, e.g. `http://pacs:8042/dicom-web`")


@dataclass(frozen=True)
class ExecutorSettings:
    kind: str = setting("local", check=one_of("local", "dask"),
                        doc="where module jobs run: `local` worker processes (`[node] workers`) or a Dask "
                            "distributed cluster")
    scheduler: str | None = setting(None, doc="the Dask scheduler's address, e.g. `tcp://dask-scheduler:8786`")
    inputs: str = setting("bytes", check=one_of("bytes", "files"),
                          doc="how a job's input files reach a Dask worker: `bytes` (sent with the task) or "
                              "`files` (workers see the node's `data_dir` at the same path)")
    jobs_per_worker_thread: int = setting(1, check=at_least(1),
                                          doc="Dask: jobs handed to the cluster at once, per worker thread")


@dataclass(frozen=True)
class RetentionSettings:
    days: float = setting(0.0, unit="d", check=at_least(0),
                          doc="purge a study's received instances and job outputs this long after its last "
                              "instance, once it is complete, no job is queued or running and every output "
                              "reached every destination; 0 keeps everything. Jobs, outbox history, registry and "
                              "audit log stay")
    interval_minutes: float = setting(60.0, unit="min", check=positive, doc="how often retention runs")


@dataclass(frozen=True)
class RegistrySettings:
    path: Path | None = setting(None, shown_default="`<data_dir>/registry.sqlite`", doc="the registry's SQLite file")
    url: str | None = setting(None, check=lambda u: None if u.startswith(("postgresql://", "postgres://")) else
                              "must be a postgresql:// URL",
                              doc="`postgresql://user@host:5432/cmr_registry`: the registry in PostgreSQL instead "
                                  "of the SQLite file, shared by every node given the same URL and `salt`; a "
                                  "password comes from PGPASSWORD or ~/.pgpass, never from this file")
    salt: str | None = setting(None, check=lambda s: "at least 16 characters (a short salt makes pseudonyms "
                               "guessable)" if len(s) < 16 else None,
                               doc="secret for patient pseudonyms (≥ 16 characters); keep it the same across nodes "
                                   "that feed one registry")
    salt_file: Path | None = setting(None, shown_default="`<data_dir>/registry.salt`",
                                     doc="used when `salt` is not set: created once with a random salt, mode 0600")


@dataclass(frozen=True)
class TlsSettings:
    certificate: Path | None = setting(None, doc="PEM file; with `private_key` the listener accepts DICOM over TLS "
                                       "(1.2 or newer) only")
    private_key: Path | None = setting(None, doc="PEM, unencrypted, readable by the node's user only")
    ca_certificates: Path | None = setting(None, doc="PEM bundle that verifies scanners' client certificates and "
                                           "TLS destinations")
    require_client_certificate: bool = setting(False, doc="mutual TLS: a caller without a certificate from "
                                               "`ca_certificates` is refused at the handshake")

    @property
    def listener(self) -> bool:
        return self.certificate is not None


@dataclass(frozen=True)
class ModuleSettings:
    """The [inputs] section: what the modules are given, with a study's own values merged over it."""
    hematocrit: float = setting(0.42, unit="fraction", per_study=True, check=between(0.1, 0.7),
                                doc="blood hematocrit (ECV, dDCE, synthetic LGE, oximetry)")
    injection_time: str | None = setting(None, per_study=True, in_file=False, check=check_dicom_time,
                                         doc="dDCE: time of the contrast bolus, YYYYMMDDHHMMSS or HHMMSS (study date)")
    injection_to_first_map_minutes: float | None = setting(None, unit="min", per_study=True, check=positive,
                                                           doc="dDCE: minutes from injection to the first "
                                                               "post-contrast map, when the maps have no Contrast "
                                                               "Bolus Start Time")
    ddce_windows_minutes: tuple[float, ...] = setting((5.0, 30.0), unit="min", check=check_number_list,
                                                      doc="dDCE windows, each fitted once the maps reach it")
    relaxivity: dict[str, float] = setting(None, unit="L/mmol/s", check=check_relaxivity_table,  # type: ignore[arg-type]
                                           shown_default="table",
                                           doc="dDCE: `{ agent-name = r1 }`, overriding the built-in table "
                                               "(matched in Contrast/Bolus Agent)")
    ddce_unidentified_maps: str = setting("withhold", check=one_of("withhold", "send_labelled"),
                                          doc="dDCE: a map whose parameter the window's data identify in under 5 % "
                                              "of the LV myocardium: `withhold` (not sent; results.json says why) "
                                              "or `send_labelled` (Series Description ends NOT IDENTIFIED)")
    t1_noise_fraction: float = setting(0.03, unit="fraction", check=between(0, 0.5, low_open=True, high_open=True),
                                       doc="dDCE: relative SD of the T1 maps, weights the fit")
    oximetry_calibration: str = setting("lu2012_3T", check=check_calibration,
                                        doc="blood T2 → SO2 calibration (table in `analysis/oximetry.py`)")
    hb_g_per_dl: float | None = setting(None, unit="g/dL", per_study=True, check=positive,
                                        doc="oximetry: hemoglobin; missing leaves MVO2 and MEE out, and says so")
    sao2: float | None = setting(None, unit="fraction", per_study=True, check=between(0, 1, low_open=True),
                                 doc="oximetry: arterial oxygen saturation")
    mbf_ml_per_min_per_g: float | None = setting(None, unit="mL/min/g", per_study=True, check=positive,
                                                 doc="oximetry: myocardial blood flow")
    stroke_volume_ml: float | None = setting(None, unit="mL", per_study=True, check=positive,
                                             doc="oximetry: stroke volume (MEE)")
    mean_arterial_pressure_mmhg: float | None = setting(None, unit="mmHg", per_study=True, check=positive,
                                                        doc="oximetry: mean arterial pressure (MEE)")
    heart_rate_per_min: float | None = setting(None, unit="/min", per_study=True, check=positive,
                                               doc="oximetry: heart rate (MEE)")
    lv_mass_g: float | None = setting(None, unit="g", per_study=True, check=positive,
                                      doc="oximetry: LV mass (MEE)")
    lge_target_minutes: float = setting(15.0, unit="min", check=positive,
                                        doc="synthetic LGE: time after injection it shows")
    lge_fit_window_minutes: float = setting(5.0, unit="min", check=positive,
                                            doc="synthetic LGE: the dDCE window it is made from")
    lge_infarct_method: str = setting("nsd", check=one_of("nsd", "fwhm"),
                                      doc="synthetic LGE: `nsd` (mean + n SD of remote) or `fwhm`")
    lge_n_sd: float = setting(5.0, check=positive, doc="synthetic LGE: n of the `nsd` threshold")
    reference_ranges: dict[str, tuple[float, float]] = setting(
        None, check=check_reference_ranges, shown_default="table",  # type: ignore[arg-type]
        doc="study summary: `{ quantity_fieldT = [low, high] }` (keys `native_t1_ms_1.5T`, `ecv_percent_3T`, "
            "`t2_ms_1.5T`, ...) shown beside each number; the built-in table (T1 and ECV only) is from the "
            "literature (README), set your own")
    summary_disclaimer: str = setting("Not for diagnostic use unless validated locally",
                                      doc="study summary: the line every summary page ends with")
    summary_pdf: bool = setting(False, doc="study summary: also send the page as an Encapsulated PDF")
    qc_motion_limit_mm: float = setting(2.0, unit="mm", check=positive,
                                        doc="quality control: largest in-plane shift between maps of a slice "
                                            "(native and post-contrast, dDCE series) before a motion finding")
    qc_min_snr: float = setting(15.0, check=positive,
                                doc="quality control: SNR of raw inversion-recovery and T2-prepared images "
                                    "(tissue mean over background noise) below which a finding is made")
    qc_min_r_squared: float = setting(0.8, check=between(0, 1),
                                      doc="quality control: median R2 of the dDCE fit in the myocardium below "
                                          "which a finding is made")

    def __post_init__(self):
        if self.relaxivity is None:   # a dict default cannot be a dataclass default; frozen: set it once here
            object.__setattr__(self, "relaxivity", {})
        if self.reference_ranges is None:
            object.__setattr__(self, "reference_ranges", dict(DEFAULT_REFERENCE_RANGES))
        object.__setattr__(self, "reference_ranges", {k: (float(v[0]), float(v[1]))
                                                      for k, v in self.reference_ranges.items()})
        object.__setattr__(self, "ddce_windows_minutes", tuple(sorted(map(float, self.ddce_windows_minutes))))


VIEWER_KINDS = ("grayscale", "colour")   # viewer-ready companions of each Parametric Map (node/process/modules/viewer.py)

# series: each complete series alone; study: all matching series once the study is complete;
# study-so-far: all matching complete series of the study, each time one more completes.
SCOPES = ("series", "study", "study-so-far")

# How a study's T1 maps are spread in time (node/route/router.py): one acquisition per slice, two or three
# (native and post-contrast: ECV), or four or more over minutes (dDCE).
T1_TIMELINES = ("single", "paired", "dynamic")


@dataclass(frozen=True)
class Route:
    name: str = setting(doc="unique name")
    module: str = setting(doc="a module name (README, Modules)")
    destinations: tuple[str, ...] = setting((), doc="destination names that receive the outputs")
    scope: str = setting("", shown_default="the module's", check=one_of(*SCOPES),
                         doc="`series` (each complete series), `study` (all matching series of a complete study) or "
                             "`study-so-far` (all matching complete series of the study, each time another one "
                             "completes; when the study completes while the route's last job was still waiting for "
                             "input, one final run that knows it: dDCE maps that never reached 5 min get a report "
                             "saying so)")
    kinds: tuple[str, ...] = setting((), shown_default="the module's",
                                     doc="series kinds it takes (README, What the node takes each series for); a "
                                         "mixed series gives it only its frames of these kinds. Must be kinds the "
                                         "module reads")
    series_description: re.Pattern | None = setting(None, shown_default="any", check=check_regex,
                                                    doc="optional site rule: Python regex, `re.search` on Series "
                                                        "Description (a route needs `kinds`, this, or both)")
    image_type: re.Pattern | None = setting(None, shown_default="any", check=check_regex,
                                            doc="optional Python regex, `re.search` on Image Type (values joined "
                                                "by `\\`)")
    t1_timeline: tuple[str, ...] = setting((), shown_default="any", check=each(one_of(*T1_TIMELINES)),
                                           doc="optional: only studies whose T1 maps are spread in time like this: "
                                               "`single` (each slice acquired once, or repeated within minutes), "
                                               "`paired` (a slice acquired twice 5 min or more apart: native and "
                                               "post-contrast, ECV), `dynamic` (a slice acquired 3 or more times "
                                               "within 10 minutes: dDCE). Maps of one slice less than 30 s apart "
                                               "are one acquisition")
    last: bool = setting(False, doc="study scope: queued only when the study's other routes queue nothing in the "
                                    "same pass, so it sees their reports (the study summary)")
    requires: tuple[str, ...] = setting((), shown_default="nothing",
                                        doc="kinds the matched series must all hold (each at least one instance) "
                                            "before the route queues a job (the study summary waits for a report; "
                                            "t2segments for a T2 and a T1 map)")
    viewer_images: tuple[str, ...] = setting(("grayscale",), check=each(one_of(*VIEWER_KINDS)),
                                             doc="companions sent with each Parametric Map for viewers that do not "
                                                 "show them: `grayscale`, `colour`; `[]` for none")

    def mismatch(self, series_row, timeline: str | None = None) -> str | None:
        """Why this route does not take the series (None: it does). timeline: the study's T1 timeline."""
        from node.store.index import kinds_of
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


# Clinical numbers images do not hold (oximetry): no default, a missing one means not computed.
CLINICAL_INPUTS = ("hb_g_per_dl", "sao2", "mbf_ml_per_min_per_g", "stroke_volume_ml",
                   "mean_arterial_pressure_mmhg", "heart_rate_per_min", "lv_mass_g")


def file_fields(cls) -> list[dataclasses.Field]:
    """The fields of a section that are keys of the TOML file."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("in_file", False)]


def value_type(cls, name: str) -> type:
    """The plain type of a field: float for `float | None`, tuple for `tuple[str, ...]`, dict, Path, ..."""
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) in (Union, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


STUDY_VALUE_TYPES: dict[str, type] = {f.name: value_type(ModuleSettings, f.name)
                                      for f in dataclasses.fields(ModuleSettings) if f.metadata["per_study"]}


def study_value(key: str, text: str):
    """A study's own value from its text (`cmr-node inputs set key=text`); ValueError says what is wrong."""
    if key not in STUDY_VALUE_TYPES:
        raise ValueError(f"{key}: not a per-study value (known: {', '.join(STUDY_VALUE_TYPES)})")
    try:
        value = STUDY_VALUE_TYPES[key](text)
    except ValueError:
        raise ValueError(f"{key}: must be a number") from None
    check = next(f for f in dataclasses.fields(ModuleSettings) if f.name == key).metadata["check"]
    if check is not None and (problem := check(value)) is not None:
        raise ValueError(f"{key}: {problem}")
    return value


def with_study_values(settings: ModuleSettings, study_values: dict[str, str]) -> ModuleSettings:
    """A study's own values (`cmr-node inputs set`, stored as text) over the configured ones."""
    known = {key: study_value(key, text) for key, text in study_values.items() if key in STUDY_VALUE_TYPES}
    return dataclasses.replace(settings, **known)


SECTIONS: dict[str, type] = {"node": NodeSettings, "completion": CompletionSettings, "dispatch": DispatchSettings,
                             "destinations": Destination, "sources": Source, "routes": Route,
                             "executor": ExecutorSettings, "retention": RetentionSettings,
                             "registry": RegistrySettings, "tls": TlsSettings, "inputs": ModuleSettings}


def _shown(f: dataclasses.Field) -> str:
    if f.metadata["shown_default"] is not None:
        return f.metadata["shown_default"]
    if f.default is MISSING or f.default is None:
        return "" if f.default is MISSING else "none"
    value = f.default
    if isinstance(value, tuple):
        return "`[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def reference_table() -> str:
    """The README's table of keys of sections with fixed keys (routes are described beside it)."""
    rows = ["| section | key | default | unit | meaning |", "|---|---|---|---|---|"]
    for section, cls in SECTIONS.items():
        title = f"`[[{section}]]`" if section in ("destinations", "sources", "routes") else f"`[{section}]`"
        for i, f in enumerate(file_fields(cls)):
            doc = f.metadata["doc"] + ("; `cmr-node inputs set` overrides it per study" if f.metadata["per_study"]
                                       else "")
            rows.append(f"| {title if i == 0 else ''} | `{f.name}` | {_shown(f)} | {f.metadata['unit']} | {doc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference_table())
