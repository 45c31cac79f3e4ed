"""First-pass perfusion series as the node reads them: per slice, the saturation-recovery frames with their
times after the injection, the saturation delay, the flip angles and any proton-density frames.

Conventions (what scanners write):
- Saturation delay TS: Inversion Time (0018,0082) (GE writes it there, 130.8 ms on every frame), else
  "TS 100 ms", "TD = 100 ms" or "sat delay 100 ms" in Image Comments (Siemens-like).
- Time of a frame: its acquisition date-time (node/inputs/frames.Frame.acquired). Where the frames of a slice
  do not all have distinct times (an export that keeps one Acquisition Time), GE's Trigger Time, which
  counts from the start of the series, added to the first frame's time.
- Proton-density frames: the leading frames acquired at a smaller Flip Angle (0018,1314) than the rest
  (with or without a saturation delay written on them); a series without them has none. Saturation-
  recovery frames at more than one flip angle after them are refused with the reason.
- Slices: frames grouped by position along the normal (analysis/geometry.same_slice).
What is missing is said in words (`problems`), never guessed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from analysis.geometry import group_by_slice
from node.inputs.frames import Frame
from node.inputs.kinds import classify_files, frames_of_kinds
from node.inputs.vendors import PERFUSION

_TS_IN_COMMENTS = re.compile(r"\b(?:TS|TD|sat(?:uration)?\.?\s*delay)\s*[=:]?\s*(\d+(?:\.\d+)?)\s*ms", re.I)


@dataclass
class FirstPassSlice:
    series_uid: str
    position_mm: float
    frames: list[Frame]               # saturation-recovery frames in time order
    times_s: np.ndarray               # (F,) s after the injection
    ts_ms: float | None               # saturation delay
    flip_deg: float | None
    pd_frames: list[Frame] = field(default_factory=list)
    pd_flip_deg: float | None = None

    def signal(self) -> np.ndarray:
        return np.stack([f.values() for f in self.frames])

    def pd_signal(self) -> np.ndarray | None:
        return np.stack([f.values() for f in self.pd_frames]) if self.pd_frames else None

    @property
    def shape(self) -> tuple[int, int]:
        return self.frames[0].stored().shape


def saturation_delay_ms(frame: Frame) -> float | None:
    if (ti := frame.time_ms("InversionTime")) is not None and ti > 0:
        return ti
    found = _TS_IN_COMMENTS.search(frame.comments)
    return float(found.group(1)) if found else None


def _flip(frame: Frame) -> float | None:
    try:
        return float(frame.value("FlipAngle"))
    except (TypeError, ValueError):
        return None


def _times_s(frames: list[Frame], injection: datetime) -> np.ndarray | None:
    """Seconds after the injection per frame, or None when the frames carry no distinct times."""
    acquired = [f.acquired for f in frames]
    if all(a is not None for a in acquired) and len({a for a in acquired}) == len(acquired):
        return np.array([(a - injection).total_seconds() for a in acquired if a is not None])
    trigger = [f.time_ms("TriggerTime", upper=np.inf) for f in frames]
    if acquired[0] is not None and all(t is not None for t in trigger) and len(set(trigger)) == len(trigger):
        start = (acquired[0] - injection).total_seconds()
        return np.array([start + (t - trigger[0]) / 1000.0 for t in trigger if t is not None])
    return None


def _one_slice(frames: list[Frame], injection: datetime) -> tuple[FirstPassSlice | None, str | None]:
    flips = [_flip(f) for f in frames]
    known = [a for a in flips if a is not None]
    main_flip = float(np.median(known)) if known else None
    n_pd = 0          # (some sequences write the saturation delay on their PD frames too: the flip angle decides)
    while n_pd < len(frames) and main_flip is not None and flips[n_pd] is not None \
            and flips[n_pd] < main_flip - 1e-6:
        n_pd += 1
    pd, sr = frames[:n_pd], frames[n_pd:]
    if len({a for a in flips[n_pd:]}) > 1:
        return None, (f"first-pass slice at {frames[0].position_mm:.1f} mm: its saturation-recovery frames have "
                      f"different flip angles ({', '.join(sorted({f'{a:g}' for a in known}))})")
    times = _times_s(sr, injection)
    position = sr[0].position_mm
    if times is None:
        return None, f"first-pass slice at {position:.1f} mm: its frames carry no distinct acquisition or trigger times"
    order = np.argsort(times)
    sr, times = [sr[i] for i in order], times[order]
    delays = {saturation_delay_ms(f) for f in sr}
    ts = delays.pop() if len(delays) == 1 else None
    if ts is None:
        return None, (f"first-pass slice at {position:.1f} mm: no single saturation delay (Inversion Time, or "
                      "'TS ... ms' in Image Comments)")
    return FirstPassSlice(series_uid=sr[0].series_uid, position_mm=position, frames=sr, times_s=times, ts_ms=ts,
                          flip_deg=main_flip, pd_frames=pd, pd_flip_deg=_flip(pd[0]) if pd else None), None


def read_first_pass(paths: list[str], injection: datetime) -> tuple[list[FirstPassSlice], list[str]]:
    """Every first-pass perfusion slice among the files, and what stops any other from being used."""
    slices, problems = [], []
    # headers first: the pixels of the study's T1 maps need not be read again to find no first pass
    paths = list(dict.fromkeys(f.instance.path for series in classify_files(paths)
                               for f in series.frames.get(PERFUSION, [])))
    frames = [f for f in frames_of_kinds(paths, [PERFUSION]) if f.has_geometry] if paths else []
    by_series: dict[str, list[Frame]] = {}
    for f in frames:
        by_series.setdefault(f.series_uid, []).append(f)
    for members in by_series.values():
        for group in group_by_slice(members, lambda f: f.position_mm):
            group.sort(key=lambda f: (f.acquired or datetime.min, int(f.header.get("InstanceNumber", 0) or 0),
                                      f.number or 0))
            found, problem = _one_slice(group, injection)
            if found is not None:
                slices.append(found)
            if problem is not None:
                problems.append(problem)
    return slices, problems
