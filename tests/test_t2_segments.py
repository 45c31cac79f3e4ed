"""T2 per AHA segment (node/process/modules/t2segments.py): the wall found on the native T1 map of the plane and
carried onto the T2 map's own grid, a drawn SEG instead, the node's own T2 maps taken back in, a T2 slice without
a T1 partner, and the summary's bullseye."""
from dataclasses import replace

import highdicom as hd
import numpy as np
import pydicom
import pytest

from analysis.geometry import resample_onto
from analysis.phantoms import MYOCARDIUM, Region, SliceGeometry
from analysis.phantoms.t2_map import T2_MS, t2_map_phantom
from dicom_out import codes
from dicom_out.phantom_studies import write_ecv_study, write_t2_map
from dicom_out.segmentation import Segment, build_segmentation
from dicom_out.synthetic_mr import save_series, t2prep_series
from node.config import offline_config
from node.process.offline import process_folder
from node.registry.parse import parse_report
from tests.conftest import dciodvfy_errors

# the T2 map on a coarser grid than the T1 maps (1.5 mm, 160 x 160) over the same field of view
T2_GEOMETRY = replace(SliceGeometry(), matrix=120, pixel_mm=2.0)


def _job(report, module):
    return next(j for j in report["jobs"] if j["module"] == module)


def _series(out, description):
    return next(p for p in out.glob("*.dcm")
                if pydicom.dcmread(p, stop_before_pixels=True).SeriesDescription == description)


def _segment_masks(path) -> dict[str, np.ndarray]:
    seg = hd.seg.segread(path)
    masks = np.asarray(seg.get_volume(combine_segments=False).array)[0] > 0
    return {seg.get_segment_description(n).segment_label: masks[..., k] for k, n in enumerate(seg.get_segment_numbers())}


@pytest.fixture(scope="module")
def inline_t2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t2")
    study, _, _ = write_ecv_study(folder / "in")
    phantom = t2_map_phantom(T2_GEOMETRY)
    write_t2_map(folder / "in", study, phantom.t2_ms, phantom.pixel_mm)
    return phantom, process_folder(folder / "in", folder / "out", offline_config()), folder / "out"


def test_resampling_follows_the_dicom_geometry():
    """A linear function of patient position, sampled on one grid, read at the pixel centres of another grid of
    the same plane (PS3.3 C.7.6.2.1.1: position of the first pixel's centre, row then column cosines)."""
    def plane(rows, spacing, corner):
        return np.array([corner, corner, 0.0]), np.array([1.0, 0, 0, 0, 1, 0]), np.array([spacing, spacing])
    source, target = plane(160, 1.5, -120.0), plane(120, 2.0, -119.0)
    rows, cols = np.mgrid[0:160, 0:160]
    x, y = -120.0 + 1.5 * cols, -120.0 + 1.5 * rows           # row direction +x along a row, column direction +y
    moved = resample_onto(2.0 * x + 3.0 * y, source, target, (120, 120))
    rows, cols = np.mgrid[0:120, 0:120]
    expected = 2.0 * (-119.0 + 2.0 * cols) + 3.0 * (-119.0 + 2.0 * rows)
    inside = (rows < 118) & (cols < 118)                        # the last rows reach past the source
    assert np.allclose(moved[inside], expected[inside], atol=1e-6)


@pytest.mark.integration     # dciodvfy
def test_t2_per_segment_is_the_t2_of_the_voxels_it_names(inline_t2):
    phantom, report, out = inline_t2
    job = _job(report, "t2segments")
    assert job["state"] == "done", job.get("error")
    results = job["results"]
    assert results["myocardium_source"] == "automatic" and results["skipped_slices"] == []
    regions = _series(out, "T2 regions (cmr-node)")
    segments = _series(out, "T2 AHA segments (cmr-node)")
    sr = out / f"{results['report_sop_instance_uid']}.dcm"
    for path in (regions, segments, sr):
        assert dciodvfy_errors(path) == [], path.name
    wall = _segment_masks(regions)["LV myocardium"]
    assert wall.shape == phantom.t2_ms.shape                       # on the T2 map's own grid
    assert np.isin(phantom.labels[wall], MYOCARDIUM).mean() > 0.97   # carried to the right place, no blood
    truth = np.vectorize(lambda label: T2_MS[Region(label)])(phantom.labels)
    groups = {g.region: g for g in parse_report(pydicom.dcmread(sr)).groups}
    means = {}
    for label, mask in _segment_masks(segments).items():
        number = int(label.split()[1])
        measured = next(m.value for m in groups[label].measurements
                        if m.name.value == codes.T2.value and m.derivation == "Mean")
        assert measured == pytest.approx(truth[mask].mean(), abs=1.0), label   # noise only: 3 % of 50 ms
        means[number] = measured
    assert sorted(means) == list(range(7, 13))
    for remote in (9, 10, 11):
        assert abs(means[remote] - T2_MS[Region.REMOTE]) < 1.5
    assert means[7] > T2_MS[Region.REMOTE] + 3.0                    # the oedematous anterior infarct
    summary = _job(report, "summary")["results"]
    bullseyes = {b["title"]: b["segments"] for b in summary["bullseyes"]}
    assert bullseyes["T2 (ms)"] == {str(n): v for n, v in means.items()}
    number = next(n for n in summary["numbers"] if n["label"] == "T2, LV myocardium (mean)")
    assert number["value"] == next(m.value for m in groups["LV myocardium"].measurements
                                   if m.name.value == codes.T2.value and m.derivation == "Mean")


