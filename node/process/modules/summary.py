"""Study summary module: the study's own reports and T1 maps -> one RGB Secondary Capture a physician reads in
any PACS viewer (bullseyes per AHA segment, key numbers with reference ranges, quality findings), and the
same page as an Encapsulated PDF where the site asks for it (`summary_pdf`).

Its numbers are read back from the reports' TID 1500 content (node/registry/parse.py), never from the other
modules' memory, so the page shows what the PACS and the registry hold. Of several reports of one module on
the same source series, the latest counts. The T1 maps give the field strength (for the reference ranges)
and say whether a native map has its post-contrast partner. Without any cmr-node report yet the module waits
(no output): the node runs it again when the reports arrive.
"""
from __future__ import annotations

import pydicom

import node
from analysis.quality import MISSING, Finding
from dicom_out import codes
from dicom_out.study_summary import Bullseye, KeyNumber, StudySummary, page_png, render, summary_image, summary_pdf
from node.errors import InputError
from node.inputs.t1_maps import classify, group_by_series, read_t1_maps
from node.inputs.kinds import sop_classes
from node.process.modules import ModuleInput, ModuleOutput
from node.process.modules.output_series import OUTPUT_SERIES
from node.registry.parse import Group, NotAMeasurementReport, ParsedReport, parse_report

SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
SEGMENT_OF_SITE = {(c.value, c.scheme_designator): n for n, c in codes.AHA_SEGMENTS.items()}
# the number a finding is about, in the same Quality control group: patient motion, SNR, fit R2
MEASURED_BY = {codes.QC_FINDINGS["motion"].value: codes.PATIENT_MOTION.value,
               codes.QC_FINDINGS["snr"].value: codes.SIGNAL_TO_NOISE_RATIO.value,
               codes.QC_FINDINGS["fit"].value: codes.FIT_R2.value}


def _current(reports: list[ParsedReport]) -> list[ParsedReport]:
    """The latest report of each producer and source series."""
    latest: dict[tuple[str, str], ParsedReport] = {}
    for r in sorted(reports, key=lambda r: r.content_datetime):
        latest[(r.producer, r.source_series)] = r
    return list(latest.values())


def _measured(group: Group, code, derivation: str | None) -> float | None:
    return next((m.value for m in group.measurements if m.name.value == code.value and m.derivation == derivation),
                None)


def _value(report: ParsedReport, region: str, code, derivation: str | None = "Mean") -> float | None:
    return next((v for g in report.groups if g.region == region
                 if (v := _measured(g, code, derivation)) is not None), None)


def _sd(report: ParsedReport, region: str, code) -> str:
    """'SD 42' of code over the region's voxels, for the note beside its mean."""
    sd = _value(report, region, code, codes.STANDARD_DEVIATION.meaning)
    return "" if sd is None else f"SD {sd:g}"


def _segments(report: ParsedReport, code, derivation: str | None = "Mean", suffix: str = "") -> dict[int, float]:
    """AHA segment number (by the group's finding site, PS3.16 CID 3717) -> code's value there (its mean, or
    with derivation None its single value), from the groups whose label ends with suffix."""
    values = {}
    for group in report.groups:
        number = SEGMENT_OF_SITE.get((group.site.value, group.site.scheme)) if group.site else None
        if number is not None and group.region.endswith(suffix) and \
                (value := _measured(group, code, derivation)) is not None:
            values[number] = value
    return values


def _longest_window(report: ParsedReport) -> str | None:
    """The dDCE report's longest window with AHA segments, as its group-label suffix (", 30-min window")."""
    windows = {g.region.rsplit(", ", 1)[1] for g in report.groups
               if g.site and (g.site.value, g.site.scheme) in SEGMENT_OF_SITE and ", " in g.region}
    return max(windows, key=lambda w: float(w.split("-")[0]), default=None)


