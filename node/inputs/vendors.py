"""Vendor conventions, one table per vendor: how a frame's headers say what it is.

Each rule is (kind, why, test on a Frame); the first rule that holds decides the frame's kind. Vendor
tables are tried before the generic one (kinds.GENERIC_RULES). A rule whose kind is MAGNITUDE leaves
the decision to the series' structure (kinds.py: inversion times, frames per slice, time span).
Sources are named per rule; where a convention is inferred, not documented, the rule says so.

Sources:
- dcm2niix (rordenlab/dcm2niix, console/nii_dicom.cpp, Philips/README.md, GE/README.md): phase, real,
  imaginary from Image Type values and GE (0043,102F); Philips scaling.
- dcm4che private dictionaries (Philips-MR-Imaging-DD-006.xml: (2005,xx72) Inversion Delay Time, FL;
  GEMS_PARM_01.xml: (0043,xx2F) Image Type, SS 0 magnitude 1 phase 2 real 3 imaginary).
- PMI-0.4 / iBEAt import scripts (plaresmedima/PMI-0.4): Philips raw IR `M_FFE\\M\\FFE` sorted by (2005,1572);
  Siemens raw `M\\DIS2D`, MOCO, `DERIVED\\PRIMARY\\T1 MAP\\MOCO\\T1\\DIS2D`.
- MRKonrad/tomato test data (../shared/reference-data/vendor): Siemens ShMOLLI WIP series `_T1MAP`
  (Image Type value 3 P on the map) and `_FITPARAMS`.
- rohanshad/cmr_toolkit series_descriptions_master.csv: GE inline maps named `MOLLI_<desc>`,
  `SMART1Map_<desc>`; phase-sensitive MDE as `MAG:<desc>` and `PS:<desc>`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from node.inputs.frames import Frame, private_value

# kinds (kinds.py documents each)
T1_RAW, T1_MAP, T2_RAW, T2_MAP = "t1_raw", "t1_map", "t2_raw", "t2_map"
LGE, PERFUSION, CINE = "lge", "perfusion", "cine"
PHASE, REAL, IMAGINARY = "phase", "real", "imaginary"
OTHER = "other"
MAGNITUDE = "magnitude"   # not a kind: decided from the series' structure


@dataclass(frozen=True)
class Rule:
    kind: str
    why: str
    applies: Callable[[Frame], bool]


def _value(frame: Frame, index: int) -> str:
    """Image Type value index+1 ('' when absent)."""
    values = frame.image_type
    return values[index] if len(values) > index else ""


def _description(frame: Frame) -> str:
    return frame.series_description.strip().upper()


# ---- Philips ------------------------------------------------------------------------------------------
PHILIPS_TI_CREATOR = "Philips MR Imaging DD 006"   # (2005,15xx) on the scanners we know of; found by creator


def philips_inversion_delay(frame: Frame) -> float | None:
    """Philips Inversion Delay Time (2005,xx72, FL, ms): the TI of each raw MOLLI / Look-Locker image, where
    Inversion Time (0018,0082) is absent and Trigger Time is the same on every image."""
    for item in frame.private_items():
        value = private_value(item, 0x2005, PHILIPS_TI_CREATOR, 0x72, "<f")
        if value is not None:
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if 0.0 < value < 10000.0:
                return value
    return None


PHILIPS = (
    Rule(PHASE, "Philips Image Type value 3 PHASE MAP / value 4 P",
         lambda f: _value(f, 2) == "PHASE MAP" or _value(f, 3) == "P"),
    Rule(REAL, "Philips Image Type value 3 R_<technique> / value 4 R",
         lambda f: _value(f, 2).startswith("R_") or _value(f, 3) == "R"),
    Rule(IMAGINARY, "Philips Image Type value 3 I_<technique> / value 4 I",
         lambda f: _value(f, 2).startswith("I_") or _value(f, 3) == "I"),
    Rule(T1_MAP, "Philips inline T1 map: Image Type ORIGINAL\\PRIMARY\\T1 MAP\\T1 (values in ms by its Real World "
                 "Value Mapping); Philips keeps it in the series of the raw images",
         lambda f: _value(f, 2) == "T1 MAP"),
    Rule(T2_MAP, "Philips inline T2 map: Image Type value 3 T2 MAP", lambda f: _value(f, 2) == "T2 MAP"),
    Rule(MAGNITUDE, "Philips magnitude image: Image Type value 3 M_<technique> (M_FFE, M_IR, M_SE)",
         lambda f: _value(f, 2).startswith("M_")),
)

# ---- Siemens ------------------------------------------------------------------------------------------
SIEMENS = (
    Rule(OTHER, "Siemens ShMOLLI colour rendition of the T1 map (series _T1MAP, Image Comments 'color')",
         lambda f: _description(f).endswith("_T1MAP") and "COLOR" in f.comments.upper()),
    Rule(T1_MAP, "Siemens ShMOLLI inline T1 map: series _T1MAP, values in ms (its Image Type says P, it is not "
                 "a phase image)", lambda f: _description(f).endswith("_T1MAP")),
    Rule(OTHER, "Siemens ShMOLLI fit parameters (R², A, B, T1*, ...): series _FITPARAMS",
         lambda f: _description(f).endswith("_FITPARAMS")),
    Rule(OTHER, "Siemens _T1S series: a secondary map beside the T1 map, not the T1 map",
         lambda f: bool(re.search(r"_T1S$", _description(f)))),
    # value 3 P (phase) is the generic rule in kinds.py, after this table: the _T1MAP rule above must win
    Rule(REAL, "Siemens Image Type value 3 R", lambda f: _value(f, 2) == "R"),
    Rule(IMAGINARY, "Siemens Image Type value 3 I", lambda f: _value(f, 2) == "I"),
    Rule(T1_MAP, "Siemens MyoMaps inline T1 map: DERIVED, series _MOCO_T1 or _T1MAP",
         lambda f: _value(f, 0) == "DERIVED" and bool(re.search(r"(_MOCO_T1|T1MAP)$", _description(f)))),
)

# ---- GE -----------------------------------------------------------------------------------------------
GE_IMAGE_TYPE = {1: PHASE, 2: REAL, 3: IMAGINARY}   # (0043,xx2F): 0 magnitude


def ge_image_kind(frame: Frame) -> str | None:
    """GE Private Image Type (0043,xx2F, SS, creator GEMS_PARM_01): phase, real, imaginary, or None."""
    value = private_value(frame.header, 0x0043, "GEMS_PARM_01", 0x2F, "<h")
    try:
        return GE_IMAGE_TYPE.get(int(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


GE = (
    Rule(PHASE, "GE Private Image Type (0043,102F) = 1", lambda f: ge_image_kind(f) == PHASE),
    Rule(REAL, "GE Private Image Type (0043,102F) = 2", lambda f: ge_image_kind(f) == REAL),
    Rule(IMAGINARY, "GE Private Image Type (0043,102F) = 3", lambda f: ge_image_kind(f) == IMAGINARY),
    Rule(T1_MAP, "GE inline T1 map: a series named MOLLI_<source> or SMART1Map_<source>",
         lambda f: bool(re.match(r"(MOLLI|SMART1MAP)_", _description(f)))),
    Rule(LGE, "GE phase-sensitive MDE: series MAG:<name> and PS:<name>",
         lambda f: bool(re.match(r"(MAG|PS):", _description(f)))),
)

VENDOR_RULES = {"siemens": SIEMENS, "philips": PHILIPS, "ge": GE}
