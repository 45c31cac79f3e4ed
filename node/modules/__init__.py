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


@dataclass(frozen=True)
class ModuleSpec:
    name: str
    version: str          # part of every output UID: a new version gives new objects
    scope: str            # default route scope: "series" or "study"
    entry_point: str      # "package.module:function"

    def load(self) -> Callable:
        module_name, func = self.entry_point.split(":")
        return getattr(importlib.import_module(module_name), func)


@dataclass
class ModuleInput:
    """What the node hands a module: files of the matched series and settings."""
    study_uid: str
    files: list[str]
    settings: dict
    job_key: str          # deterministic digest of the inputs; seeds output UIDs


@dataclass
class ModuleOutput:
    datasets: list[pydicom.Dataset] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    reingest: list[str] = field(default_factory=list)   # SOP Instance UIDs the node takes back in as input
    previews: dict[str, bytes] = field(default_factory=dict)   # PNG file name -> content, written, never sent


MODULES: dict[str, ModuleSpec] = {
    "ecv": ModuleSpec(name="ecv", version="1.0", scope="study", entry_point="node.modules.ecv:run"),
    "ddce": ModuleSpec(name="ddce", version="1.0", scope="study-so-far", entry_point="node.modules.ddce:run"),
    "molli": ModuleSpec(name="molli", version="1.0", scope="series", entry_point="node.modules.molli:run"),
    "t2map": ModuleSpec(name="t2map", version="1.0", scope="series", entry_point="node.modules.t2map:run"),
    "lge": ModuleSpec(name="lge", version="1.0", scope="study-so-far", entry_point="node.modules.lge:run"),
    "oximetry": ModuleSpec(name="oximetry", version="1.0", scope="study-so-far",
                           entry_point="node.modules.oximetry:run"),
}