@pytest.mark.integration     # no external program, but the ECV study and a T2 map through the modules
def test_a_seg_drawn_on_the_t2_map_is_the_wall_and_its_rv_the_septum(tmp_path):
    study, _, _ = write_ecv_study(tmp_path / "in")
    phantom = t2_map_phantom(T2_GEOMETRY)
    [t2_file] = write_t2_map(tmp_path / "in", study, phantom.t2_ms, phantom.pixel_mm)
    drawn = np.isin(phantom.labels, MYOCARDIUM)
    opposite_rv = (phantom.labels == Region.RV_BLOOD)[::-1, ::-1]
    seg = build_segmentation(
        np.stack([drawn, opposite_rv], axis=-1)[None], [pydicom.dcmread(t2_file)],
        [Segment("LV myocardium", codes.ANATOMICAL_STRUCTURE, codes.LV_MYOCARDIUM, manual=True),
         Segment("RV blood pool", codes.ANATOMICAL_STRUCTURE, codes.RIGHT_VENTRICLE, manual=True)],
        series_uid=pydicom.uid.generate_uid(), sop_uid=pydicom.uid.generate_uid(), series_number=61,
        series_description="contours", software_version="test")
    (tmp_path / "in" / "seg").mkdir()
    seg.save_as(tmp_path / "in" / "seg" / "contours.dcm")
    job = _job(process_folder(tmp_path / "in", tmp_path / "out", offline_config()), "t2segments")
    results = job["results"]
    assert job["state"] == "done" and results["myocardium_source"] == "received SEG"
    assert results["slices"][0]["myocardium_voxels"] == drawn.sum()          # as drawn, no edge taken off
    septum = results["aha_segments"]["septum_deg"][0]
    assert abs((septum + 180) % 360 - 180) < 15, septum                       # where the drawn RV is
    wall = next(g for g in results["measurements"] if g["region"] == "LV myocardium")
    assert {"value": "87982008", "scheme": "SCT", "meaning": "Manual"} in [e["value"] for e in wall["evaluations"]]


@pytest.mark.integration     # no external program, but four modules on one study
def test_the_nodes_own_t2_map_from_raw_images_is_taken_back_in_and_segmented(tmp_path):
    """Raw T2-prepared images of the slice (no inline map): the t2map module's `_T2MAP_cmrnode` series comes
    back in as a T2 map and the t2segments route reads it."""
    study, _, _ = write_ecv_study(tmp_path / "in")
    phantom = t2_map_phantom(T2_GEOMETRY, noise_fraction=0.0)
    te = np.array([0.0, 25.0, 55.0])
    rng = np.random.default_rng(4)
    images = np.where(phantom.t2_ms > 0, 1000.0 * np.exp(-te[:, None, None] / np.maximum(phantom.t2_ms, 1.0)), 0.0)
    images = np.abs(images + 5.0 * rng.standard_normal(images.shape))
    save_series(t2prep_series(images, te, study, series_description="T2prep_SAX", series_number=16,
                              acquired=study.study_datetime, pixel_mm=phantom.pixel_mm), tmp_path / "in" / "t2prep")
    report = process_folder(tmp_path / "in", tmp_path / "out", offline_config())
    assert {j["module"] for j in report["jobs"]} >= {"ecv", "t2map", "t2segments", "summary"}
    t2map, job = _job(report, "t2map"), _job(report, "t2segments")
    assert job["state"] == "done", job.get("error")
    assert t2map["results"]["derived_series_description"] == "T2prep_SAX_T2MAP_cmrnode"
    used = pydicom.dcmread(tmp_path / "out" / f"{job['results']['slices'][0]['t2_sop_instance_uid']}.dcm")
    assert used.SeriesDescription == "T2prep_SAX_T2MAP_cmrnode" and "T2 MAP" in used.ImageType
    means = {g["region"]: next(m["value"] for m in g["measurements"] if m["derivation"] == "Mean")
             for g in job["results"]["measurements"] if g["region"].startswith("AHA ")}
    for label in ("AHA 9 mid inferoseptal", "AHA 10 mid inferior", "AHA 11 mid inferolateral"):
        assert abs(means[label] - T2_MS[Region.REMOTE]) < 2.5, (label, means[label])


