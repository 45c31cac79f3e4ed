"""TID 1500 Measurement Reports (Comprehensive 3D SR) from per-region measurements.

A module describes what it measured as `RegionGroup`s; the same objects give
results.json its "measurements" list (`RegionGroup.as_dict`) and the SR, so the
two can never disagree. Structure (PS3.16 TID 1500, measured facts in
../shared/notes/dicom-objects.md section 2):
- observer context: the device (cmr-node, its version); procedure reported
  SCT 241620005 "Magnetic resonance imaging of heart"; Image Library of the
  source images (always written: OHIF dereferences it);
- one measurement group per region: TID 1411 referencing a SEG segment when
  the region is a segment, otherwise TID 1501 referencing whole images;
- each measurement (TID 300): coded concept, UCUM unit, derivation (mean, SD,
  median) and the Parametric Map frames it was read from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset

from dicom_out import codes
from dicom_out.descriptions import description_with_suffix
from dicom_out.sources import complete_type2, image_library_view, instances
from dicom_out.parametric_map import MANUFACTURER, MODEL_NAME
from dicom_out.uids import derived_uid


@dataclass
class Measure:
    name: CodedConcept
    value: float
    unit: CodedConcept
    derivation: CodedConcept | None = None     # SCT mean / SD / median; None for a single value
    method: CodedConcept | None = None
    source: Dataset | None = None              # the Parametric Map the value was read from
    interval: tuple[float, float] | None = None   # 95 % confidence interval (low, high) in unit: TID 310
    frames: list[int] | None = None            # its frames (1-based); None = all


@dataclass
class Evaluation:
    name: CodedConcept
    value: CodedConcept


@dataclass
class RegionGroup:
    label: str                                  # tracking identifier, e.g. "LV myocardium"
    finding: CodedConcept                       # finding type
    site: CodedConcept | None = None            # finding site
    category: CodedConcept | None = None        # finding category
    segment: tuple[Dataset, int] | None = None  # (SEG, segment number) the region is
    images: list[Dataset] = field(default_factory=list)  # or the whole images it covers
    measures: list[Measure] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "region": self.label, "finding": _code_dict(self.finding),
            "finding_site": _code_dict(self.site) if self.site else None,
            "segment": {"sop_instance_uid": str(self.segment[0].SOPInstanceUID), "segment_number": self.segment[1]}
            if self.segment else None,
            "measurements": [{"name": _code_dict(m.name), "value": m.value, "unit": m.unit.value,
                              "derivation": m.derivation.meaning if m.derivation else None} for m in self.measures],
            "evaluations": [{"name": _code_dict(e.name), "value": _code_dict(e.value)} for e in self.evaluations]}


def _code_dict(code: CodedConcept) -> dict:
    return {"value": code.value, "scheme": code.scheme_designator, "meaning": code.meaning}


def statistics(name: CodedConcept, unit: CodedConcept, values: np.ndarray, *, source: Dataset | None = None,
               frames: list[int] | None = None, decimals: int = 4) -> list[Measure]:
    """Mean, standard deviation and median of values over a region, in unit."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return []
    return [Measure(name, round(float(f(values)), decimals), unit, derivation, source=source, frames=frames)
            for derivation, f in ((codes.MEAN, np.mean), (codes.STANDARD_DEVIATION, np.std),
                                  (codes.MEDIAN, np.median))]


def median(name: CodedConcept, unit: CodedConcept, values: np.ndarray, *, decimals: int = 4,
           source: Dataset | None = None) -> Measure:
    return Measure(name, round(float(np.median(values)), decimals), unit, codes.MEDIAN, source=source)


def volume(voxels: int, voxel_ml: float) -> Measure:
    """Region volume (mL) by counting segmented voxels (DCM 126030)."""
    return Measure(codes.VOLUME, round(voxels * voxel_ml, 3), codes.UNIT_ML, method=codes.SUM_OF_SEGMENTED_VOXELS)


def segmentation_method(manual: bool) -> Evaluation:
    return Evaluation(codes.SEGMENTATION_METHOD, codes.MANUAL if manual else codes.AUTOMATED)


def fit_quality(failed_fraction: float) -> Evaluation:
    """Analysis quality from the share of failed voxel fits: < 5 % meets the standard, > 25 % is unusable."""
    if failed_fraction < 0.05:
        rating = codes.QUALITY_MEETS_STANDARD
    elif failed_fraction <= 0.25:
        rating = codes.QUALITY_BELOW_STANDARD
    else:
        rating = codes.QUALITY_UNUSABLE
    return Evaluation(codes.ANALYSIS_QUALITY, rating)


