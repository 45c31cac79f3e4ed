"""`cmr-node process` offline and the ECV Parametric Map it writes."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from analysis.phantoms import Region
from node.process.offline import process_folder
from node.config import offline_config
from tests.conftest import (PM_SOP_CLASS, SC_SOP_CLASS, SEG_SOP_CLASS, SR_SOP_CLASS, assert_report_matches,
                            dciodvfy_errors, sr_groups)


@pytest.fixture(scope="module")
def processed(tmp_path_factory, ecv_study):
    study, phantom, files = ecv_study
    out = tmp_path_factory.mktemp("out")
    result = subprocess.run([sys.executable, "-m", "node.cli", "process", str(files[0].parent.parent),
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return study, phantom, out


@pytest.mark.integration
def test_process_writes_map_and_results(processed):
    study, phantom, out = processed
    report = json.loads((out / "results.json").read_text())
    assert [(j["module"], j["state"]) for j in report["jobs"]] == [("ecv", "done"), ("summary", "done")]
    job = report["jobs"][0]
    assert job["module"] == "ecv" and job["study_instance_uid"] == study.study_uid
    results = job["results"]
    assert results["hematocrit"] == 0.42
    assert [(s["series_number"], s["role"], s["decided_by"]) for s in results["classified_by"]["series"]] == [
        (10, "native", "Series Description"), (20, "post", "Series Description")]
    slice_result = results["maps"][0]["slices"][0]
    assert abs(slice_result["blood_t1_post_ms"] - 400) < 10
    assert abs(slice_result["blood_t1_native_ms"] - 1550) < 30
    assert f"{results['maps'][0]['sop_instance_uid']}.dcm" in job["outputs"]
    assert f"{results['report_sop_instance_uid']}.dcm" in job["outputs"]
    kinds = sorted(str(pydicom.dcmread(out / f, stop_before_pixels=True).SOPClassUID) for f in job["outputs"])
    # map, regions, AHA segments, report, view
    assert kinds == sorted([PM_SOP_CLASS, SEG_SOP_CLASS, SEG_SOP_CLASS, SR_SOP_CLASS, SC_SOP_CLASS])
    for name in job["outputs"]:     # dated, so that a PACS lists the series by when the node made them
        ds = pydicom.dcmread(out / name, stop_before_pixels=True)
        assert ds.SeriesDate == ds.ContentDate and ds.SeriesTime == ds.ContentTime, ds.SeriesDescription
    assert job["previews"] == ["job1_9000_ECV_map_cmr-node.png"]
    assert (out / "previews" / "job1_9000_ECV_map_cmr-node.png").stat().st_size > 1000


def _output(out, sop_class, description=None):
    """The output file of a SOP class (and Series Description, where a class has several)."""
    def matches(path):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return ds.SOPClassUID == sop_class and description in (None, ds.SeriesDescription)
    return next(p for p in sorted(out.glob("*.dcm")) if matches(p))


@pytest.mark.integration
def test_ecv_report_holds_every_number_with_code_and_unit(processed):
    study, phantom, out = processed
    results = json.loads((out / "results.json").read_text())["jobs"][0]["results"]
    sr_path = out / f"{results['report_sop_instance_uid']}.dcm"
    assert dciodvfy_errors(sr_path) == []
    assert_report_matches(sr_path, results["measurements"])
    groups = sr_groups(sr_path)
    myocardium = groups["LV myocardium"]
    # the automatic wall holds remote (ECV 25 %) and infarct (55 %): the median is remote's
    assert abs(myocardium[("ECV", "99CMRN", "Median")][0] - 25.0) < 2.0
    assert abs(myocardium[("113063", "DCM", "Median")][0] - 1000.0) < 30
    assert groups["LV blood pool"][("20570-8", "LN", None)] == (42.0, "%")
    assert abs(groups["LV blood pool post-contrast"][("113063", "DCM", "Median")][0] - 400) < 10
    sr = hd.sr.srread(sr_path)
    referenced = {str(i.ReferencedSOPInstanceUID) for e in sr.CurrentRequestedProcedureEvidenceSequence
                  for s in e.ReferencedSeriesSequence for i in s.ReferencedSOPSequence}
    seg_uid = str(pydicom.dcmread(_output(out, SEG_SOP_CLASS, "ECV regions (cmr-node)"),
                                  stop_before_pixels=True).SOPInstanceUID)
    assert {results["maps"][0]["sop_instance_uid"], seg_uid} < referenced   # and the source images


@pytest.mark.integration
def test_ecv_segmentation_holds_wall_and_blood_pool(processed):
    _, phantom, out = processed
    seg_path = _output(out, SEG_SOP_CLASS, "ECV regions (cmr-node)")
    assert dciodvfy_errors(seg_path) == []
    seg = hd.seg.segread(seg_path)
    labels = [seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()]
    assert labels == ["LV myocardium", "LV blood pool"]
    masks = np.asarray(seg.get_volume(combine_segments=False).array)[0]
    wall, pool = masks[..., 0] > 0, masks[..., 1] > 0
    truth = np.isin(phantom.labels, [Region.REMOTE, Region.INFARCT, Region.MVO])
    assert 2 * (wall & truth).sum() / (wall.sum() + truth.sum()) > 0.9
    assert np.all(phantom.labels[pool] == Region.LV_BLOOD)


def _tid1500(sr_path, tmp_path) -> dict[str, dict]:
    """dcmqi's tid1500reader, an independent reader: tracking identifier -> its group."""
    out = tmp_path / "sr.json"
    subprocess.run([str(Path(sys.executable).parent / "tid1500reader"), "--inputDICOM", str(sr_path),
                    "--outputMetadata", str(out)], check=True, capture_output=True, timeout=60)
    return {g["TrackingIdentifier"]: g for g in json.loads(out.read_text())["Measurements"]}


