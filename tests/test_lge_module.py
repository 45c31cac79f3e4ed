"""Synthetic LGE from the 5-minute dDCE fit: phantom accuracy, the hard cases, outputs and the node path."""
import numpy as np
import pydicom
import pytest

import highdicom as hd
from analysis.phantoms import MYOCARDIUM, Region, SliceGeometry
from analysis.phantoms.ddce import ddce_phantom, infarct_matching_blood_t1
from dicom_out.phantom_studies import write_ddce_study
from dicom_out.segmentation import Segment, build_segmentation
from dicom_out.synthetic_mr import SyntheticStudy
from dicom_out import codes
from node.config import parse_config
from node.process.offline import process_folder
from tests.conftest import (SEG_SOP_CLASS, assert_report_matches, dciodvfy_errors, node_config_dict,
                            orthanc_destination, sr_groups, storescu, wait_until)

LGE_ROUTE = {"name": "lge", "series_description": "(?i)ddce|myocard", "module": "lge", "viewer_images": []}
EQUAL_T1_TIMES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15)


def run_lge(tmp_path, phantom, extra_files=()):
    study, _, files = write_ddce_study(tmp_path / "in", phantom=phantom)
    for f in extra_files:
        f(tmp_path / "in", study, files)
    job = process_folder(tmp_path / "in", tmp_path / "out", parse_config({"routes": [LGE_ROUTE]}))["jobs"][0]
    assert job["state"] == "done", job.get("error")
    return job, tmp_path / "out"


def truth(phantom):
    myo = np.isin(phantom.labels, MYOCARDIUM).sum()
    return {"infarct_size_percent": 100 * np.isin(phantom.labels, (Region.INFARCT, Region.MVO)).sum() / myo,
            "mvo_percent": 100 * (phantom.labels == Region.MVO).sum() / myo}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    phantom = ddce_phantom()
    job, out = run_lge(tmp_path_factory.mktemp("lge"), phantom)
    return phantom, job, out


def test_infarct_size_transmurality_and_mvo_match_the_phantom(default_run):
    phantom, job, _ = default_run
    expected = truth(phantom)
    for method in ("nsd", "fwhm"):
        found = job["results"]["lge_ddce"][method]
        assert abs(found["infarct_size_percent"] - expected["infarct_size_percent"]) < 2.0, method
        assert abs(found["transmurality_percent"] - 100 * SliceGeometry().infarct_transmurality) < 10.0, method
        assert found["mvo_voxels"] > 0 and abs(found["mvo_percent"] - expected["mvo_percent"]) < 1.5, method


def test_synthetic_lge_has_higher_infarct_to_blood_cnr_than_standard(default_run):
    _, job, _ = default_run
    results = job["results"]
    dde, std = results["lge_ddce"]["nsd"], results["lge_standard"]["nsd"]
    # README: 23 against 3.2, ratio about 7
    assert 6.0 < dde["cnr_infarct_blood"] / std["cnr_infarct_blood"] < 8.0
    assert results["cnr_infarct_blood_ratio"] == pytest.approx(dde["cnr_infarct_blood"] / std["cnr_infarct_blood"],
                                                               rel=0.01)
    assert 300 < results["lge_ddce"]["ti_ms"] < 700     # nulls remote myocardium at 15 min


@pytest.mark.integration
def test_outputs_are_valid_dicom(default_run):
    _, job, out = default_run
    for name in job["outputs"]:
        assert dciodvfy_errors(out / name) == [], name


