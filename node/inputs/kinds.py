"""What a received series is, from its headers: the kind of every frame, and the kinds a series holds.

A series may hold several kinds (Philips keeps raw MOLLI images and the inline T1 map in one series);
each frame gets one kind. The decision for a frame, first match wins:
1. SOP class: SEG, RT Structure Set, SR, and images that are not MR images;
2. the vendor's table (vendors.py), then the generic rules below;
3. a magnitude image is told apart by the structure of its series: at least 5 distinct inversion times
   per slice after an inversion pulse is raw T1 mapping (MOLLI, ShMOLLI, Look-Locker); tens of frames
   per slice over 20 s or more is first-pass perfusion; frames over one cardiac cycle are cine; one or a
   few inversion-prepared images per slice are LGE; T2-prepared images with 3 or more preparation
   times per slice are raw T2 mapping; anything else is other.
Phase, real and imaginary images are never fitted.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import pydicom

from node.inputs.frames import Frame, Instance, read_instance, vendor_of
from node.inputs.timing import INVERSION_TIME_SOURCES, T2PREP_TIME_SOURCES, first_time, has_inversion, \
    has_t2_preparation
from node.inputs.vendors import (CINE, IMAGINARY, LGE, MAGNITUDE, OTHER, PERFUSION, PHASE, REAL, T1_MAP, T1_RAW,
                                  T2_MAP, T2_RAW, VENDOR_RULES, Rule, _description, _value)

SEGMENTATION, RT_STRUCTURE_SET, REPORT = "segmentation", "rt_structure_set", "report"

KINDS = {
    T1_RAW: "raw inversion-recovery magnitude images (MOLLI, ShMOLLI, Look-Locker)",
    T1_MAP: "T1 map (scanner inline or cmr-node's own), values in ms",
    T2_RAW: "raw T2-prepared magnitude images",
    T2_MAP: "T2 map",
    LGE: "late gadolinium enhancement (magnitude inversion recovery or PSIR)",
    PERFUSION: "first-pass perfusion dynamics",
    CINE: "cine",
    PHASE: "phase images (never fitted)",
    REAL: "real-part images (never fitted)",
    IMAGINARY: "imaginary-part images (never fitted)",
    SEGMENTATION: "DICOM Segmentation (regions)",
    RT_STRUCTURE_SET: "RT Structure Set (regions)",
    REPORT: "Structured Report",
    OTHER: "anything else",
}

MIN_INVERSION_TIMES = 5       # a MOLLI-type fit needs at least 5 samples (ShMOLLI 5(1)1(1)1 has 7)
MIN_T2_PREPARATIONS = 3
MIN_DYNAMIC_FRAMES = 20       # first-pass perfusion: one image per heartbeat for about a minute
MIN_DYNAMIC_SPAN_S = 20.0
MIN_CINE_FRAMES = 10
MAX_CINE_SPAN_MS = 3000.0     # cine phases cover one cardiac cycle
MAX_LGE_IMAGES_PER_SLICE = 3  # magnitude and a few repeats; more inversion times make a T1 series
SAME_ACQUISITION_S = 30.0     # maps of one slice closer in time than this show one acquisition (a MOLLI takes
                              # 10-20 s; the scanner's map and cmr-node's own differ by that; dDCE maps are a
                              # minute or more apart)

_SOP_KINDS = {
    "1.2.840.10008.5.1.4.1.1.66.4": (SEGMENTATION, "SOP class Segmentation"),
    "1.2.840.10008.5.1.4.1.1.481.3": (RT_STRUCTURE_SET, "SOP class RT Structure Set"),
    **{uid: (REPORT, "SOP class Structured Report") for uid in (
        "1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33",
        "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.88.35")},
}

_T1_MAP_TYPES = {"T1 MAP", "T1MAP", "T1_MAP"}
_T2_MAP_TYPES = {"T2 MAP", "T2MAP", "T2_MAP"}
_T2STAR_MAP_TYPES = {"T2_STAR MAP", "T2* MAP", "T2STAR MAP", "T2_STAR_UNSPECIF", "T2STAR"}
_COMPONENT_KINDS = {"PHASE": PHASE, "REAL": REAL, "IMAGINARY": IMAGINARY}


def _rwvm_t1(frame: Frame) -> bool:
    for item in frame.value("RealWorldValueMappingSequence") or []:
        units = item.get("MeasurementUnitsCodeSequence") or []
        if "T1" in str(item.get("LUTLabel", "")).upper() and units and units[0].get("CodeValue") in ("ms", "s"):
            return True
    return False


GENERIC_RULES = (
    Rule(PHASE, "Complex Image Component PHASE", lambda f: f.complex_component == "PHASE"),
    Rule(REAL, "Complex Image Component REAL", lambda f: f.complex_component == "REAL"),
    Rule(IMAGINARY, "Complex Image Component IMAGINARY", lambda f: f.complex_component == "IMAGINARY"),
    Rule(T1_MAP, "Image Type T1 MAP", lambda f: bool(_T1_MAP_TYPES & set(f.image_type))),
    Rule(T2_MAP, "Image Type T2 MAP", lambda f: bool(_T2_MAP_TYPES & set(f.image_type))),
    Rule(OTHER, "T2* map (no module uses it)", lambda f: bool(_T2STAR_MAP_TYPES & set(f.image_type))),
    Rule(T1_MAP, "Real World Value Mapping labelled T1 in ms", _rwvm_t1),
    Rule(PHASE, "Image Type value 3 or 4 P / PHASE", lambda f: bool({_value(f, 2), _value(f, 3)} & {"P", "PHASE"})),
    Rule(LGE, "PSIR in Image Type or Series Description",
         lambda f: "PSIR" in f.image_type or "PSIR" in _description(f)),
    Rule(MAGNITUDE, "image", lambda f: True),
)


def frame_rule(frame: Frame) -> Rule:
    """The rule that decides the frame's kind (a MAGNITUDE rule leaves it to the series' structure)."""
    for rule in VENDOR_RULES.get(frame.vendor, ()) + GENERIC_RULES:
        if rule.applies(frame):
            return rule
    raise AssertionError("the last generic rule always applies")


@dataclass
class SeriesKinds:
    """The kinds of one series: which frames are of which kind, and why."""
    series_uid: str
    series_number: int | None
    description: str
    vendor: str
    frames: dict[str, list[Frame]] = field(default_factory=dict)
    instances: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))   # SOP Instance UID -> kinds
    why: dict[str, str] = field(default_factory=dict)
    detail: dict[str, dict] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        return sorted(set(self.why))

    def add(self, kind: str, why: str, frames: list[Frame] = (), instance: Instance | None = None) -> None:
        self.why.setdefault(kind, why)
        self.frames.setdefault(kind, []).extend(frames)
        for uid in {f.sop_instance_uid for f in frames} | ({instance.sop_instance_uid} if instance else set()):
            self.instances[uid].add(kind)

    def summary(self) -> dict:
        """What results.json, the index and the log say about the series. T1 maps also list their slice
        planes and acquisition times, from which routing tells a dDCE study from an ECV one."""
        kinds = {kind: {"why": self.why[kind], "frames": self.count(kind), **self.detail.get(kind, {})}
                 for kind in self.kinds}
        if T1_MAP in kinds:
            kinds[T1_MAP]["acquired"] = sorted({(f.plane_key, f.acquired.isoformat()) for f in self.frames[T1_MAP]
                                                if f.has_geometry and f.acquired is not None})
        return {"series_instance_uid": self.series_uid, "series_number": self.series_number,
                "series_description": self.description, "vendor": self.vendor, "kinds": kinds}

    def count(self, kind: str) -> int:
        """Frames of the kind, or instances where the kind is not made of image frames (SEG, SR)."""
        return len(self.frames.get(kind, [])) or sum(kind in k for k in self.instances.values())

    def explain(self) -> str:
        """One line for the log (UIDs and numbers only: a description may name a person)."""
        return "; ".join(f"{kind} ({self.count(kind)}): {self.why[kind]}" for kind in self.kinds)


def _planes(frames: list[Frame]) -> dict[tuple, list[Frame]]:
    planes: dict[tuple, list[Frame]] = defaultdict(list)
    for f in frames:
        planes[f.plane_key if f.has_geometry else ()].append(f)
    return planes


def _span_s(frames: list[Frame]) -> float:
    times = [t for f in frames if (t := f.acquired) is not None]
    return (max(times) - min(times)).total_seconds() if times else 0.0


def _distinct(frames: list[Frame], sources) -> int:
    values = [first_time(f, sources) for f in frames]
    return len({round(v, 1) for v in values if v is not None})


def structure_kind(frames: list[Frame]) -> tuple[str, str, dict]:
    """(kind, why, detail) of the magnitude frames of one series, from how they are arranged."""
    planes = _planes(frames)
    sizes = [len(p) for p in planes.values()]
    detail = {"slices": len(planes), "images_per_slice": max(sizes)}
    inversion = any(has_inversion(f) for f in frames)
    inversion_times = min(_distinct(p, INVERSION_TIME_SOURCES) for p in planes.values())
    if inversion and inversion_times >= MIN_INVERSION_TIMES:
        return T1_RAW, f"inversion recovery with {inversion_times} or more distinct inversion times per slice", detail
    span = max(_span_s(p) for p in planes.values())
    triggers = [[t for f in p if (t := f.time_ms("TriggerTime", upper=float("inf"))) is not None]
                for p in planes.values()]
    trigger_span = max((max(t) - min(t) for t in triggers if t), default=0.0)
    if max(sizes) >= MIN_DYNAMIC_FRAMES and max(span, trigger_span / 1000.0) >= MIN_DYNAMIC_SPAN_S:
        return PERFUSION, (f"{max(sizes)} frames per slice over {max(span, trigger_span / 1000.0):.0f} s "
                           "(dynamic)"), detail
    if max(sizes) >= MIN_CINE_FRAMES and 0 < trigger_span <= MAX_CINE_SPAN_MS:
        return CINE, f"{max(sizes)} cardiac phases per slice over {trigger_span:.0f} ms", detail
    if inversion and max(sizes) <= MAX_LGE_IMAGES_PER_SLICE:
        return LGE, "inversion-prepared, one inversion time per slice", detail
    preparations = min(_distinct(p, T2PREP_TIME_SOURCES) for p in planes.values())
    if not inversion and preparations >= MIN_T2_PREPARATIONS and (
            any(has_t2_preparation(f) for f in frames) or preparations == min(sizes)):
        return T2_RAW, f"{preparations} T2-preparation or echo times per slice", detail
    if inversion:
        return OTHER, "inversion recovery with fewer than 5 distinct inversion times per slice", detail
    looked = ", ".join(name for name, _ in INVERSION_TIME_SOURCES[:-1])
    return OTHER, (f"{max(sizes)} magnitude images per slice without inversion times (looked in {looked}; "
                   "anonymizers remove private elements) or preparation times, not dynamic, not cine"), detail


def classify_instances(instances: list[Instance]) -> SeriesKinds:
    """The kinds of one series' instances (headers are enough)."""
    header = instances[0].dataset
    number = header.get("SeriesNumber")
    result = SeriesKinds(series_uid=str(header.get("SeriesInstanceUID", "")),
                         series_number=int(number) if number not in (None, "") else None,
                         description=str(header.get("SeriesDescription", "") or ""),
                         vendor=vendor_of(header))
    magnitude: list[Frame] = []
    magnitude_why: list[str] = []
    for instance in instances:
        if not instance.is_mr_image:
            kind, why = _SOP_KINDS.get(instance.sop_class_uid, (OTHER, "not an MR image"))
            result.add(kind, why, instance=instance)
            continue
        by_rule: dict[Rule, list[Frame]] = defaultdict(list)
        for frame in instance.frames():
            by_rule[frame_rule(frame)].append(frame)
        for rule, frames in by_rule.items():
            if rule.kind == MAGNITUDE:
                magnitude += frames
                magnitude_why.append(rule.why)
            else:
                result.add(rule.kind, rule.why, frames)
    if magnitude:
        kind, why, detail = structure_kind(magnitude)
        vendor_note = next((w for w in magnitude_why if w != "image"), None)
        result.add(kind, f"{vendor_note}; {why}" if vendor_note else why, magnitude)
        result.detail[kind] = detail
    return result


def classify_files(paths: list[str], pixels: bool = False) -> list[SeriesKinds]:
    """The kinds of every series among the files (read once, headers only unless pixels)."""
    by_series: dict[str, list[Instance]] = defaultdict(list)
    for path in paths:
        instance = read_instance(path, pixels)
        by_series[str(instance.dataset.get("SeriesInstanceUID", ""))].append(instance)
    return [classify_instances(instances) for instances in by_series.values()]


def frames_of_kinds(paths: list[str], kinds) -> list[Frame]:
    """The frames of the given kinds among the files, with pixel data, in file order."""
    wanted = set(kinds)
    frames = [f for series in classify_files(paths, pixels=True) for kind in sorted(wanted)
              for f in series.frames.get(kind, [])]
    order = {p: i for i, p in enumerate(paths)}
    return sorted(frames, key=lambda f: (order.get(f.instance.path, 0), f.number or 0))


def sop_classes(paths: list[str]) -> dict[str, str]:
    """path -> SOP Class UID of each input file (headers only), for a module that reads more than images."""
    return {path: str(pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID) for path in paths}