def test_a_t2_slice_without_a_native_t1_map_in_its_plane_is_named_and_left_out(tmp_path):
    study, _, _ = write_ecv_study(tmp_path / "in")
    phantom = t2_map_phantom(T2_GEOMETRY)
    write_t2_map(tmp_path / "in", study, np.stack([phantom.t2_ms, phantom.t2_ms]), phantom.pixel_mm)  # 0, 10 mm
    job = _job(process_folder(tmp_path / "in", tmp_path / "out", offline_config()), "t2segments")
    results = job["results"]
    assert job["state"] == "done"
    assert [s["position_mm"] for s in results["skipped_slices"]] == [10.0]
    assert [s["position_mm"] for s in results["slices"]] == [0.0]
    assert "T2 map at 10.0 mm: no native T1 map in its plane" in results["quality_flags"]


def test_a_study_with_t2_images_and_no_t1_map_gets_no_t2segments_job(tmp_path):
    """`requires = ["t2_map", "t1_map"]`: every kind listed must be there, not one of them."""
    from dicom_out.synthetic_mr import SyntheticStudy
    phantom = t2_map_phantom(T2_GEOMETRY, noise_fraction=0.0)
    te = np.array([0.0, 25.0, 55.0])
    images = np.where(phantom.t2_ms > 0, 1000.0 * np.exp(-te[:, None, None] / np.maximum(phantom.t2_ms, 1.0)), 0.0)
    study = SyntheticStudy()
    save_series(t2prep_series(images, te, study, series_description="T2prep_SAX", series_number=16,
                              acquired=study.study_datetime, pixel_mm=phantom.pixel_mm), tmp_path / "in")
    report = process_folder(tmp_path / "in", tmp_path / "out", offline_config())
    assert "t2map" in {j["module"] for j in report["jobs"]}
    assert "t2segments" not in {j["module"] for j in report["jobs"]}


@pytest.mark.integration     # no external program, but the ECV study and a T2 map through the modules
def test_a_seg_drawn_on_the_native_t1_map_is_carried_onto_the_t2_grid(tmp_path):
    """The wall drawn on the 1.5 mm native T1 map lands on the 2 mm T2 map's myocardium, and is used as drawn
    (no edge taken off: the reader drew it)."""
    study, t1_phantom, files = write_ecv_study(tmp_path / "in")
    phantom = t2_map_phantom(T2_GEOMETRY)
    write_t2_map(tmp_path / "in", study, phantom.t2_ms, phantom.pixel_mm)
    native = pydicom.dcmread(next(f for f in files if f.parent.name == "pre"))
    seg = build_segmentation(
        np.isin(t1_phantom.labels, MYOCARDIUM)[None, :, :, None], [native],
        [Segment("LV myocardium", codes.ANATOMICAL_STRUCTURE, codes.LV_MYOCARDIUM, manual=True)],
        series_uid=pydicom.uid.generate_uid(), sop_uid=pydicom.uid.generate_uid(), series_number=61,
        series_description="contours", software_version="test")
    seg.save_as(tmp_path / "in" / "contours.dcm")
    job = _job(process_folder(tmp_path / "in", tmp_path / "out", offline_config()), "t2segments")
    assert job["state"] == "done" and job["results"]["myocardium_source"] == "received SEG"
    wall = _segment_masks(_series(tmp_path / "out", "T2 regions (cmr-node)"))["LV myocardium"]
    truth = np.isin(phantom.labels, MYOCARDIUM)
    assert 2 * (wall & truth).sum() / (wall.sum() + truth.sum()) > 0.9


def test_a_t2_map_in_no_t1_maps_plane_is_measured_nowhere_and_nothing_fails(tmp_path):
    """The T2 map through another plane (as the oximetry series through the coronary sinus is): the route's
    job ends done, with no output and results.json saying why, rather than failed."""
    study, _, _ = write_ecv_study(tmp_path / "in")
    phantom = t2_map_phantom(T2_GEOMETRY)
    series = write_t2_map(tmp_path / "in", study, phantom.t2_ms, phantom.pixel_mm)
    for path in series:                                          # 40 mm away from the T1 maps' slice
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], 40.0]
        ds.save_as(path)
    job = _job(process_folder(tmp_path / "in", tmp_path / "out", offline_config()), "t2segments")
    assert job["state"] == "done" and job["outputs"] == []
    assert job["results"]["not_measured"] == "no T2 map lies in the plane of a native T1 map"
    assert [s["position_mm"] for s in job["results"]["skipped_slices"]] == [40.0]
