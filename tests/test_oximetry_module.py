"""T2 maps and MR oximetry through the node's modules, offline and into Orthanc."""
import numpy as np
import pydicom
import pytest

from analysis.phantoms.oximetry import oximetry_phantom
from dicom_out.phantom_studies import write_oximetry_study
from dicom_out.synthetic_mr import SyntheticStudy
from node.config import parse_config
from node.process.offline import process_folder
from tests.conftest import (PM_SOP_CLASS, assert_report_matches, dciodvfy_errors, node_config_dict,
                            orthanc_destination, sr_groups, storescu, wait_until)

ROUTES = [{"name": "t2map", "series_description": "(?i)t2prep", "image_type": "(?i)^ORIGINAL", "module": "t2map"},
          {"name": "oximetry", "series_description": "(?i)(t2prep|coronary|oximetry)", "module": "oximetry"}]
CLINICAL = {"hb_g_per_dl": 14.0, "sao2": 0.98, "mbf_ml_per_min_per_g": 1.0, "stroke_volume_ml": 70.0,
            "mean_arterial_pressure_mmhg": 93.0, "heart_rate_per_min": 70.0, "lv_mass_g": 150.0}


def run_offline(tmp_path, inputs=None, **phantom_args):
    study, phantom, files = write_oximetry_study(tmp_path / "in", phantom=oximetry_phantom(**phantom_args))
    config = parse_config({"routes": ROUTES, "inputs": inputs or {}})
    return phantom, process_folder(tmp_path / "in", tmp_path / "out", config), tmp_path / "out"


def job(report, module):
    return next(j for j in report["jobs"] if j["module"] == module)


@pytest.mark.parametrize("so2, hct", [(0.40, 0.35), (0.60, 0.42), (0.80, 0.50)])
def test_sbo2_from_coronary_sinus(tmp_path, so2, hct):
    _, report, _ = run_offline(tmp_path, inputs={"hematocrit": hct}, cs_so2=so2, hematocrit=hct)
    results = job(report, "oximetry")["results"]
    assert abs(results["sbo2_percent"] - so2 * 100) < 3.0
    assert results["quality_flags"] == []
    assert results["mvo2_ml_per_min_per_g"] is None and "hb_g_per_dl" in results["missing_inputs"]


@pytest.fixture(scope="module")
def with_clinical_inputs(tmp_path_factory):
    return run_offline(tmp_path_factory.mktemp("clinical"), inputs=dict(CLINICAL, hematocrit=0.42), cs_so2=0.35)


def test_mvo2_and_mee_with_configured_inputs(with_clinical_inputs):
    _, report, out = with_clinical_inputs
    results = job(report, "oximetry")["results"]
    sbo2 = results["sbo2_percent"] / 100
    assert results["missing_inputs"] == []
    assert results["mvo2_ml_per_min_per_g"] == pytest.approx(1.0 * (0.98 - sbo2) * 0.14 * 1.36, rel=1e-3)
    assert 10 < results["mee_percent"] < 30
    for module in ("oximetry", "t2map"):
        found = job(report, module)["results"]
        assert_report_matches(out / f"{found['report_sop_instance_uid']}.dcm", found["measurements"])
    groups = sr_groups(out / f"{results['report_sop_instance_uid']}.dcm")
    assert groups["Coronary sinus"][("2711-0", "LN", None)] == (results["sbo2_percent"], "%")
    consumption = groups["LV myocardium (oxygen consumption)"]
    assert consumption[("122239", "DCM", None)] == (results["mvo2_ml_per_min_per_g"], "ml/min/g")
    assert consumption[("MEE", "99CMRN", None)] == (results["mee_percent"], "%")


@pytest.mark.integration
def test_oximetry_and_t2_outputs_are_valid_dicom(with_clinical_inputs):
    _, report, out = with_clinical_inputs
    for name in job(report, "oximetry")["outputs"] + job(report, "t2map")["outputs"]:
        assert dciodvfy_errors(out / name) == [], name