def _regional(report: ParsedReport, region: str, code, label: str, unit: str) -> KeyNumber:
    """A regional dDCE value with its 95 % interval; where the data bound it on one side only, no value and
    the bound."""
    group = next((g for g in report.groups if g.region == region), None)
    measured = next((m for m in group.measurements if m.name.value == code.value and m.derivation is None),
                    None) if group else None
    if measured is not None and measured.ci95_low is not None:
        return KeyNumber(label, measured.value, unit, note=f"95 % CI {measured.ci95_low:g}-{measured.ci95_high:g}")
    low, high = (_measured(group, codes.confidence_limit(code, upper), None) if group else None
                 for upper in (False, True))
    if low is None and high is None and group is not None:
        # several slices: one interval each (results.json); the report says whether every slice identifies it
        said = {name.meaning: value.value for name, value in group.evaluations}
        identified = said.get(codes.identifiable(code).meaning) == codes.YES.value
        return KeyNumber(label, None, unit, missing="per slice",
                         note="identified on every slice" if identified else "not identified on every slice")
    bound = f">= {low:g}" if low is not None else f"<= {high:g}" if high is not None else "open both ways"
    return KeyNumber(label, None, unit, note=f"95 % CI {bound}", missing="not identified")


def _ddce(report: ParsedReport, summary: StudySummary) -> None:
    """The regional ve + vp per segment in the longest window with segments (shown only where the data identify
    it), and the LV myocardium's in every window with its interval."""
    window = _longest_window(report)
    if window is not None:
        summary.bullseyes.append(Bullseye(f"dDCE ve + vp, {window}",
                                          _segments(report, codes.VE_PLUS_VP, None, ", " + window), 0.15, 0.45,
                                          decimals=2, missing="no single identified value"))
    for group in report.groups:
        if group.region.startswith("LV myocardium, ") and group.region.endswith(" window"):
            window_label = group.region.removeprefix("LV myocardium, ")
            summary.numbers.append(_regional(report, group.region, codes.VE_PLUS_VP,
                                             f"ve + vp, LV myocardium ({window_label})", ""))


def _lge(report: ParsedReport, summary: StudySummary) -> None:
    region = "LV myocardium (LGE_dDCE)"
    extent = _segments(report, codes.SEGMENT_INFARCT_EXTENT, None, " (LGE_dDCE)")
    if extent:
        summary.bullseyes.append(Bullseye("Infarct extent, synthetic LGE (% of segment)", extent, 0.0, 100.0))
    summary.numbers += [KeyNumber("Infarct size (synthetic LGE)", _value(report, region, codes.INFARCT_SIZE, None), "%"),
                        KeyNumber("Transmurality (synthetic LGE)", _value(report, region, codes.TRANSMURALITY, None), "%"),
                        KeyNumber("MVO (synthetic LGE)", _value(report, region, codes.MVO_SIZE, None), "%")]


def _findings(report: ParsedReport) -> list[str]:
    """The report's quality findings, by their code meanings, with the numbers its QC group measured."""
    lines = []
    for group in report.groups:
        if group.region != "Quality control":
            continue
        measured = {m.name.value: f"{m.name.meaning} {m.value:g}" + ("" if m.unit == "1" else f" {m.unit}")
                    for m in group.measurements}
        for name, value in group.evaluations:
            if (name.value, name.scheme) == (codes.QUALITY_FINDING.value, codes.QUALITY_FINDING.scheme_designator) \
                    and value.value != codes.NO_QUALITY_FINDING.value:
                number = measured.get(MEASURED_BY.get(value.value, ""))
                lines.append(f"{report.producer.removeprefix('cmr-node ')}: {value.meaning}"
                             + (f" ({number})" if number else ""))
    return lines


def _reference(settings, key: str, field_t: float | None) -> tuple[float, float] | None:
    """The site's reference range for a quantity at the study's field strength (keys like native_t1_ms_1.5T)."""
    if field_t is None:
        return None
    return settings.reference_ranges.get(f"{key}_{field_t:g}T")


def _protocol(t1_files: list[str], field: list[float]) -> list[Finding]:
    slices = read_t1_maps(t1_files)
    if not slices:
        return []
    field.append(slices[0].frame.field_strength_t)
    try:
        classify(group_by_series(slices))
    except InputError as exc:
        return [Finding(MISSING, f"T1 maps: {exc}")]
    return []