def test_segments_and_report_match_the_phantom(default_run):
    phantom, job, out = default_run
    seg_path = next(out / n for n in job["outputs"]
                    if pydicom.dcmread(out / n, stop_before_pixels=True).SOPClassUID == SEG_SOP_CLASS)
    seg = hd.seg.segread(seg_path)
    labels = [seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()]
    assert labels == ["LV myocardium", "Infarct", "Microvascular obstruction", "LV blood pool"]
    masks = np.asarray(seg.get_volume(combine_segments=False).array)[0] > 0
    myo, infarct, mvo, pool = (masks[..., k] for k in range(4))
    assert np.all(np.isin(phantom.labels[infarct], (Region.INFARCT, Region.MVO)))
    assert np.mean(phantom.labels[mvo] == Region.MVO) > 0.9
    assert np.all(phantom.labels[pool] == Region.LV_BLOOD)
    assert 2 * (myo & np.isin(phantom.labels, MYOCARDIUM)).sum() / (myo.sum() + np.isin(phantom.labels, MYOCARDIUM).sum()) > 0.95
    results = job["results"]
    sr_path = out / f"{results['report_sop_instance_uid']}.dcm"
    assert_report_matches(sr_path, results["measurements"])
    wall = sr_groups(sr_path)["LV myocardium (LGE_dDCE)"]
    assert wall[("INFSIZE", "99CMRN", None)] == (round(results["lge_ddce"]["nsd"]["infarct_size_percent"], 2), "%")
    psir = next(pydicom.dcmread(out / n) for n in job["outputs"]
                if pydicom.dcmread(out / n, stop_before_pixels=True).SeriesDescription.endswith("PSIR (cmr-node)")
                and "dDCE" in pydicom.dcmread(out / n, stop_before_pixels=True).SeriesDescription)
    signal = psir.pixel_array * float(psir.RescaleSlope) + float(psir.RescaleIntercept)
    assert np.median(signal[phantom.labels == Region.INFARCT]) > 300 > abs(np.median(signal[phantom.labels == Region.REMOTE]))
    assert np.median(signal[phantom.labels == Region.LV_BLOOD]) < -200      # dark blood: no interstitium


def test_infarct_extent_per_aha_segment_is_the_phantoms(default_run):
    """The phantom's infarct spans 40-140 degrees (anterior, 90, at the top; RV at 180) through the inner 60 %
    of the wall: mid anterior (segment 7, 60-120 degrees) is covered over its whole arc, the two neighbours
    (8 and 12) over a third of theirs, and segments 9-11 not at all. The area of the inner 60 % of the wall
    is (r_i^2 - r_endo^2) / (r_epi^2 - r_endo^2) of it (Kim et al., NEJM 2000;343:1445, score the extent)."""
    phantom, job, out = default_run
    g = SliceGeometry()
    inner = g.lv_endo_radius_mm + g.infarct_transmurality * (g.lv_epi_radius_mm - g.lv_endo_radius_mm)
    covered = (inner ** 2 - g.lv_endo_radius_mm ** 2) / (g.lv_epi_radius_mm ** 2 - g.lv_endo_radius_mm ** 2)
    expected = {7: 100 * covered, 8: 100 * covered / 3, 12: 100 * covered / 3, 9: 0.0, 10: 0.0, 11: 0.0}
    found = {s["segment"]: s for s in job["results"]["aha_segments"]["lge_dDCE"]}
    assert sorted(found) == sorted(expected)
    for number, extent in expected.items():
        assert abs(found[number]["infarct_extent_percent"] - extent) < 5.0, (number, found[number])
        transmurality = found[number]["transmurality_percent"]
        assert transmurality == 0.0 if extent == 0 else abs(transmurality - 100 * g.infarct_transmurality) < 10.0
    assert found[7]["mvo_percent"] > 0 and found[9]["mvo_percent"] == 0.0
    # the report carries the same numbers with the segment's CID 3717 code as finding site, and the SEG is valid
    sr_path = out / f"{job['results']['report_sop_instance_uid']}.dcm"
    groups = sr_groups(sr_path)
    for number, segment in found.items():
        group = groups[f"AHA {number} {segment['name']} (LGE_dDCE)"]
        assert group[("INFSEG", "99CMRN", None)] == (segment["infarct_extent_percent"], "%")
    seg_path = next(out / n for n in job["outputs"] if pydicom.dcmread(out / n, stop_before_pixels=True)
                    .SeriesDescription == "LGE_dDCE AHA segments (cmr-node)")
    seg = hd.seg.segread(seg_path)
    assert [seg.get_segment_description(n).segmented_property_type.value for n in seg.get_segment_numbers()] == \
        [codes.AHA_SEGMENTS[n].value for n in range(7, 13)]


