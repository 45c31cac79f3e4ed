"""The quantification modules a route can name.

A module is the glue between the node and the physics: it reads the DICOM
inputs (node side), calls `analysis/` for the numbers and `dicom_out/` for the
objects, and returns both. Modules are imported lazily, inside the worker
process, so that the node's receive path never loads the fitting code.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import pydicom

from node.settings import ModuleSettings


@dataclass(frozen=True)
class ModuleSpec:
    name: str
    version: str          # part of every output UID: a new version gives new objects
    scope: str            # default route scope: "series" or "study"
    entry_point: str      # "package.module:function"
    kinds: tuple[str, ...]   # the series kinds it reads (node/inputs/kinds.py); a route gives it no other

    def load(self) -> Callable:
        module_name, func = self.entry_point.split(":")
        return getattr(importlib.import_module(module_name), func)


@dataclass
class ModuleInput:
    """What the node hands a module: files of the matched series and settings."""
    study_uid: str
    files: list[str]
    settings: ModuleSettings   # the [inputs] section with the study's own values merged over it
    job_key: str          # deterministic digest of the inputs; seeds output UIDs
    final: bool = False   # a study-so-far route's last run, after the study completed with its module waiting


@dataclass
class ModuleOutput:
    datasets: list[pydicom.Dataset] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    reingest: list[str] = field(default_factory=list)   # SOP Instance UIDs the node takes back in as input
    previews: dict[str, bytes] = field(default_factory=dict)   # PNG file name -> content, written, never sent


MODULES: dict[str, ModuleSpec] = {spec.name: spec for spec in (
    ModuleSpec("ecv", "1.2", "study", "node.process.modules.ecv:run", ("t1_map", "segmentation")),
    ModuleSpec("ddce", "1.3", "study-so-far", "node.process.modules.ddce:run", ("t1_map", "perfusion")),
    ModuleSpec("molli", "1.1", "series", "node.process.modules.molli:run", ("t1_raw",)),
    ModuleSpec("t2map", "1.1", "series", "node.process.modules.t2map:run", ("t2_raw",)),
    ModuleSpec("lge", "1.2", "study-so-far", "node.process.modules.lge:run", ("t1_map", "segmentation")),
    ModuleSpec("oximetry", "1.1", "study-so-far", "node.process.modules.oximetry:run",
               ("t2_raw", "segmentation", "rt_structure_set")),
    ModuleSpec("t2segments", "1.0", "study", "node.process.modules.t2segments:run",
               ("t2_map", "t1_map", "segmentation")),
    ModuleSpec("summary", "1.1", "study", "node.process.modules.summary:run", ("report", "t1_map")),
)}