def test_t2_map_matches_phantom(tmp_path):
    phantom, report, out = run_offline(tmp_path)
    maps = {pydicom.dcmread(p).SeriesDescription: p for p in out.glob("*.dcm")}
    t2 = pydicom.dcmread(maps["T2prep_oximetry T2 (cmr-node)"]).pixel_array
    myocardium = np.isin(phantom.labels, (4, 5, 6))
    assert abs(np.median(t2[myocardium]) - 45.0) < 1.5
    assert job(report, "t2map")["results"]["slices"][0]["preparation_time_source"] == "Image Comments (0020,4000)"


def test_missing_roi_is_flagged_and_the_map_still_sent(tmp_path):
    write_oximetry_study(tmp_path / "in", with_roi=False)
    report = process_folder(tmp_path / "in", tmp_path / "out", parse_config({"routes": ROUTES}))
    oxi = job(report, "oximetry")
    assert oxi["state"] == "done" and oxi["results"]["quality_flags"] == ["coronary sinus ROI missing: no SbO2, MVO2 or MEE"]
    assert oxi["results"]["sbo2_percent"] is None and len(oxi["outputs"]) == 3   # SO2 map, its view, report
    groups = sr_groups(tmp_path / "out" / f"{oxi['results']['report_sop_instance_uid']}.dcm")
    assert set(groups) == {"SO2 map", "Quality control"} and groups["SO2 map"] == {}


@pytest.mark.integration
def test_roi_arriving_later_reruns_oximetry_into_orthanc(tmp_path, orthanc, make_node):
    study, phantom, files = write_oximetry_study(tmp_path / "scanner", SyntheticStudy(field_strength_t=3.0))
    config = node_config_dict(tmp_path / "data", [orthanc_destination(orthanc)])
    config["routes"] = [dict(r, destinations=["orthanc"]) for r in ROUTES]
    node = make_node(config)
    images, seg = files[:-1], files[-1]
    assert storescu(node.port, images).returncode == 0
    wait_until(lambda: len(node.index.jobs("done")) == 2, timeout=120, what="t2map and first oximetry job")
    assert storescu(node.port, [seg], extra=["-R"]).returncode == 0   # -R: propose the SEG class the file needs
    wait_until(lambda: len(node.index.jobs("done")) == 3, timeout=120, what="oximetry re-run with the ROI")
    import json
    results = [json.loads(p.read_text()) for p in (tmp_path / "data" / "results").glob("*/results.json")]
    oxi = [r for r in results if r.get("module") == "oximetry"]
    assert sorted(bool(r["quality_flags"]) for r in oxi) == [False, True]
    assert abs(next(r for r in oxi if not r["quality_flags"])["sbo2_percent"] - 40.0) < 3.0
    so2_maps = wait_until(lambda: [i for i in orthanc.find_instances(PM_SOP_CLASS)
                                   if orthanc.instance_tags(i).get("StudyInstanceUID") == study.study_uid
                                   and orthanc.instance_tags(i).get("SeriesDescription") == "SO2 map (cmr-node)"],
                          timeout=60, what="SO2 maps in Orthanc")
    assert len(so2_maps) >= 1


def test_coronary_sinus_from_rt_structure_set(tmp_path):
    from analysis.phantoms.oximetry import oximetry_phantom
    _, phantom, files = write_oximetry_study(tmp_path / "in", phantom=oximetry_phantom(cs_so2=0.55), roi_as="rtstruct")
    report = process_folder(tmp_path / "in", tmp_path / "out", parse_config({"routes": ROUTES}))
    results = job(report, "oximetry")["results"]
    assert results["quality_flags"] == []
    assert abs(results["sbo2_percent"] - 55.0) < 3.0
    voxels = results["slices"][0]["coronary_sinus_voxels"]
    assert abs(voxels - phantom.coronary_sinus.sum()) <= 8      # rasterised contour of the same 5 mm vessel


@pytest.mark.integration
def test_the_rt_structure_set_written_for_the_tests_is_valid_dicom(tmp_path):
    _, _, files = write_oximetry_study(tmp_path / "in", roi_as="rtstruct")
    assert dciodvfy_errors(files[-1]) == []
