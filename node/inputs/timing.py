"""Where scanners write the preparation time of each image: the inversion time of a raw MOLLI / ShMOLLI /
Look-Locker image, and the T2-preparation duration of a raw T2-prepared image.

Sources are tried in order; a module takes the first source that gives a distinct, plausible value for
every image of a slice, and reports which it used.
"""
from __future__ import annotations

import re

from node.inputs.frames import Frame
from node.inputs.vendors import philips_inversion_delay

# "TI 123", "TI=123", "TIeff 123 ms" (Siemens ShMOLLI), in Image Comments (0020,4000)
_TI_COMMENT = re.compile(r"(?i)\bTI(?:eff)?\s*[:=]?\s*(\d+(?:\.\d+)?)")
_T2PREP_COMMENT = re.compile(r"(?i)T2\s*-?\s*prep\w*\.?\s*(?:duration)?\s*[:=]?\s*(\d+(?:\.\d+)?)")


def _from_comment(pattern: re.Pattern):
    def get(frame: Frame) -> float | None:
        match = pattern.search(frame.comments)
        return float(match.group(1)) if match else None
    return get


INVERSION_TIME_SOURCES = (
    ("Inversion Times (0018,9079) of the frame", lambda f: f.time_ms("InversionTimes")),
    ("Inversion Time (0018,0082)", lambda f: f.time_ms("InversionTime")),
    ("Philips Inversion Delay Time (2005,xx72)", philips_inversion_delay),
    ("Image Comments (0020,4000)", _from_comment(_TI_COMMENT)),
    ("Trigger Time (0018,1060)", lambda f: f.time_ms("TriggerTime")),
)
# The sources above that say an inversion pulse was played (Trigger Time alone does not: cine has it too).
INVERSION_EVIDENCE = INVERSION_TIME_SOURCES[:-1]

T2PREP_TIME_SOURCES = (
    ("Image Comments (0020,4000)", _from_comment(_T2PREP_COMMENT)),
    ("Effective Echo Time (0018,9082) of the frame", lambda f: f.time_ms("EffectiveEchoTime")),
    ("Echo Time (0018,0081)", lambda f: f.time_ms("EchoTime")),
)


def has_inversion(frame: Frame) -> bool:
    """The frame was acquired after an inversion pulse: Scanning Sequence or Scan Options IR, Inversion
    Recovery (0018,9009) YES, or an inversion time in any of the places scanners write it."""
    for keyword in ("ScanningSequence", "ScanOptions"):
        value = frame.value(keyword)
        values = [value] if isinstance(value, str) else list(value or [])
        if "IR" in [str(v).strip().upper() for v in values]:
            return True
    if str(frame.value("InversionRecovery") or "").upper() == "YES":
        return True
    return any((value := get(frame)) is not None and value > 0 for _, get in INVERSION_EVIDENCE)


def has_t2_preparation(frame: Frame) -> bool:
    return _from_comment(_T2PREP_COMMENT)(frame) is not None


def first_time(frame: Frame, sources) -> float | None:
    """The frame's value from the first source that has one."""
    for _, get in sources:
        value = get(frame)
        if value is not None:
            return value
    return None
