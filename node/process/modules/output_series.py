"""Every output series the modules write: one table of series numbers and descriptions.

Series numbers let a person find the node's output in a viewer's series list; each output owns a block of
numbers (one per source series, window or slice group it is made for) and no two blocks overlap, nor do
the blocks of the viewer companions of Parametric Maps (grayscale +1000, colour +2000;
tests/test_output_tables.py checks it). A description starting with a space or "_" is a suffix to the
source series' own description (dicom_out/descriptions.py keeps it whole within 64 bytes).
"""
from __future__ import annotations

from dataclasses import dataclass

VIEWER_OFFSETS = {"grayscale": 1000, "colour": 2000}   # added to a Parametric Map's number


@dataclass(frozen=True)
class OutputSeries:
    first: int            # series number of the first of the block
    count: int            # numbers the block owns: first .. first + count - 1
    description: str      # Series Description, a template with {fields}, or a suffix (starts with " " or "_")
    parametric_map: bool = False   # has viewer companions

    def number(self, index: int = 0) -> int:
        """The series number for the index-th one (source series, window, ...); wraps within the block."""
        return self.first + index % self.count

    def describe(self, **fields) -> str:
        return self.description.format(**fields)


OUTPUT_SERIES: dict[str, OutputSeries] = {
    "ecv.map": OutputSeries(9000, 50, "ECV map (cmr-node)", parametric_map=True),
    "ecv.regions": OutputSeries(9050, 50, "ECV regions (cmr-node)"),
    "ecv.segments": OutputSeries(9750, 50, "ECV AHA segments (cmr-node)"),
    "ddce.maps": OutputSeries(9100, 90, "dDCE {window:g}min {label}", parametric_map=True),  # 10 × window + map
    "ddce.regions": OutputSeries(9190, 1, "dDCE regions (cmr-node)"),
    "ddce.identified": OutputSeries(9191, 9, "dDCE {window:g}min identified (cmr-node)"),   # by window
    "ddce.segments": OutputSeries(9200, 1, "dDCE AHA segments (cmr-node)"),
    "molli.t1": OutputSeries(9300, 50, " T1 (cmr-node)", parametric_map=True),   # by source series number
    "molli.residual": OutputSeries(9350, 50, " T1 residual (cmr-node)", parametric_map=True),
    "molli.scanner_like_t1": OutputSeries(9400, 100, "_T1MAP_cmrnode"),   # taken back in; sites route on it
    "t2map.t2": OutputSeries(9500, 1, " T2 (cmr-node)", parametric_map=True),
    "t2map.residual": OutputSeries(9501, 1, " T2 residual (cmr-node)", parametric_map=True),
    "t2map.scanner_like_t2": OutputSeries(9510, 40, "_T2MAP_cmrnode"),   # taken back in, by source series number
    "t2segments.regions": OutputSeries(9550, 1, "T2 regions (cmr-node)"),
    "t2segments.segments": OutputSeries(9551, 1, "T2 AHA segments (cmr-node)"),
    "oximetry.so2": OutputSeries(9600, 1, "SO2 map (cmr-node)", parametric_map=True),
    "lge.psir": OutputSeries(9700, 1, "LGE_dDCE {target:g}min PSIR (cmr-node)"),
    "lge.magnitude": OutputSeries(9701, 1, "LGE_dDCE {target:g}min IR (cmr-node)"),
    "lge.regions": OutputSeries(9702, 1, "LGE_dDCE regions (cmr-node)"),
    "lge.standard": OutputSeries(9703, 1, "LGE_standard {target:g}min PSIR (cmr-node)"),
    "lge.segments": OutputSeries(9704, 1, "LGE_dDCE AHA segments (cmr-node)"),
    "summary.page": OutputSeries(9800, 1, "CMR summary (cmr-node)"),
    "summary.pdf": OutputSeries(9801, 1, "CMR summary PDF (cmr-node)"),
    **{f"{module}.report": OutputSeries(9900 + k, 1, " report (cmr-node)")
       for k, module in enumerate(("ecv", "ddce", "molli", "t2map", "oximetry", "lge", "t2segments"), start=1)},
}


def output_series(name: str) -> OutputSeries:
    return OUTPUT_SERIES[name]
