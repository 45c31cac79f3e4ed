"""T1 maps of a study (scanner inline or cmr-node's own) as arrays in ms, and which were acquired before the
contrast agent.

Values: a Real World Value Mapping in ms (or s) takes precedence (Philips); otherwise Rescale
Slope/Intercept (Siemens and GE maps: ms). Frames come from node/scanner (classic or enhanced files,
only the T1 map frames of a series that also holds raw images).

One acquisition can arrive as several maps: the scanner's inline map and cmr-node's own from the raw
images. Series whose maps of a common slice are less than SAME_ACQUISITION_S apart are one acquisition;
the scanner's map is used, and the others are reported as set aside.

Native or post-contrast, per series, first decision wins:
1. explicit words in Series Description ("pre", "native", "nativo", ... / "post", "enhanced", "Gd", ...);
2. Contrast/Bolus Start Time (0018,1042) against the acquisition time;
3. the physics: against a series of the other role or of no role at a common slice, blood T1 at least
   BLOOD_T1_RATIO times longer is native (analysis/ecv.py blood_t1_ratio).
Contrast/Bolus Agent (0018,0010) alone never decides: scanners carry it on every series once it is
entered, native ones included.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset

from analysis.ecv import blood_t1_ratio
from dicom_out.parametric_map import MANUFACTURER
from analysis.geometry import same_slice
from node.errors import InputError
from node.inputs.frames import Frame, parse_datetime
from node.inputs.kinds import SAME_ACQUISITION_S, T1_MAP, frames_of_kinds

BLOOD_T1_RATIO = 1.5          # native blood T1 over post-contrast blood T1, at least
_NATIVE_WORDS = re.compile(r"(?i)(?<![a-z])(pre(?![a-z])|pre-?contrast|native?|nativo|nativa|nonc|non-?contrast|"
                           r"baseline|without)")
_POST_WORDS = re.compile(r"(?i)(?<![a-z])(post(?!erior)|enh(anced)?(?![a-z])|gd(?![a-z])|gado|contrast-?enhanced|"
                         r"ce(?![a-z])|\+c(?![a-z])|with(?![a-z]))")


@dataclass
class T1Slice:
    frame: Frame
    t1_ms: np.ndarray
    acquired: datetime | None

    @property
    def dataset(self) -> Dataset:
        return self.frame.header

    @property
    def series_uid(self) -> str:
        return self.frame.series_uid

    @property
    def series_description(self) -> str:
        return self.frame.series_description

    @property
    def series_number(self) -> int:
        return int(self.dataset.get("SeriesNumber", 0) or 0)

    @property
    def position_mm(self) -> float:
        return self.frame.position_mm

    @property
    def pixel_mm(self) -> float:
        return self.frame.pixel_mm[0]

    @property
    def made_by_node(self) -> bool:
        return str(self.dataset.get("Manufacturer", "")) == MANUFACTURER


def read_t1_maps(paths: list[str]) -> list[T1Slice]:
    """Every T1 map frame among the files, in ms."""
    slices = []
    for frame in frames_of_kinds(paths, [T1_MAP]):
        if not frame.has_geometry:
            raise InputError(f"instance {frame.sop_instance_uid}: a T1 map without geometry (position, "
                             "orientation, pixel spacing)")
        slices.append(T1Slice(frame=frame, t1_ms=frame.values_ms(), acquired=frame.acquired))
    if not slices:
        raise InputError(f"no T1 map among the {len(paths)} input files")
    return slices


def group_by_series(slices: list[T1Slice]) -> dict[str, list[T1Slice]]:
    groups: dict[str, list[T1Slice]] = {}
    for s in slices:
        groups.setdefault(s.series_uid, []).append(s)
    for members in groups.values():
        members.sort(key=lambda s: s.position_mm)
    return groups


def _common(a: list[T1Slice], b: list[T1Slice]) -> list[tuple[T1Slice, T1Slice]]:
    """Pairs of slices of two series on one plane (same position within tolerance, same matrix)."""
    pairs = []
    for s in a:
        match = min(b, key=lambda t: abs(t.position_mm - s.position_mm))
        if same_slice(match.position_mm, s.position_mm) and match.t1_ms.shape == s.t1_ms.shape \
                and np.allclose(match.frame.normal, s.frame.normal, atol=0.01):
            pairs.append((s, match))
    return pairs


def _same_acquisition(a: list[T1Slice], b: list[T1Slice]) -> bool:
    pairs = _common(a, b)
    return bool(pairs) and all(s.acquired and t.acquired and abs((s.acquired - t.acquired).total_seconds())
                               < SAME_ACQUISITION_S for s, t in pairs)


def one_map_per_acquisition(groups: dict[str, list[T1Slice]]) -> tuple[dict[str, list[T1Slice]], list[dict]]:
    """Keep one series per acquisition (the scanner's map over cmr-node's, then more slices, then the lower
    series number); return the kept groups and what was set aside, and why."""
    def preference(series):
        return (series[0].made_by_node, -len(series), series[0].series_number)
    ordered = sorted(groups.values(), key=preference)
    kept: list[list[T1Slice]] = []
    aside = []
    for series in ordered:
        twin = next((k for k in kept if _same_acquisition(series, k)), None)
        if twin is None:
            kept.append(series)
        else:
            aside.append({"series_instance_uid": series[0].series_uid,
                          "reason": f"same acquisition as series {twin[0].series_number} "
                                    f"({twin[0].series_uid}), whose map is used"})
    return {s[0].series_uid: s for s in kept}, aside


def _by_words(series: list[T1Slice]) -> str | None:
    text = series[0].series_description
    native, post = bool(_NATIVE_WORDS.search(text)), bool(_POST_WORDS.search(text))
    return "native" if native and not post else "post" if post and not native else None


def _by_bolus_time(series: list[T1Slice]) -> str | None:
    header = series[0].dataset
    bolus, acquired = header.get("ContrastBolusStartTime"), series[0].acquired
    if not bolus or acquired is None:
        return None
    start = parse_datetime(f"{acquired.strftime('%Y%m%d')}{str(bolus).strip()}")
    if start is None:
        return None
    return "post" if acquired > start else "native"


def _by_physics(series: list[T1Slice], others: list[tuple[list[T1Slice], str | None]]) -> str | None:
    """Blood T1 against another series of a common slice: far longer is native, far shorter post-contrast."""
    for other, role in others:
        pairs = _common(series, other)
        if not pairs:
            continue
        ratios = [r for s, t in pairs if (r := blood_t1_ratio(s.t1_ms, t.t1_ms, s.pixel_mm)) is not None]
        if not ratios:
            continue
        ratio = float(np.median(ratios))
        if ratio >= BLOOD_T1_RATIO and role != "native":
            return "native"
        if ratio <= 1.0 / BLOOD_T1_RATIO and role != "post":
            return "post"
    return None


def classify(groups: dict[str, list[T1Slice]]) -> tuple[list[list[T1Slice]], list[list[T1Slice]], dict]:
    """(native series, post-contrast series, each by acquisition time; how each series was decided and what
    was set aside). Raises InputError when there is no native or no post-contrast acquisition."""
    groups, aside = one_map_per_acquisition(groups)
    roles: dict[str, tuple[str | None, str]] = {}
    for uid, series in groups.items():
        for rule, name in ((_by_words, "Series Description"), (_by_bolus_time, "Contrast/Bolus Start Time")):
            if (role := rule(series)) is not None:
                roles[uid] = (role, name)
                break
        else:
            roles[uid] = (None, "undecided")
    for uid, series in groups.items():
        if roles[uid][0] is None:
            others = sorted(((g, roles[u][0]) for u, g in groups.items() if u != uid),
                            key=lambda pair: pair[1] is None)   # series of known role first
            if (role := _by_physics(series, others)) is not None:
                roles[uid] = (role, "blood T1 against the other acquisitions")
    how = {"series": [{"series_instance_uid": uid, "series_number": groups[uid][0].series_number,
                       "role": role or "undecided", "decided_by": by} for uid, (role, by) in roles.items()],
           "set_aside": aside}

    def when(series):
        return (series[0].acquired is None, series[0].acquired or datetime.min)
    pre = sorted((groups[u] for u, (r, _) in roles.items() if r == "native"), key=when)
    post = sorted((groups[u] for u, (r, _) in roles.items() if r == "post"), key=when)
    if not pre or not post:
        undecided = sum(r is None for r, _ in roles.values())
        raise InputError(f"need a native and a post-contrast T1 map; found {len(groups)} acquisition(s): "
                         f"{len(pre)} native, {len(post)} post-contrast, {undecided} undecided"
                         + (f" ({len(aside)} more map series of the same acquisitions set aside)" if aside else ""))
    return pre, post, how


def native_series(groups: dict[str, list[T1Slice]]) -> list[list[T1Slice]]:
    """The native acquisitions, earliest first: classify's where the study has both roles; else every
    acquisition that neither its words nor its bolus time call post-contrast (a study without contrast)."""
    try:
        return classify(groups)[0]
    except InputError:
        kept, _ = one_map_per_acquisition(groups)
        natives = [series for series in kept.values() if "post" not in (_by_words(series), _by_bolus_time(series))]
        return sorted(natives, key=lambda series: (series[0].acquired is None, series[0].acquired or datetime.min))