@pytest.mark.integration
def test_ecv_per_aha_segment_in_the_report_the_seg_and_results(processed, tmp_path):
    """One mid-ventricular slice: segments 7-12 (Cerqueira et al., Circulation 2002;105:539), the septum against
    the RV (image left: the study is axial, viewed from the feet, anterior up), the phantom's anterior infarct
    in segment 7, remote myocardium (ECV 25 %) inferoseptal, inferior and inferolateral."""
    _, phantom, out = processed
    results = json.loads((out / "results.json").read_text())["jobs"][0]["results"]
    assert results["maps"][0]["aha_segments"] == {"levels": ["mid"], "septum_deg": [180.0],
                                                   "segments": [7, 8, 9, 10, 11, 12]}
    by_label = {g["region"]: g for g in results["measurements"]}
    read = _tid1500(out / f"{results['report_sop_instance_uid']}.dcm", tmp_path)
    codes = {7: "264848000", 8: "396647004", 9: "396649001", 10: "264847005", 11: "396655006", 12: "396656007"}
    ecv_mean = {}
    for number, code in codes.items():
        [label] = [k for k in by_label if k.startswith(f"AHA {number} ")]
        group = read[label]
        assert group["FindingSite"]["CodeValue"] == code and group["FindingSite"]["CodingSchemeDesignator"] == "SCT"
        in_sr = {(i["quantity"]["CodeValue"], i.get("derivationModifier", {}).get("CodeMeaning")): float(i["value"])
                 for i in group["measurementItems"]}
        in_json = {(m["name"]["value"], m["derivation"]): m["value"] for m in by_label[label]["measurements"]}
        assert in_sr == pytest.approx(in_json)
        ecv_mean[number] = in_json[("ECV", "Mean")]
    assert max(ecv_mean, key=ecv_mean.get) == 7
    for remote in (9, 10, 11):
        assert abs(ecv_mean[remote] - 25.0) < 2.0

    seg_path = _output(out, SEG_SOP_CLASS, "ECV AHA segments (cmr-node)")
    assert dciodvfy_errors(seg_path) == []
    seg = hd.seg.segread(seg_path)
    described = [seg.get_segment_description(n) for n in seg.get_segment_numbers()]
    assert [d.segmented_property_type.value for d in described] == list(codes.values())
    masks = np.asarray(seg.get_volume(combine_segments=False).array)[0]
    for k in (2, 3, 4):                                 # segments 9-11: remote wall (less its border pixels)
        assert (phantom.labels[masks[..., k] > 0] == Region.REMOTE).mean() > 0.9
    # segment 7: the phantom's infarct fills its inner 60 %, MVO included
    assert np.isin(phantom.labels[masks[..., 0] > 0], [Region.INFARCT, Region.MVO]).mean() > 0.5