def _measurement(m: Measure, algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.Measurement:
    references = None
    if m.source is not None:
        references = [hd.sr.SourceImageForMeasurement.from_source_image(m.source, referenced_frame_numbers=m.frames)]
    return hd.sr.Measurement(name=m.name, value=m.value, unit=m.unit, derivation=m.derivation, method=m.method,
                             algorithm_id=algorithm, referenced_images=references,
                             properties=_uncertainty(m, m.interval) if m.interval is not None else None)


def _uncertainty(m: Measure, interval: tuple[float, float]) -> hd.sr.MeasurementProperties:
    """TID 310 upper and lower measurement uncertainty: the interval's ends as offsets from the value, in the
    measurement's unit (highdicom's own arguments write them unitless)."""
    properties = hd.sr.MeasurementProperties()
    low, high = interval
    for name, offset in ((codes.UPPER_UNCERTAINTY, high - m.value), (codes.LOWER_UNCERTAINTY, m.value - low)):
        properties.append(hd.sr.NumContentItem(name=name, value=round(max(offset, 0.0), 6), unit=m.unit,
                                               relationship_type=hd.sr.RelationshipTypeValues.HAS_PROPERTIES))
    return properties


def _referenced_segment(seg: Dataset, number: int) -> hd.sr.ReferencedSegment:
    """A segment and the source images of its frames.

    Built here rather than with ReferencedSegment.from_segmentation: that (0.28) looks for Segment
    Identification only per frame, but highdicom itself moves it to the shared groups for one segment.
    No frame numbers: PS3.3 (and dciodvfy) forbid Referenced Frame Number beside Referenced Segment Number."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    sources = {}
    for item in seg.PerFrameFunctionalGroupsSequence:
        ident = item.get("SegmentIdentificationSequence") or shared.get("SegmentIdentificationSequence")
        if ident and int(ident[0].ReferencedSegmentNumber) == number:
            for derivation in item.get("DerivationImageSequence", []):
                for src in derivation.get("SourceImageSequence", []):
                    sources[str(src.ReferencedSOPInstanceUID)] = str(src.ReferencedSOPClassUID)
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=number,
        source_images=[hd.sr.SourceImageForSegmentation(cls, uid) for uid, cls in sources.items()] or None)


def _group(g: RegionGroup, uid_seed: str, algorithm: hd.sr.AlgorithmIdentification):
    # keyword arguments shared by both kinds of measurement group
    common: dict[str, Any] = dict(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=derived_uid(uid_seed, g.label), identifier=g.label),
        finding_type=g.finding, finding_category=g.category, algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(g.site)] if g.site else None,
        measurements=[_measurement(m, algorithm) for m in g.measures] or None,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(e.name, e.value) for e in g.evaluations] or None)
    if g.segment is not None:
        seg, number = g.segment
        return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            referenced_segment=_referenced_segment(seg, number), **common)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(d) for d in g.images] or None,
        **common)


def build_measurement_report(groups: list[RegionGroup], *, source_images: list[Dataset], derived: list[Dataset],
                             algorithm_name: str, algorithm_version: str, series_uid: str, sop_uid: str,
                             series_number: int, series_description: str,
                             software_version: str) -> hd.sr.Comprehensive3DSR:
    """One TID 1500 report. source_images: the acquired images (headers suffice); derived: PMs and SEGs."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid("cmr-node device", MODEL_NAME), name=MODEL_NAME, manufacturer_name=MANUFACTURER,
        model_name=f"{MODEL_NAME} {software_version}")
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(observer_type=codes.DEVICE,
                                                      observer_identifying_attributes=device))
    algorithm = hd.sr.AlgorithmIdentification(name=algorithm_name, version=algorithm_version)
    # frames of one instance once; empty Type 2 attributes where an anonymizer removed them
    source_images = [complete_type2(d) for d in instances(source_images)]
    report = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=codes.CARDIAC_MRI,
        imaging_measurements=[_group(g, sop_uid, algorithm) for g in groups],
        referenced_images=[image_library_view(d) for d in source_images])
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(source_images) + list(derived), content=report, series_instance_uid=series_uid,
        series_number=series_number, sop_instance_uid=sop_uid, instance_number=1, manufacturer=MANUFACTURER,
        series_description=description_with_suffix(series_description, "", source_images[0]), is_complete=True, is_final=False, is_verified=False)
    if any(c.scheme_designator == codes.PRIVATE_SCHEME for g in groups
           for c in [c for m in g.measures for c in (m.name, m.unit)] + [c for e in g.evaluations for c in (e.name, e.value)]):
        codes.declare_private_scheme(sr)
    return sr
