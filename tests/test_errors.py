"""Two kinds of failure: an input a physicist can fix, and a defect with its traceback in the log only."""
import json
import logging

import numpy as np
import pytest

from analysis.ecv import ecv_map
from analysis.errors import AnalysisError
from analysis.phantoms.t1_ecv import ecv_phantom
from node.errors import FailureKind, InputError, Step, failure_of
from node.inputs.t1_maps import read_t1_maps
from node.process.jobs import ModuleFailed, execute_job
from node.settings import ModuleSettings


def _raised(call):
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("nothing raised")


def test_unusable_input_is_kind_input_at_the_read_step():
    exc = _raised(lambda: read_t1_maps([]))
    failure = failure_of(exc)
    assert isinstance(exc, InputError)
    assert (failure.kind, failure.step, failure.reference) == (FailureKind.INPUT, Step.READ, None)
    assert failure.reason == "no T1 map among the 0 input files"


def test_data_the_physics_cannot_use_is_kind_input_at_the_compute_step():
    p = ecv_phantom()
    exc = _raised(lambda: ecv_map(p.t1_post_ms, p.t1_pre_ms, 0.42, pixel_mm=p.pixel_mm))   # swapped: blood R1 falls
    failure = failure_of(exc)
    assert isinstance(exc, AnalysisError) and isinstance(exc, ValueError)   # old handlers still catch it
    assert (failure.kind, failure.step) == (FailureKind.INPUT, Step.COMPUTE)
    assert failure.reason == str(exc) == "no round, bright structure of blood-pool size near the centre"


def test_a_caller_mistake_in_analysis_is_internal():
    exc = _raised(lambda: ecv_map(np.ones((4, 4)), np.ones((5, 5)), 0.42, pixel_mm=1.5))
    assert type(exc) is ValueError
    assert failure_of(exc).kind is FailureKind.INTERNAL


def test_internal_error_keeps_the_traceback_in_the_log_and_a_reference_in_the_job(tmp_path, caplog):
    """A file the index lists but that is gone is a defect, not the scanner's doing."""
    caplog.set_level(logging.WARNING, logger="cmr_node")
    with pytest.raises(ModuleFailed) as raised:
        execute_job(7, "ecv", "1.2.3", [str(tmp_path / "gone.dcm")], ModuleSettings(), "key", str(tmp_path))
    failure = raised.value.failure
    assert (failure.kind, failure.step) == (FailureKind.INTERNAL, Step.READ)
    assert failure.reference and failure.reference in failure.reason
    assert "Error" not in failure.reason and "Traceback" not in failure.reason
    logged = [r for r in caplog.records if failure.reference in r.getMessage()]
    assert logged and logged[0].exc_info and logged[0].exc_info[0] is FileNotFoundError
    results = json.loads((tmp_path / "7" / "results.json").read_text())
    assert results == {"state": "failed", "failure": failure.as_dict()}
    assert not list(tmp_path.glob("7.*partial"))


def test_module_failed_crosses_the_process_boundary():
    import pickle
    exc = ModuleFailed("input", "compute", "no remote myocardium", None)
    again = pickle.loads(pickle.dumps(exc))
    assert again.failure == exc.failure and str(again) == "no remote myocardium"