def build(reports: list[ParsedReport], settings, field_t: float | None, findings: list[str]) -> StudySummary:
    summary = StudySummary(
        heading=f"CMR quantification{f' - {field_t:g} T' if field_t else ''} - cmr-node",
        disclaimer=settings.summary_disclaimer, software=f"cmr-node {node.__version__}",
        sources=sorted({r.producer for r in reports}), findings=findings)
    for r in reports:
        summary.findings += _findings(r)
        if r.producer == "cmr-node ecv":
            t1, ecv = _segments(r, codes.T1), _segments(r, codes.ECV)
            if t1:
                summary.bullseyes.append(Bullseye("Native T1 (ms)", t1, 800.0, 1300.0))
            if ecv:
                summary.bullseyes.append(Bullseye("ECV (%)", ecv, 15.0, 45.0, decimals=1))
            summary.numbers += [
                KeyNumber("Native T1, LV myocardium (mean)", _value(r, "LV myocardium", codes.T1), "ms",
                          _reference(settings, "native_t1_ms", field_t), _sd(r, "LV myocardium", codes.T1)),
                KeyNumber("ECV, LV myocardium (mean)", _value(r, "LV myocardium", codes.ECV), "%",
                          _reference(settings, "ecv_percent", field_t), _sd(r, "LV myocardium", codes.ECV))]
        elif r.producer == "cmr-node t2segments":
            if t2 := _segments(r, codes.T2):
                summary.bullseyes.append(Bullseye("T2 (ms)", t2, 40.0, 70.0))
            summary.numbers.append(KeyNumber("T2, LV myocardium (mean)", _value(r, "LV myocardium", codes.T2), "ms",
                                             _reference(settings, "t2_ms", field_t), _sd(r, "LV myocardium", codes.T2)))
        elif r.producer == "cmr-node ddce":
            _ddce(r, summary)
        elif r.producer == "cmr-node lge":
            _lge(r, summary)
        elif r.producer == "cmr-node oximetry":
            summary.numbers += [KeyNumber("Coronary sinus SbO2", _value(r, "Coronary sinus", codes.VENOUS_OXYGEN_SATURATION, None), "%"),
                                KeyNumber("MVO2", _value(r, "LV myocardium (oxygen consumption)", codes.OXYGEN_CONSUMPTION, None),
                                          "mL/min/g")]
    summary.sources = [s.removeprefix("cmr-node ") + " report" for s in summary.sources]
    return summary


def run(inp: ModuleInput) -> ModuleOutput:
    classes = sop_classes(inp.files)
    reports, reference = [], None
    for f in (f for f, c in classes.items() if c.startswith(SR_PREFIX)):
        ds = pydicom.dcmread(f)
        try:
            parsed = parse_report(ds)
        except NotAMeasurementReport:
            continue
        if parsed.producer.startswith("cmr-node "):
            reports.append(parsed)
            reference = reference or ds
    if not reports:
        return ModuleOutput(results={"module": "summary", "waiting_for": "the study's cmr-node reports"})
    field: list[float] = []
    protocol = _protocol([f for f, c in classes.items() if not c.startswith(SR_PREFIX)], field)
    field_t = next((f for f in field if f), None)
    current = _current(reports)
    summary = build(current, inp.settings, field_t, [f.message for f in protocol])
    pixels = render(summary)
    series = OUTPUT_SERIES["summary.page"]
    description = series.describe()
    output = ModuleOutput(results={
        "module": "summary", "field_strength_t": field_t, "reports": [r.sop_instance_uid for r in current],
        "bullseyes": [{"title": b.title, "segments": {str(k): v for k, v in sorted(b.values.items())}}
                      for b in summary.bullseyes],
        "numbers": [{"label": n.label, "value": n.value, "unit": n.unit,
                     "reference": list(n.reference) if n.reference else None,
                     "outside_reference": n.outside() or None} for n in summary.numbers],
        "quality_flags": summary.findings})
    output.datasets.append(summary_image(pixels, reference, job_key=inp.job_key, series_number=series.number(),
                                         description=description, summary=summary))
    if inp.settings.summary_pdf:
        output.datasets.append(summary_pdf(pixels, reference, job_key=inp.job_key,
                                           series_number=OUTPUT_SERIES["summary.pdf"].number(),
                                           description=OUTPUT_SERIES["summary.pdf"].describe(), summary=summary))
    output.previews["summary.png"] = page_png(pixels)
    return output