@pytest.mark.integration
def test_ecv_map_values_match_phantom(processed):
    _, phantom, out = processed
    pm = hd.pm.ParametricMap.from_file(_output(out, PM_SOP_CLASS))
    ecv_percent = np.asarray(pm.get_volume().array)[0]
    for region in (Region.REMOTE, Region.INFARCT, Region.MVO):
        truth = phantom.truth_by_region[region.name.lower()] * 100
        assert abs(np.median(ecv_percent[phantom.labels == region]) - truth) < 2.0, region


@pytest.mark.integration
def test_ecv_map_is_valid_dicom_with_codes_and_references(processed, ecv_study):
    _, _, files = ecv_study
    path = _output(processed[2], PM_SOP_CLASS)
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == PM_SOP_CLASS
    assert ds.SeriesDescription == "ECV map (cmr-node)"
    mapping = ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "%"
    assert mapping.MeasurementUnitsCodeSequence[0].CodingSchemeDesignator == "UCUM"
    quantity = mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0]
    assert (quantity.CodeValue, quantity.CodingSchemeDesignator) == ("ECV", "99CMRN")
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99CMRN"
    sources = {pydicom.dcmread(f).SOPInstanceUID for f in files}
    derivation = ds.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0]
    referenced = {s.ReferencedSOPInstanceUID for s in derivation.SourceImageSequence}
    assert referenced == sources  # post-contrast map and its native partner
    assert ds.StudyInstanceUID == pydicom.dcmread(files[0]).StudyInstanceUID
    assert ds.PatientID == pydicom.dcmread(files[0]).PatientID


def test_process_is_deterministic(tmp_path, ecv_study):
    _, _, files = ecv_study
    a = process_folder(files[0].parent.parent, tmp_path / "a", offline_config())
    b = process_folder(files[0].parent.parent, tmp_path / "b", offline_config())
    assert a["jobs"][0]["outputs"] == b["jobs"][0]["outputs"]  # same inputs -> same output UIDs


