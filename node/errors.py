"""Two kinds of failure, and the step a job failed in.

- Input not usable (`InputError` from the node's readers and modules, `AnalysisError` from analysis/):
  the data cannot give this result. The job fails with kind "input" and the exception's message, one
  line a physicist can act on ("need a native and a post-contrast T1 map; found ...").
- Internal error (anything else): a defect of cmr-node. The traceback goes to the log with a short
  reference; the job keeps the reference and the step, never a class name or a traceback.

The step is where the exception was raised, from the package of the innermost frame of ours:
node/inputs/ reads, analysis/ computes, dicom_out/ builds, the job runner writes.
"""
from __future__ import annotations

import secrets
import traceback
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from analysis.errors import AnalysisError

_ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = ("node/", "analysis/", "dicom_out/")   # ours, as opposed to a virtual environment beside them


class InputError(ValueError):
    """The inputs cannot give this result; the message says why in one line."""


class FailureKind(StrEnum):
    INPUT = "input"          # input not usable: the message is for the person who scanned
    INTERNAL = "internal"    # a defect: traceback in the log under the reference


class Step(StrEnum):
    READ = "read inputs"
    COMPUTE = "compute"
    BUILD = "build outputs"
    WRITE = "write outputs"
    RUN = "run module"


# Where the innermost frame of ours is -> step. A module's own code reads its inputs and calls the rest, so
# an input error raised there is a read, anything else a run.
_STEP_OF_PLACE = (("node/inputs/", Step.READ), ("analysis/", Step.COMPUTE), ("dicom_out/", Step.BUILD),
                  ("node/process/jobs.py", Step.WRITE), ("node/process/offline.py", Step.WRITE))


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    step: Step
    reason: str                  # one line; for an internal error it points to the log
    reference: str | None = None  # internal errors: the word to look for in the node's log

    def as_dict(self) -> dict:
        return {key: (str(value) if value is not None else None) for key, value in asdict(self).items()}


def step_of(exc: BaseException) -> Step:
    """The step the exception was raised in (from the innermost frame in this repository)."""
    paths = [Path(frame.filename).resolve() for frame in traceback.extract_tb(exc.__traceback__)]
    ours = [path.relative_to(_ROOT).as_posix() for path in paths if path.is_relative_to(_ROOT)]
    ours = [place for place in ours if place.startswith(_PACKAGES)]
    place = ours[-1] if ours else ""
    step = next((step for prefix, step in _STEP_OF_PLACE if place.startswith(prefix)), None)
    return step or (Step.READ if isinstance(exc, InputError) else Step.RUN)


def is_input_error(exc: BaseException) -> bool:
    return isinstance(exc, (InputError, AnalysisError))


def failure_of(exc: BaseException) -> Failure:
    """Classify an exception raised while running a module."""
    step = step_of(exc)
    if is_input_error(exc):
        reason = " ".join(str(exc).split()) or "input not usable"
        return Failure(FailureKind.INPUT, step, reason)
    reference = secrets.token_hex(4)
    return Failure(FailureKind.INTERNAL, step,
                   f"internal error while the module was at step '{step}'; see the node log, reference {reference}",
                   reference)
