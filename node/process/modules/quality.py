"""Quality control of what a module measured: findings (analysis/quality.py) and the numbers checked, for
results.json ("quality_flags") and for a "Quality control" group in the module's report.

The group (TID 1501, over the module's source images) holds the numbers checked (patient motion in mm,
SNR, fit R^2) and one evaluation DCM 111052 "Quality Finding" per kind of finding (private codes QC-...),
or QC-NONE "No quality finding": an absent finding is said, not left to be guessed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from analysis.quality import REGION, Finding, snr
from dicom_out import codes
from dicom_out.report import Evaluation, Measure, RegionGroup


@dataclass
class QualityControl:
    findings: list[Finding] = field(default_factory=list)
    measures: list[Measure] = field(default_factory=list)

    def add(self, finding: Finding | None) -> None:
        if finding is not None:
            self.findings.append(finding)

    def regions(self, messages: list[str]) -> None:
        """Regions a module could not find (no myocardium, no septum), from their messages."""
        self.findings += [Finding(REGION, m) for m in messages]

    def measured(self, name, value: float | None, unit, decimals: int = 2) -> None:
        if value is not None:
            self.measures.append(Measure(name, round(float(value), decimals), unit))

    def flags(self) -> list[str]:
        return [f.message for f in self.findings]

    def group(self, images: list) -> RegionGroup:
        kinds = list(dict.fromkeys(f.check for f in self.findings))
        evaluations = [Evaluation(codes.QUALITY_FINDING, codes.QC_FINDINGS[k]) for k in kinds] or \
            [Evaluation(codes.QUALITY_FINDING, codes.NO_QUALITY_FINDING)]
        return RegionGroup("Quality control", codes.QUALITY_ASSESSMENT, images=images, measures=list(self.measures),
                           evaluations=evaluations)


def raw_images_snr(slices, minimum: float, what: str) -> QualityControl:
    """The SNR of a series' raw magnitude images (each slice's brightest image; the lowest over slices, as the
    measure), with a finding for every slice below minimum. slices: node.inputs.prepared_images slices."""
    quality = QualityControl()
    values = []
    for s in slices:
        value, finding = snr(s.images, minimum, f"{what} at {s.position_mm:.1f} mm")
        quality.add(finding)
        if value is not None:
            values.append(value)
    quality.measured(codes.SIGNAL_TO_NOISE_RATIO, min(values) if values else None, codes.UNIT_NONE, decimals=1)
    return quality