@pytest.mark.integration     # no external program, but a dDCE study of its own through the module (3 to 4 s)
def test_no_mvo_where_the_phantom_has_none(tmp_path):
    job, _ = run_lge(tmp_path, ddce_phantom(SliceGeometry(mvo_width_deg=0.0)))
    assert job["results"]["lge_ddce"]["nsd"]["mvo_voxels"] == 0


@pytest.mark.integration     # no external program, but a dDCE study of its own through the module (3 to 4 s)
def test_infarct_with_blood_t1_at_15_min_is_still_separated(tmp_path):
    phantom = ddce_phantom(SliceGeometry(mvo_width_deg=0.0), times_min=EQUAL_T1_TIMES,
                           parameters=infarct_matching_blood_t1())
    results = run_lge(tmp_path, phantom)[0]["results"]
    std, dde = results["lge_standard"]["nsd"], results["lge_ddce"]["nsd"]
    assert abs(std["signal_infarct"] - std["signal_blood"]) < 0.05      # standard LGE: same signal
    assert dde["cnr_infarct_blood"] > 15.0     # README: about 19 against 0.004


@pytest.mark.integration     # no external program, but a dDCE study of its own through the module (3 to 4 s)
def test_small_subendocardial_infarct_is_detected(tmp_path):
    geometry = SliceGeometry(infarct_width_deg=40.0, infarct_transmurality=0.35, mvo_width_deg=0.0)
    phantom = ddce_phantom(geometry)
    assert truth(phantom)["infarct_size_percent"] < 5.0
    job, out = run_lge(tmp_path, phantom)
    found = job["results"]["lge_ddce"]["nsd"]
    assert abs(found["infarct_size_percent"] - truth(phantom)["infarct_size_percent"]) < 2.0
    assert found["infarct_voxels"] > 0.5 * np.isin(phantom.labels, (Region.INFARCT,)).sum()


def _add_myocardium_seg(directory, study, files, rv=None):
    """A hand-drawn LV myocardium SEG on the native map, as a workstation would send it; with rv (rows, cols),
    an RV blood pool segment too."""
    directory.mkdir(parents=True, exist_ok=True)
    native = pydicom.dcmread(files[0])
    labels = ddce_phantom().labels
    segments = [Segment("LV myocardium", codes.ANATOMICAL_STRUCTURE, codes.LV_MYOCARDIUM, manual=True)]
    masks = [np.isin(labels, MYOCARDIUM)]
    if rv is not None:
        segments.append(Segment("RV blood pool", codes.ANATOMICAL_STRUCTURE, codes.RIGHT_VENTRICLE, manual=True))
        masks.append(rv)
    seg = build_segmentation(np.stack(masks, axis=-1)[None], [native], segments,
                             series_uid=pydicom.uid.generate_uid(), sop_uid=pydicom.uid.generate_uid(),
                             series_number=60, series_description="LV myocardium contours", software_version="test")
    (directory / "seg").mkdir()
    seg.save_as(directory / "seg" / "myocardium.dcm")


@pytest.mark.integration     # no external program, but a dDCE study of its own through the module (3 to 4 s)
def test_received_myocardium_seg_is_used_and_said_so(tmp_path):
    """The drawn wall is the myocardium, and the drawn RV (here on the side opposite the image's RV blood)
    marks the septum of the AHA segments."""
    phantom = ddce_phantom()
    opposite_rv = (phantom.labels == Region.RV_BLOOD)[::-1, ::-1]
    job, out = run_lge(tmp_path, phantom, extra_files=[lambda *a: _add_myocardium_seg(*a, rv=opposite_rv)])
    results = job["results"]
    assert results["myocardium_source"] == "received SEG"
    septum = results["aha_segments"]["septum_deg"][0]
    assert abs((septum + 180) % 360 - 180) < 15, septum
    assert results["lge_ddce"]["nsd"]["myocardium_voxels"] == np.isin(phantom.labels, MYOCARDIUM).sum()
    assert abs(results["lge_ddce"]["nsd"]["infarct_size_percent"] - truth(phantom)["infarct_size_percent"]) < 2.0
    wall = next(g for g in results["measurements"] if g["region"] == "LV myocardium (LGE_dDCE)")
    assert {"name": {"value": "122554", "scheme": "DCM", "meaning": "Segmentation Method"},
            "value": {"value": "87982008", "scheme": "SCT", "meaning": "Manual"}} in wall["evaluations"]


