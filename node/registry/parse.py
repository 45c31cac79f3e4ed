"""Reading a TID 1500 Measurement Report into plain rows, from the SR itself and nothing else.

Works for any system's report, not only cmr-node's: highdicom parses the
template (Enhanced, Comprehensive and Comprehensive 3D SR); a report without a
Content Template Sequence is still recognised by its title, (126000, DCM)
"Imaging Measurement Report".
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import highdicom as hd
from pydicom.dataset import Dataset

SR_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.22": hd.sr.EnhancedSR,
    "1.2.840.10008.5.1.4.1.1.88.33": hd.sr.ComprehensiveSR,
    "1.2.840.10008.5.1.4.1.1.88.34": hd.sr.Comprehensive3DSR,
}
REPORT_TITLE = ("126000", "DCM")
IMAGE_LIBRARY = ("111028", "DCM")
ALGORITHM_NAME = ("111001", "DCM")
DEVICE_OBSERVER_NAME = ("121013", "DCM")


class NotAMeasurementReport(ValueError):
    """The SR is not a readable TID 1500 report; the message says why."""


@dataclass
class Code:
    value: str
    scheme: str
    meaning: str

    @classmethod
    def of(cls, concept) -> Code | None:
        if concept is None:
            return None
        return cls(str(concept.value), str(concept.scheme_designator), str(concept.meaning))


@dataclass
class MeasuredValue:
    name: Code
    value: float
    unit: str
    derivation: str | None
    ci95_low: float | None = None    # the value minus TID 310 lower measurement uncertainty
    ci95_high: float | None = None   # plus the upper one


UPPER_UNCERTAINTY = ("371886008", "SCT")   # TID 310, CID 225: offsets from the value
LOWER_UNCERTAINTY = ("371885007", "SCT")


def _interval(measurement, value: float) -> tuple[float | None, float | None]:
    """(low, high) from a measurement's TID 310 upper and lower uncertainty, where it has them."""
    offsets = {}
    for item in measurement[0].get("ContentSequence", []):
        name = item.get("ConceptNameCodeSequence")
        numbers = item.get("MeasuredValueSequence")
        if name and numbers and (name[0].CodeValue, name[0].CodingSchemeDesignator) in (UPPER_UNCERTAINTY,
                                                                                        LOWER_UNCERTAINTY):
            offsets[name[0].CodeValue] = float(numbers[0].NumericValue)
    low = value - offsets[LOWER_UNCERTAINTY[0]] if LOWER_UNCERTAINTY[0] in offsets else None
    high = value + offsets[UPPER_UNCERTAINTY[0]] if UPPER_UNCERTAINTY[0] in offsets else None
    return low, high


@dataclass
class Group:
    region: str                # tracking identifier
    tracking_uid: str | None
    finding: Code | None
    site: Code | None
    measurements: list[MeasuredValue] = field(default_factory=list)
    evaluations: list[tuple[Code, Code]] = field(default_factory=list)


@dataclass
class ParsedReport:
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    study_date: str | None     # YYYY-MM-DD
    accession_number: str | None
    content_datetime: str      # YYYYMMDDHHMMSS, for ordering revisions
    producer: str              # algorithm or device that made the report
    groups: list[Group]
    source_series: str = ""    # the series its Image Library images are in, sorted, space-separated


def _walk_text(items, concept: tuple[str, str]):
    """First TEXT value anywhere in the content tree whose concept name is concept."""
    for item in items or []:
        name = item.get("ConceptNameCodeSequence")
        if name and (name[0].CodeValue, name[0].CodingSchemeDesignator) == concept and "TextValue" in item:
            return str(item.TextValue)
        found = _walk_text(item.get("ContentSequence"), concept)
        if found:
            return found
    return None


def _report_content(ds: Dataset):
    cls = SR_SOP_CLASSES.get(str(ds.get("SOPClassUID", "")))
    if cls is None:
        raise NotAMeasurementReport(f"SOP class {ds.get('SOPClassUID', '?')} is not an SR class highdicom parses")
    title = ds.get("ConceptNameCodeSequence")
    if not title or (title[0].CodeValue, title[0].CodingSchemeDesignator) != REPORT_TITLE:
        raise NotAMeasurementReport("document title is not (126000, DCM) Imaging Measurement Report")
    if "ContentTemplateSequence" not in ds:   # recognised by its title: tell highdicom which template it is
        ds = copy.deepcopy(ds)
        template = Dataset()
        template.MappingResource, template.TemplateIdentifier = "DCMR", "1500"
        ds.ContentTemplateSequence = [template]
    try:
        content = cls.from_dataset(ds, copy=True).content
        if not isinstance(content, hd.sr.MeasurementReport):
            raise NotAMeasurementReport("the content tree is not TID 1500")
    except (ValueError, AttributeError, TypeError, KeyError, IndexError) as exc:
        raise NotAMeasurementReport(f"not a valid TID 1500 tree: {type(exc).__name__}: {exc}") from None
    return content