@pytest.mark.integration
def test_process_skips_non_dicom_and_says_why_nothing_was_routed(tmp_path, ecv_study):
    _, _, files = ecv_study
    only_pre = tmp_path / "in"
    only_pre.mkdir()
    shutil.copy(files[0], only_pre / "pre.dcm")
    (only_pre / "notes.txt").write_text("not DICOM")
    result = subprocess.run([sys.executable, "-m", "node.cli", "process", str(only_pre), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert report["skipped_files"][0].startswith("notes.txt") and report["jobs"] == []
    [series] = report["series"]
    assert list(series["kinds"]) == ["t1_map"] and series["routes"] == []
    why = "route ecv needs paired T1 maps; the study's are single"
    assert why in series["not_routed_because"] and why in result.stdout


@pytest.mark.integration
def test_process_exits_1_when_a_job_fails(tmp_path, ecv_study):
    """Two native maps ten minutes apart: the ECV route runs and fails, saying what it found."""
    _, _, files = ecv_study
    (tmp_path / "in").mkdir()
    for n, minutes in enumerate((0, 10)):
        ds = pydicom.dcmread(files[0])
        ds.SeriesInstanceUID = pydicom.uid.generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.AcquisitionTime = f"{10 + minutes // 60:02d}{minutes % 60:02d}00"
        ds.save_as(tmp_path / "in" / f"pre{n}.dcm")
    result = subprocess.run([sys.executable, "-m", "node.cli", "process", str(tmp_path / "in"), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [j["state"] for j in report["jobs"]] == ["failed"]
    assert "a native and a post-contrast" in report["jobs"][0]["error"] and "2 native" in report["jobs"][0]["error"]
    assert report["jobs"][0]["failure"]["kind"] == "input" and report["jobs"][0]["failure"]["step"] == "read inputs"
    assert "Error" not in report["jobs"][0]["error"]          # a reason, not a class name
    assert "route ecv failed (input not usable, at 'read inputs'): need a native" in result.stdout

def test_multi_slice_maps_are_paired_by_position_whatever_the_file_order(tmp_path):
    """Three slices of different hearts (LV radius 18, 22, 26 mm) in one native and one post-contrast series,
    the post-contrast files in reverse order: each ECV slice is its own slice's, remote myocardium at 25 %."""
    from datetime import timedelta
    from analysis.phantoms.short_axis import SliceGeometry
    from analysis.phantoms.t1_ecv import ecv_phantom
    from dicom_out.synthetic_mr import SyntheticStudy, save_series, t1_map_series
    phantoms = [ecv_phantom(SliceGeometry(lv_endo_radius_mm=r, lv_epi_radius_mm=r + 9), seed=k)
                for k, r in enumerate((18.0, 22.0, 26.0))]
    study = SyntheticStudy()
    for name, minutes, key, agent in (("MOLLI_pre_MOCO_T1", 5, "t1_pre_ms", None),
                                      ("MOLLI_post_MOCO_T1", 25, "t1_post_ms", "Gadobutrol")):
        series = t1_map_series(np.stack([getattr(p, key) for p in phantoms]), study, series_description=name,
                               series_number=minutes, acquired=study.study_datetime + timedelta(minutes=minutes),
                               pixel_mm=phantoms[0].pixel_mm, contrast_agent=agent)
        save_series(series[::-1] if agent else series, tmp_path / "in" / name)
    job = process_folder(tmp_path / "in", tmp_path / "out", offline_config())["jobs"][0]
    assert job["state"] == "done", job.get("error")
    [ecv_map] = job["results"]["maps"]
    assert [s["position_mm"] for s in ecv_map["slices"]] == [0.0, 10.0, 20.0]
    volume = hd.pm.ParametricMap.from_file(tmp_path / "out" / f"{ecv_map['sop_instance_uid']}.dcm").get_volume()
    planes = sorted(range(3), key=lambda k: volume.map_indices_to_reference(np.array([[k, 0, 0]]))[0, 2])
    for k, phantom in enumerate(phantoms):
        ecv = np.asarray(volume.array)[planes[k]]
        assert abs(np.median(ecv[phantom.labels == Region.REMOTE]) - 25.0) < 2.0, k


def _segment_masks(out, results) -> dict[int, np.ndarray]:
    """AHA segment number -> its mask (rows, cols) from the AHA SEG."""
    seg = hd.seg.segread(_output(out, SEG_SOP_CLASS, "ECV AHA segments (cmr-node)"))
    masks = np.asarray(seg.get_volume(combine_segments=False).array)[0]
    numbers = results["maps"][0]["aha_segments"]["segments"]
    return {n: masks[..., k] > 0 for k, n in enumerate(numbers)}


def test_aha_segments_of_a_mirrored_image_are_the_same_segments_of_the_heart(tmp_path, ecv_study):
    """The same study stored with its columns reversed (row direction towards the patient's right, the first
    pixel moved to the other side): the same voxels of the heart carry the same segment numbers."""
    _, _, files = ecv_study
    for f in files:
        ds = pydicom.dcmread(f)
        columns, spacing = int(ds.Columns), float(ds.PixelSpacing[1])
        position = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [position[0] + (columns - 1) * spacing, position[1], position[2]]
        ds.ImageOrientationPatient = [-1, 0, 0, 0, 1, 0]
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, ::-1]).tobytes()
        (tmp_path / "mirrored").mkdir(exist_ok=True)
        ds.save_as(tmp_path / "mirrored" / f.name)
    straight = process_folder(files[0].parent.parent, tmp_path / "a", offline_config())["jobs"][0]
    mirrored = process_folder(tmp_path / "mirrored", tmp_path / "b", offline_config())["jobs"][0]
    a = _segment_masks(tmp_path / "a", straight["results"])
    b = {n: m[:, ::-1] for n, m in _segment_masks(tmp_path / "b", mirrored["results"]).items()}
    assert sorted(a) == sorted(b) == list(range(7, 13))
    for n in a:
        assert 2 * (a[n] & b[n]).sum() / (a[n].sum() + b[n].sum()) > 0.9, n


def _write_contours(directory: Path, native_file: Path, myocardium: np.ndarray | None, rv: np.ndarray | None) -> Path:
    """A workstation's SEG on the native map: a hand-drawn LV myocardium and/or RV blood pool."""
    from dicom_out import codes
    from dicom_out.segmentation import Segment, build_segmentation
    drawn = [(m, s) for m, s in ((myocardium, Segment("LV myocardium", codes.ANATOMICAL_STRUCTURE, codes.LV_MYOCARDIUM,
                                                       manual=True)),
                                 (rv, Segment("RV blood pool", codes.ANATOMICAL_STRUCTURE, codes.RIGHT_VENTRICLE,
                                              manual=True))) if m is not None]
    seg = build_segmentation(np.stack([m for m, _ in drawn], axis=-1)[None], [pydicom.dcmread(native_file)],
                             [s for _, s in drawn], series_uid=pydicom.uid.generate_uid(),
                             sop_uid=pydicom.uid.generate_uid(), series_number=60,
                             series_description="contours", software_version="test")
    directory.mkdir(parents=True, exist_ok=True)
    seg.save_as(directory / "contours.dcm")
    return directory / "contours.dcm"


@pytest.mark.integration     # no external program, but the ECV study twice through the modules
def test_a_received_seg_gives_the_myocardium_and_the_rv_that_marks_the_septum(tmp_path, ecv_study):
    """A SEG drawn on the native map replaces the automatic myocardium (its voxels exactly, Manual in the
    report, the SEG referenced) and its RV marks the septum: drawn on the other side of the LV than the image's
    RV blood, the septum follows the drawing; drawn where the RV is, the segments are the automatic ones."""
    from analysis.phantoms import MYOCARDIUM
    _, phantom, files = ecv_study
    myocardium = np.isin(phantom.labels, MYOCARDIUM)
    rv = phantom.labels == Region.RV_BLOOD
    for name, drawn_rv, septum in (("true", rv, 180.0), ("opposite", rv[::-1, ::-1], 0.0)):
        folder = tmp_path / name
        shutil.copytree(files[0].parent.parent, folder / "in")
        contours = _write_contours(folder / "in" / "seg", files[0], myocardium, drawn_rv)
        job = process_folder(folder / "in", folder / "out", offline_config())["jobs"][0]
        assert job["module"] == "ecv" and job["state"] == "done", job.get("error")
        entry = job["results"]["maps"][0]
        assert entry["myocardium_source"] == "received SEG"
        found = entry["aha_segments"]["septum_deg"][0]
        assert abs((found - septum + 180) % 360 - 180) < 15, (name, found)
        wall = next(g for g in job["results"]["measurements"] if g["region"] == "LV myocardium")
        assert {"name": {"value": "122554", "scheme": "DCM", "meaning": "Segmentation Method"},
                "value": {"value": "87982008", "scheme": "SCT", "meaning": "Manual"}} in wall["evaluations"]
        volume = next(m for m in wall["measurements"] if m["name"]["value"] == "118565006")["value"]
        frame = pydicom.dcmread(files[0])
        voxel_ml = float(frame.PixelSpacing[0]) * float(frame.PixelSpacing[1]) * float(frame.SliceThickness) / 1000
        assert volume == pytest.approx(myocardium.sum() * voxel_ml, rel=0.01)   # every drawn voxel has an ECV
        sr = pydicom.dcmread(folder / "out" / f"{job['results']['report_sop_instance_uid']}.dcm")
        referenced = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                      for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
        assert str(pydicom.dcmread(contours).SOPInstanceUID) in referenced


@pytest.mark.integration     # no external program, but the ECV study through the modules
def test_a_seg_on_another_matrix_is_not_used_and_the_study_still_runs(tmp_path, ecv_study):
    """A workstation's SEG drawn on a resampled copy of the native map (same SOP Instance UID, half the matrix):
    its mask does not fit the image, so the automatic wall is used and the job still succeeds."""
    import copy
    from analysis.phantoms import MYOCARDIUM
    _, phantom, files = ecv_study
    shutil.copytree(files[0].parent.parent, tmp_path / "in")
    native = pydicom.dcmread(files[0])
    half = copy.deepcopy(native)
    half.Rows, half.Columns = native.Rows // 2, native.Columns // 2
    half.PixelSpacing = [2 * float(v) for v in native.PixelSpacing]
    half.PixelData = np.ascontiguousarray(native.pixel_array[::2, ::2]).tobytes()
    mask = np.isin(phantom.labels, MYOCARDIUM)[::2, ::2]
    from dicom_out import codes
    from dicom_out.segmentation import Segment, build_segmentation
    build_segmentation(mask[None, :, :, None], [half], [Segment("LV myocardium", codes.ANATOMICAL_STRUCTURE,
                                                                codes.LV_MYOCARDIUM, manual=True)],
                       series_uid=pydicom.uid.generate_uid(), sop_uid=pydicom.uid.generate_uid(), series_number=60,
                       series_description="contours", software_version="test").save_as(tmp_path / "in" / "seg.dcm")
    job = process_folder(tmp_path / "in", tmp_path / "out", offline_config())["jobs"][0]
    assert job["module"] == "ecv" and job["state"] == "done", job.get("error")
    assert job["results"]["maps"][0]["myocardium_source"] == "automatic"