@pytest.mark.integration
def test_end_to_end_into_orthanc(tmp_path, orthanc, make_node):
    study, _, files = write_ddce_study(tmp_path / "scanner", SyntheticStudy())
    config = node_config_dict(tmp_path / "data", [orthanc_destination(orthanc)])
    config["routes"] = [dict(LGE_ROUTE, destinations=["orthanc"])]
    node = make_node(config)
    assert storescu(node.port, files).returncode == 0

    def lge_series():
        found = set()
        for sop_class in ("1.2.840.10008.5.1.4.1.1.4", SEG_SOP_CLASS):
            for i in orthanc.find_instances(sop_class):
                tags = orthanc.instance_tags(i)
                if tags.get("StudyInstanceUID") == study.study_uid:
                    found.add(tags.get("SeriesDescription"))
        return found
    wanted = {"LGE_dDCE 15min PSIR (cmr-node)", "LGE_dDCE 15min IR (cmr-node)", "LGE_standard 15min PSIR (cmr-node)",
              "LGE_dDCE regions (cmr-node)"}
    wait_until(lambda: wanted <= lge_series(), timeout=240, what="LGE images and SEG in Orthanc")
    rows = node.registry.rows()
    assert any(r["concept_code"] == "INFSIZE" for r in rows)
    # a hand-drawn myocardium arrives later: the module runs again with it, and the report says Manual
    _add_myocardium_seg(tmp_path / "workstation", study, files)
    assert storescu(node.port, [tmp_path / "workstation" / "seg" / "myocardium.dcm"], extra=["-R"]).returncode == 0

    def manual_report():
        return [r for r in node.registry.rows() if r["producer"] == "cmr-node lge"
                and r["region"] == "LV myocardium (LGE_dDCE)" and r["concept_code"] == "INFSIZE"]
    wait_until(lambda: any(e["value_meaning"] == "Manual" for e in node.registry.db.query(
        "SELECT e.value_meaning FROM evaluations e JOIN reports r ON r.id = e.report_id "
        "WHERE r.current = 1 AND r.producer = 'cmr-node lge' AND e.region = 'LV myocardium (LGE_dDCE)'")),
        timeout=240, what="LGE re-run with the received myocardium")
    assert len(manual_report()) == 1      # the revision replaced the automatic report


def test_a_segment_on_two_slices_counts_the_infarct_on_both():
    """Four or more slices share three levels, so a basal segment can lie on two slices: its extent is the
    infarct on both over the segment's voxels on both."""
    from types import SimpleNamespace
    from node.process.modules.lge import _segment_measures
    rows, cols = np.mgrid[0:41, 0:41]
    r = np.hypot(rows - 20, cols - 20)
    wall, cavity = (r >= 8) & (r < 14), r < 8
    infarct = wall & (r < 11)
    empty = np.zeros_like(wall)
    synthetic = [SimpleNamespace(segmentation=SimpleNamespace(infarct=empty, mvo=empty)),
                 SimpleNamespace(segmentation=SimpleNamespace(infarct=infarct, mvo=empty))]
    segment = np.stack([wall, wall])                       # the same segment on both slices
    entries = []
    measures, _ = _segment_measures(synthetic, np.stack([wall, wall]), np.stack([cavity, cavity]), 0.01,
                                    entries)(1, segment)
    assert entries[0]["infarct_extent_percent"] == pytest.approx(100 * infarct.sum() / (2 * wall.sum()), abs=0.01)
    assert entries[0]["transmurality_percent"] > 0
