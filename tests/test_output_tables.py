"""One table of output series (numbers, descriptions) and one of map quantities (units): no collisions, no drift."""
import itertools
import re
from pathlib import Path

import pytest

from analysis.ddce import MAP_UNITS
from dicom_out.quantities import QUANTITIES
from node.process.modules.output_series import OUTPUT_SERIES, VIEWER_OFFSETS

# UCUM (unitsofmeasure.org) code of a quantity in the analysis unit times the scale: a fraction times 100 is
# percent "%", a fraction or a ratio of like quantities is the unity "1", ms and ml/min/g are themselves.
UCUM = {("fraction", 100.0): "%", ("fraction", 1.0): "1", ("1", 1.0): "1", ("ms", 1.0): "ms",
        ("mL/min/g", 1.0): "ml/min/g"}


def _blocks():
    for name, series in OUTPUT_SERIES.items():
        yield name, range(series.first, series.first + series.count)
        if series.parametric_map:
            for kind, offset in VIEWER_OFFSETS.items():
                yield f"{name} ({kind} view)", range(series.first + offset, series.first + offset + series.count)


def test_no_two_outputs_share_a_series_number():
    for (a, block_a), (b, block_b) in itertools.combinations(_blocks(), 2):
        assert not set(block_a) & set(block_b), f"{a} and {b} share series numbers"


def test_a_series_number_stays_in_its_block():
    """A MOLLI source series 57 once gave T1 map 9357, the residual block of source series 7."""
    t1, residual = OUTPUT_SERIES["molli.t1"], OUTPUT_SERIES["molli.residual"]
    for source_series in (7, 57, 1057):
        assert t1.number(source_series) in range(t1.first, t1.first + t1.count)
        assert residual.number(source_series) in range(residual.first, residual.first + residual.count)


def test_modules_take_every_series_number_from_the_table():
    modules = Path(__file__).parent.parent / "node" / "process" / "modules"
    for path in modules.glob("*.py"):
        if path.name != "output_series.py":
            literals = re.findall(r"series_number=\s*\d+|\b9\d{3}\b(?!\d)", re.sub(r"#.*|\"[^\"]*\"", "",
                                                                                   path.read_text()))
            assert not literals, f"{path.name} writes series numbers outside the table: {literals}"


@pytest.mark.parametrize("name", sorted(QUANTITIES))
def test_each_map_unit_is_the_ucum_code_of_the_analysis_unit(name):
    q = QUANTITIES[name]
    assert q.map.unit.scheme_designator == "UCUM"
    assert q.map.unit.value == UCUM[(q.analysis_unit, q.scale)]


@pytest.mark.parametrize("name", sorted(MAP_UNITS))
def test_ddce_maps_are_in_the_unit_analysis_states(name):
    assert QUANTITIES[name].analysis_unit == MAP_UNITS[name]


def test_labels_and_explanations_fit_their_dicom_lengths():
    for name, q in QUANTITIES.items():
        assert len(q.map.lut_label) <= 16 and len(q.map.explanation) <= 64, name   # SH and LO
