"""The images an output object is derived from, as highdicom wants them.

Sources are Datasets (single-frame images, one per output frame) or source planes (dicom_out/derived_mr.py:
anything with header, number, position, orientation, pixel_mm, slice_thickness_mm), so that frames of
enhanced multi-frame images can be sources too. Inputs from anonymizers and research exports often lack
Type 2 patient and study attributes, which highdicom copies from the source: they are set empty here,
never invented, so the outputs carry them empty too.
"""
from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset

# Type 2 attributes of the Patient and General Study modules that highdicom copies from a source image
PATIENT_STUDY_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                       "ReferringPhysicianName", "StudyID", "AccessionNumber")


def complete_type2(ds: Dataset) -> Dataset:
    """Give the (in-memory) source dataset every Type 2 patient/study attribute, empty where it had none."""
    for keyword in PATIENT_STUDY_TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def instances(items) -> list[Dataset]:
    """The instances of Datasets or source planes, each once, in first-seen order (frames of one multi-frame
    instance share it)."""
    unique: dict[str, Dataset] = {}
    for item in items:
        ds = item if isinstance(item, Dataset) else item.header
        unique.setdefault(str(ds.SOPInstanceUID), ds)
    return list(unique.values())


def source_arguments(sources: list) -> tuple[list[Dataset], dict]:
    """highdicom's source_images and geometry arguments for sources given as Datasets (single-frame images,
    one per output frame) or as source planes (dicom_out/derived_mr.py): frames of enhanced multi-frame
    images are referenced through their instance, with the output frames' positions given explicitly."""
    if all(isinstance(s, Dataset) for s in sources):
        return [complete_type2(s) for s in sources], {}
    if all(s.number is None for s in sources):
        return [complete_type2(s.header) for s in sources], {}
    headers = [complete_type2(h) for h in instances(sources)]
    first = sources[0]
    return headers, {
        "plane_positions": [hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT,
                                                     [float(v) for v in s.position]) for s in sources],
        "plane_orientation": hd.PlaneOrientationSequence(hd.CoordinateSystemNames.PATIENT,
                                                         [float(v) for v in first.orientation]),
        "pixel_measures": hd.PixelMeasuresSequence(pixel_spacing=[float(v) for v in first.pixel_mm],
                                                   slice_thickness=float(first.slice_thickness_mm or 1.0))}


def further_sources(further: list | None, sources: list[Dataset]) -> list[Dataset] | None:
    """Other source instances, each once, none of those already in sources."""
    seen = {str(d.SOPInstanceUID) for d in sources}
    out = [complete_type2(ds) for ds in instances(further or []) if str(ds.SOPInstanceUID) not in seen]
    return out or None


_GEOMETRY = (("PixelMeasuresSequence", "PixelSpacing"), ("PixelMeasuresSequence", "SliceThickness"),
             ("PlaneOrientationSequence", "ImageOrientationPatient"), ("PlanePositionSequence", "ImagePositionPatient"))


def image_library_view(ds: Dataset) -> Dataset:
    """The dataset as an SR Image Library entry sees it: an enhanced multi-frame image described by its first
    frame's geometry at the top level, where highdicom looks for it (TID 1604), without its pixel data or
    functional groups; a single-frame image as it is."""
    if "PerFrameFunctionalGroupsSequence" not in ds or "PixelSpacing" in ds:
        return ds
    view = Dataset()
    for element in ds:
        if element.keyword not in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence",
                                   "PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            view.add(element)
    groups = [ds.PerFrameFunctionalGroupsSequence[0]] + list(ds.get("SharedFunctionalGroupsSequence", []))
    for sequence, keyword in _GEOMETRY:
        value = next((g[sequence][0][keyword].value for g in groups if sequence in g and keyword in g[sequence][0]),
                     None)
        if value is not None:
            setattr(view, keyword, value)
    return view