def _groups(content) -> list[Group]:
    groups = []
    found = list(content.get_volumetric_roi_measurement_groups()) + \
        list(content.get_planar_roi_measurement_groups()) + list(content.get_image_measurement_groups())
    for g in found:
        sites = g.finding_sites
        group = Group(region=str(g.tracking_identifier or ""), tracking_uid=str(g.tracking_uid or "") or None,
                      finding=Code.of(g.finding_type), site=Code.of(sites[0].value) if sites else None)
        for m in g.get_measurements():
            if m.value is None:
                continue
            group.measurements.append(MeasuredValue(Code.of(m.name), float(m.value), str(m.unit.value),
                                                    m.derivation.meaning if m.derivation else None,
                                                    *_interval(m, float(m.value))))
        for e in g.get_qualitative_evaluations():
            group.evaluations.append((Code.of(e.name), Code.of(e.value)))
        groups.append(group)
    return groups


def _library_instances(items) -> set[str]:
    """SOP Instance UIDs of the IMAGE items under the Image Library (TID 1600) of a content tree."""
    found = set()
    for item in items or []:
        name = item.get("ConceptNameCodeSequence")
        if name and (name[0].CodeValue, name[0].CodingSchemeDesignator) == IMAGE_LIBRARY:
            stack = list(item.get("ContentSequence", []))
            while stack:
                entry = stack.pop()
                found |= {str(r.ReferencedSOPInstanceUID) for r in entry.get("ReferencedSOPSequence", [])}
                stack += list(entry.get("ContentSequence", []))
        else:
            found |= _library_instances(item.get("ContentSequence"))
    return found


def source_series(ds: Dataset) -> str:
    """The series of the images the report was measured on (its Image Library, located through the evidence
    sequences): reports of one producer on different source series (native and post-contrast T1) are both
    current; a revision on the same series replaces the earlier one."""
    images = _library_instances(ds.get("ContentSequence"))
    series = set()
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(keyword, []):
            for item in study.get("ReferencedSeriesSequence", []):
                if any(str(r.ReferencedSOPInstanceUID) in images for r in item.get("ReferencedSOPSequence", [])):
                    series.add(str(item.SeriesInstanceUID))
    return " ".join(sorted(series))


def _iso_date(text) -> str | None:
    text = str(text or "")
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) >= 8 and text[:8].isdigit() else None


def parse_report(ds: Dataset) -> ParsedReport:
    """The rows of one TID 1500 report. Raises NotAMeasurementReport for anything else."""
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
        if not ds.get(keyword):
            raise NotAMeasurementReport(f"missing {keyword}")
    content = _report_content(ds)
    try:
        groups = _groups(content)
    except (ValueError, AttributeError, TypeError, KeyError, IndexError) as exc:
        raise NotAMeasurementReport(f"unreadable measurement groups: {type(exc).__name__}: {exc}") from None
    if not any(g.measurements or g.evaluations for g in groups):
        raise NotAMeasurementReport("the report holds no measurements")
    producer = (_walk_text(ds.ContentSequence, ALGORITHM_NAME) or _walk_text(ds.ContentSequence, DEVICE_OBSERVER_NAME)
                or f"{ds.get('Manufacturer', '')} {ds.get('SeriesDescription', '')}".strip() or "unknown")
    return ParsedReport(
        sop_instance_uid=str(ds.SOPInstanceUID), series_instance_uid=str(ds.SeriesInstanceUID),
        study_instance_uid=str(ds.StudyInstanceUID), patient_id=str(ds.get("PatientID", "") or ""),
        study_date=_iso_date(ds.get("StudyDate")), accession_number=str(ds.get("AccessionNumber", "") or "") or None,
        content_datetime=f"{ds.get('ContentDate', '')}{str(ds.get('ContentTime', '')).split('.')[0]}",
        producer=producer, groups=groups, source_series=source_series(ds))
