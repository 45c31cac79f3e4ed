"""The dDCE module on the phantom written as scanner DICOM, offline and end to end through Orthanc."""
import json
import shutil

import numpy as np
import pydicom
import pytest

import highdicom as hd

from analysis.aha_segments import SEGMENT_NAMES
from analysis.phantoms import Region
from dicom_out.phantom_studies import write_ddce_study
from dicom_out.synthetic_mr import SyntheticStudy
from node.config import offline_config
from node.process.offline import process_folder
from node.registry.parse import parse_report
from tests.conftest import (PM_SOP_CLASS, SEG_SOP_CLASS, SR_SOP_CLASS, assert_report_matches, dciodvfy_errors, sr_groups, node_config_dict, orthanc_destination, storescu,
                            wait_until)

DDCE_ROUTE = {"name": "ddce", "series_description": "(?i)ddce", "module": "ddce"}


@pytest.fixture(scope="module")
def ddce_study(tmp_path_factory):
    return write_ddce_study(tmp_path_factory.mktemp("ddce"))


@pytest.fixture(scope="module")
def processed(tmp_path_factory, ddce_study):
    out = tmp_path_factory.mktemp("out")
    report = process_folder(ddce_study[2][0].parent.parent, out, offline_config())
    return report, out


def ddce_job(report):
    return next(j for j in report["jobs"] if j["module"] == "ddce")


def maps_by_description(out):
    return {ds.SeriesDescription: p for p in out.glob("*.dcm")
            if (ds := pydicom.dcmread(p, stop_before_pixels=True)).SOPClassUID == PM_SOP_CLASS}


@pytest.mark.integration     # dciodvfy; and the whole dDCE study through the module takes about 9 s
def test_report_has_the_wall_per_window_and_every_number(processed, ddce_study):
    report, out = processed
    results = ddce_job(report)["results"]
    sr_path = out / f"{results['report_sop_instance_uid']}.dcm"
    assert dciodvfy_errors(sr_path) == []
    assert_report_matches(sr_path, results["measurements"])
    groups = sr_groups(sr_path)
    segments = [f"AHA {n} {SEGMENT_NAMES[n]}" for n in range(7, 13)]     # the phantom's one slice is mid-ventricular
    assert set(groups) == {f"{region}, {window}-min window" for window in (5, 30) for region in
                           ("LV myocardium", "Remote myocardium (fitted voxels)", "Infarct (fitted voxels)",
                            "Microvascular obstruction (fitted voxels)", *segments)} | {"LV blood pool",
                                                                                       "Quality control"}
    truth = ddce_study[1].truth["remote"]
    for window in (5, 30):
        wall = groups[f"LV myocardium, {window}-min window"]
        # the wall is mostly remote myocardium: its median total distribution volume is remote's
        assert abs(wall[("VEVP", "99CMRN", "Median")][0] - (truth["ve"] + truth["vp"])) < 0.025
        assert wall[("VEVP", "99CMRN", "Median")][1] == "1"
        # PS and Fp maps are withheld (identified nowhere): no statistics of them either
        assert not any(code in ("PS", "FP") for code, _, _ in wall)
        assert wall[("FAILFRAC", "99CMRN", None)][0] < 5.0
        assert wall[("128553", "DCM", None)][1] == "mm"
    parsed = {g.region: g for g in parse_report(pydicom.dcmread(sr_path)).groups}
    for window, entry in zip((5, 30), results["windows"]):
        group = parsed[f"LV myocardium, {window}-min window"]
        said = {n.meaning: v.meaning for n, v in group.evaluations}
        wall = entry["regions"][0]
        assert said["Permeability surface area product identifiable"] == "No"
        assert said["Total distribution volume ve + vp identifiable"] == \
            ("Yes" if wall["ve_plus_vp"]["identifiable"] else "No")
        regional = {m.name.value: m for m in group.measurements if m.derivation is None}
        if wall["ve_plus_vp"]["identifiable"]:   # the regional value with its interval (TID 310), as results.json
            total = regional["VEVP"]
            assert [total.value, total.ci95_low, total.ci95_high] == pytest.approx(
                [wall["ve_plus_vp"]["value"], *wall["ve_plus_vp"]["ci95"]], abs=1e-6)
        assert "PS" not in regional                # a bound under its own concept, never a plain PS
        low = wall["ps_ml_per_min_per_g"]["ci95"][0]
        assert (regional["LCL95-PS"].value if "LCL95-PS" in regional else None) == low
    seg = next(p for p in out.glob("*.dcm") if pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID == SEG_SOP_CLASS)
    assert dciodvfy_errors(seg) == []


@pytest.mark.integration     # no external program, but the whole dDCE study through the module (about 30 s)
def test_outputs_identified_parameters_and_withholds_the_rest(processed):
    report, out = processed
    job = ddce_job(report)
    assert job["state"] == "done" and sorted(j["module"] for j in report["jobs"]) == ["ddce", "lge", "summary"]  # no ECV
    names = set(maps_by_description(out))
    for window in ("5min", "30min"):
        assert {f"dDCE {window} {p}" for p in ("ve", "ve+vp", "R2")} <= names
        # delayed data identify PS, Fp and vp nowhere (the point): not sent as measurements
        assert not {f"dDCE {window} {p}" for p in ("vp", "PS", "Fp")} & names
    results = job["results"]
    assert results["injection_time_source"] == "Contrast Bolus Start Time (0018,1042)"
    assert results["r1_per_mM_s"] == pytest.approx(5.2) and results["contrast_agent"] == "Gadobutrol"
    for window in results["windows"]:
        s = window["slices"][0]
        assert s["aif_plasma"]["r_squared"] > 0.99 and s["blood_pool_voxels"] > 100
        withheld = {w["parameter"]: w["reason"] for w in window["withheld_maps"]}
        assert set(withheld) == {"vp", "ps", "fp"} and "fewer than 5%" in withheld["ps"]
        assert {m["parameter"] for m in window["maps"]} == {"ve", "ve_plus_vp", "r_squared"}
        shares = window["identification"]["parameters"]
        assert window["identification"]["assessed_in"] == "lv_myocardium"
        assert shares["ve_plus_vp"]["fraction"] > (0.9 if window["window_min"] == 30 else 0.1)
        assert shares["ps_ml_per_min_per_g"]["fraction"] < 0.05
        assert [r["region"] for r in window["regions"]] == ["lv_myocardium", "remote", "infarct", "mvo"]
        keys = ("ve", "vp", "ve_plus_vp", "ps_ml_per_min_per_g", "fp_ml_per_min_per_g", "mean_lag_s")
        for wall in window["regions"]:
            for key in keys:
                assert set(wall[key]) >= {"value", "ci95", "identifiable"}, key
                value, (low, high) = wall[key]["value"], wall[key]["ci95"]
                if wall[key]["identifiable"]:
                    assert low <= value <= high
                else:   # no number where the data give only a bound
                    assert value is None and (low is None or high is None)
            for key in ("ps_ml_per_min_per_g", "fp_ml_per_min_per_g"):   # delayed maps never tell them
                assert not wall[key]["identifiable"], (wall["region"], key)
    thirty = results["windows"][1]["regions"][0]["ve_plus_vp"]
    assert thirty["identifiable"] and thirty["ci95"][1] - thirty["ci95"][0] < 0.05


@pytest.mark.integration     # the dDCE study through the module (shared with the tests above)
def test_remote_infarct_and_mvo_intervals_hold_the_truth(processed, ddce_study):
    """The regions from the synthetic LGE, each less its edge voxels (ddce_lesions): at 30 min every identified
    ve, ve + vp and ve interval holds the phantom's truth, and the SEG shows the regions fitted."""
    report, out = processed
    results = ddce_job(report)["results"]
    phantom = ddce_study[1]
    lesions = results["lesion_regions"]
    assert lesions["found"] and lesions["from_window_min"] == 5.0
    thirty = {r["region"]: r for r in results["windows"][1]["regions"]}
    for name in ("remote", "infarct", "mvo"):
        truth = phantom.truth[name]
        for key, true in (("ve", truth["ve"]), ("ve_plus_vp", truth["ve"] + truth["vp"])):
            estimate = thirty[name][key]
            assert estimate["identifiable"], (name, key)
            assert estimate["ci95"][0] <= true <= estimate["ci95"][1], (name, key, estimate, true)
    seg = next(p for p in out.glob("*.dcm") if (d := pydicom.dcmread(p, stop_before_pixels=True)).SOPClassUID
               == SEG_SOP_CLASS and d.SeriesDescription == "dDCE regions (cmr-node)")
    ds = pydicom.dcmread(seg)
    labels = [item.SegmentLabel for item in ds.SegmentSequence]
    fitted = ("Remote myocardium (fitted voxels)", "Infarct (fitted voxels)", "Microvascular obstruction (fitted voxels)")
    assert labels == ["LV myocardium", "LV blood pool", *fitted]
    masks = ds.pixel_array.reshape(len(labels), *phantom.labels.shape).astype(bool)
    for label, region in zip(fitted, (Region.REMOTE, Region.INFARCT, Region.MVO)):
        assert np.mean(phantom.labels[masks[labels.index(label)]] == region) > 0.9, label
    assert masks[labels.index("Infarct (fitted voxels)")].sum() == lesions["voxels"]["infarct"]
    # the thin MVO band has no core: its edge voxels are fitted, on slice 0 (the phantom's one slice)
    assert lesions["edge_voxels_included"] == {"remote": [], "infarct": [], "mvo": [0]}
    # each report group points at its own segment (results.json's groups are the report's)
    for group in results["measurements"]:
        if "(fitted voxels)" in group["region"]:
            number = group["segment"]["segment_number"]
            assert group["region"].startswith(labels[number - 1]), (group["region"], number)


@pytest.mark.integration     # dciodvfy, and the dDCE study through the module (shared with the tests above)
def test_aha_segments_carry_their_own_intervals_and_reach_the_summary(processed, ddce_study):
    """Per AHA segment and window, the regional ve + vp: at 30 min the interval of every segment without
    infarct holds remote myocardium's truth, the infarcted anterior segment's lies above it, and a segment the
    data do not identify gets no value, in results.json and in the report; the summary's bullseyes show
    exactly the report's identified values, and the LGE extents."""
    report, out = processed
    results = ddce_job(report)["results"]
    phantom = ddce_study[1]
    remote = phantom.truth["remote"]["ve"] + phantom.truth["remote"]["vp"]
    path = next(p for p in out.glob("*.dcm")
                if pydicom.dcmread(p, stop_before_pixels=True).SeriesDescription == "dDCE AHA segments (cmr-node)")
    assert dciodvfy_errors(path) == []
    seg = hd.seg.segread(path)
    masks = np.asarray(seg.get_volume(combine_segments=False).array)[0] > 0
    mask_of = {int(seg.get_segment_description(n).segment_label.split()[1]): masks[..., k]
               for k, n in enumerate(seg.get_segment_numbers())}
    assert sorted(mask_of) == list(range(7, 13))
    parsed = {g.region: g for g in parse_report(pydicom.dcmread(out / f"{results['report_sop_instance_uid']}.dcm")).groups}
    for window in results["windows"]:
        for segment in window["segments"]:
            [on_slice] = segment["slices"]          # the phantom's one slice
            estimate = on_slice["ve_plus_vp"]
            group = parsed[f"AHA {segment['segment']} {segment['name']}, {window['window_min']:g}-min window"]
            regional = {m.name.value: m for m in group.measurements if m.derivation is None}
            infarcted = np.isin(phantom.labels[mask_of[segment["segment"]]], (Region.INFARCT, Region.MVO)).mean()
            if not estimate["identifiable"]:
                assert estimate["value"] is None and "VEVP" not in regional
                assert window["window_min"] == 30 or estimate["ci95"][1] is None   # 5 min: open above
                continue
            low, high = estimate["ci95"]
            assert [regional["VEVP"].value, regional["VEVP"].ci95_low, regional["VEVP"].ci95_high] == \
                pytest.approx([estimate["value"], low, high], abs=1e-6)
            if infarcted == 0:
                assert low <= remote <= high, (segment, remote)
            elif infarcted > 0.5:
                assert low > remote, segment
    thirty = {s["segment"]: s["slices"][0]["ve_plus_vp"] for s in results["windows"][1]["segments"]}
    assert all(e["identifiable"] for e in thirty.values())       # 30 min identify every segment of the phantom
    summary = next(j for j in report["jobs"] if j["module"] == "summary")["results"]
    bullseyes = {b["title"]: b["segments"] for b in summary["bullseyes"]}
    assert bullseyes["dDCE ve + vp, 30-min window"] == {str(n): e["value"] for n, e in thirty.items()}
    lge = next(j for j in report["jobs"] if j["module"] == "lge")["results"]["aha_segments"]["lge_dDCE"]
    assert bullseyes["Infarct extent, synthetic LGE (% of segment)"] == {
        str(s["segment"]): s["infarct_extent_percent"] for s in lge}


@pytest.mark.integration     # dciodvfy
def test_identification_seg_shows_where_each_parameter_is_identified(processed, ddce_study):
    report, out = processed
    phantom = ddce_study[1]
    for window in ddce_job(report)["results"]["windows"]:
        uid = window["identification"]["seg_sop_instance_uid"]
        seg = pydicom.dcmread(out / f"{uid}.dcm")
        assert dciodvfy_errors(out / f"{uid}.dcm") == []
        assert seg.SeriesDescription == f"dDCE {window['window_min']:g}min identified (cmr-node)"
        labels = [s.SegmentLabel for s in seg.SegmentSequence]
        shares = window["identification"]["parameters"]
        names = {"ve": "ve", "vp": "vp", "ve_plus_vp": "ve + vp", "ps_ml_per_min_per_g": "PS",
                 "fp_ml_per_min_per_g": "Fp"}
        assert labels == [f"{names[k]} identified" for k, v in shares.items() if v["identified_voxels"] > 0]
        frames = seg.pixel_array.reshape(len(labels), *phantom.labels.shape)   # one slice: a frame per segment
        total = frames[labels.index("ve + vp identified")].astype(bool)
        assert int(total.sum()) == shares["ve_plus_vp"]["identified_voxels"]
        # identified voxels lie in the myocardium, never in the blood pool
        assert not (total & (phantom.labels == Region.LV_BLOOD)).any()
        # 30 min: everywhere; 5 min: the infarct's large ve + vp, not remote's (the unsampled first pass)
        infarct, remote = (total[phantom.labels == r].mean() for r in (Region.INFARCT, Region.REMOTE))
        assert infarct > 0.9 and remote > (0.9 if window["window_min"] == 30 else 0.0)
        assert window["window_min"] == 30 or remote < 0.3


@pytest.mark.integration     # the whole dDCE study again, and dciodvfy
def test_a_site_may_have_unidentified_maps_sent_labelled(tmp_path, ddce_study):
    from node.config import parse_config
    config = parse_config({"inputs": {"ddce_unidentified_maps": "send_labelled"}})
    report = process_folder(ddce_study[2][0].parent.parent, tmp_path, config)
    maps = maps_by_description(tmp_path)
    for window in ("5min", "30min"):
        for p in ("vp", "PS", "Fp"):
            assert f"dDCE {window} {p} NOT IDENTIFIED" in maps
    for window in ddce_job(report)["results"]["windows"]:
        assert window["withheld_maps"] == [] and len(window["maps"]) == 6
        assert {m["parameter"] for m in window["maps"] if not m["identified"]} == {"vp", "ps", "fp"}
    for description, path in maps.items():
        assert dciodvfy_errors(path) == [], description
        ds = pydicom.dcmread(path)
        unit = ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0].MeasurementUnitsCodeSequence[0]
        expected = "ml/min/g" if description.split()[2] in ("PS", "Fp") else "1"
        assert (unit.CodeValue, unit.CodingSchemeDesignator) == (expected, "UCUM"), description
    fp = pydicom.dcmread(maps["dDCE 30min Fp NOT IDENTIFIED"]).pixel_array
    phantom = ddce_study[1]
    assert np.median(fp[phantom.labels == Region.MVO]) < np.median(fp[phantom.labels == Region.INFARCT])


@pytest.mark.integration     # no external program, but the whole dDCE study through the module
def test_map_values_match_phantom(processed, ddce_study):
    _, phantom, _ = ddce_study
    maps = maps_by_description(processed[1])
    five = pydicom.dcmread(maps["dDCE 5min ve+vp"]).pixel_array
    thirty = pydicom.dcmread(maps["dDCE 30min ve+vp"]).pixel_array
    for region in (Region.REMOTE, Region.INFARCT):
        truth = phantom.truth[region.name.lower()]
        in_region = phantom.labels == region
        assert abs(np.median(thirty[in_region]) - (truth["ve"] + truth["vp"])) < 0.025
        assert abs(np.median(five[in_region]) - np.median(thirty[in_region])) < 0.02


@pytest.mark.integration     # no external program, but two whole dDCE studies (over 10 s)
def test_five_minute_maps_do_not_change_when_later_maps_arrive(tmp_path, ddce_study):
    files = ddce_study[2]
    early = tmp_path / "early"
    for f in files:
        if f.parent.name == "native" or int(f.parent.name.split("_")[1]) < 5:   # maps at 1..5 min
            target = early / f.parent.name
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, target)
    first = ddce_job(process_folder(early, tmp_path / "a", offline_config()))
    assert [w["window_min"] for w in first["results"]["windows"]] == [5.0]
    full = ddce_job(process_folder(files[0].parent.parent, tmp_path / "b", offline_config()))
    five = {m["sop_instance_uid"] for m in first["results"]["windows"][0]["maps"]}
    assert five == {m["sop_instance_uid"] for m in full["results"]["windows"][0]["maps"]}


@pytest.mark.integration     # dciodvfy
def test_too_early_gives_no_window_and_no_error(tmp_path, ddce_study):
    files = ddce_study[2]
    early = tmp_path / "in"
    for f in files:
        if f.parent.name in ("native", "post_00", "post_01"):
            shutil.copy(f, early.mkdir(exist_ok=True) or early / f"{f.parent.name}.dcm")
    report = process_folder(early, tmp_path / "out", offline_config())
    job, final = [j for j in report["jobs"] if j["module"] == "ddce"]
    assert job["state"] == "done" and job["results"]["windows"] == [] and job["outputs"] == []
    assert job["results"]["quality_flags"] == ["no post-contrast map reaches 5 min: nothing fitted yet"]
    assert job["results"]["waiting_for"] == "post-contrast maps up to 5 min"
    # the folder is the whole study: a final run says what is missing, in a report the summary reads
    assert final["results"]["quality_flags"] == [
        "the study ended with no post-contrast map at 5 min (the last at 2.0 min): no dDCE fit"]
    [sr] = final["outputs"]
    assert dciodvfy_errors(tmp_path / "out" / sr) == []
    qc = next(g for g in parse_report(pydicom.dcmread(tmp_path / "out" / sr)).groups if g.region == "Quality control")
    assert [v.value for n, v in qc.evaluations if n.value == "111052"] == ["QC-MISSING"]
    summary = next(j for j in report["jobs"] if j["module"] == "summary")
    assert summary["results"]["quality_flags"] == ["ddce: Part of the protocol missing"]


def test_unknown_injection_time_is_a_clear_error(tmp_path):
    _, _, files = write_ddce_study(tmp_path / "in", bolus_start_in_dicom=False)
    job = ddce_job(process_folder(tmp_path / "in", tmp_path / "out", offline_config()))
    assert job["state"] == "failed" and "time of injection unknown" in job["error"]


@pytest.mark.integration
def test_end_to_end_a_study_that_ends_before_five_minutes_gets_a_report_saying_so(tmp_path, orthanc, make_node):
    """Maps at 1 and 2 min, then nothing: when the study completes, the dDCE route's job, which was waiting for
    a 5-minute map, runs a last time and sends a report whose quality finding says what is missing."""
    study, _, files = write_ddce_study(tmp_path / "scanner", SyntheticStudy())
    config = node_config_dict(tmp_path / "data", [orthanc_destination(orthanc)])
    config["routes"] = [dict(DDCE_ROUTE, destinations=["orthanc"])]
    node = make_node(config)
    early = [f for f in files if f.parent.name in ("native", "post_00", "post_01")]
    assert storescu(node.port, early).returncode == 0

    def reports():
        return [i for i in orthanc.find_instances(SR_SOP_CLASS)
                if orthanc.instance_tags(i).get("StudyInstanceUID") == study.study_uid]
    [sr] = wait_until(lambda: reports() or None, timeout=120, what="the dDCE report of a study that ended early")
    path = tmp_path / "report.dcm"
    path.write_bytes(orthanc.instance_file(sr))
    qc = next(g for g in parse_report(pydicom.dcmread(path)).groups if g.region == "Quality control")
    assert [v.value for n, v in qc.evaluations if n.value == "111052"] == ["QC-MISSING"]
    jobs = [j for j in node.index.jobs() if j.route == "ddce"]
    assert [bool(j.inputs.get("final")) for j in jobs] == [False] * (len(jobs) - 1) + [True]


@pytest.mark.integration
def test_end_to_end_five_minute_maps_before_the_study_ends(tmp_path, orthanc, make_node):
    study, phantom, files = write_ddce_study(tmp_path / "scanner", SyntheticStudy())
    config = node_config_dict(tmp_path / "data", [orthanc_destination(orthanc)])
    config["routes"] = [dict(DDCE_ROUTE, destinations=["orthanc"])]
    node = make_node(config)

    def maps():
        found = {}
        for i in orthanc.find_instances(PM_SOP_CLASS):
            tags = orthanc.instance_tags(i)
            if tags.get("StudyInstanceUID") == study.study_uid:
                found[tags["SeriesDescription"]] = i
        return found
    early = [f for f in files if f.parent.name == "native" or int(f.parent.name.split("_")[1]) < 5]
    assert storescu(node.port, early).returncode == 0
    # ve, ve+vp and R2: vp, PS and Fp are identified nowhere and withheld
    wait_until(lambda: len(maps()) == 3, timeout=180, what="the three 5-minute maps in Orthanc")
    assert all(d.startswith("dDCE 5min") for d in maps())
    assert storescu(node.port, [f for f in files if f not in early]).returncode == 0
    found = wait_until(lambda: maps() if len(maps()) == 6 else None, timeout=240, what="the 30-minute maps")
    path = tmp_path / "ve_plus_vp.dcm"
    path.write_bytes(orthanc.instance_file(found["dDCE 30min ve+vp"]))
    assert dciodvfy_errors(path) == []
    total = pydicom.dcmread(path).pixel_array
    assert abs(np.median(total[phantom.labels == Region.INFARCT]) - 0.66) < 0.03
    assert len(maps()) == 6   # the 5-minute maps were rewritten in place, not duplicated
    results = [json.loads(p.read_text()) for p in (tmp_path / "data" / "results").glob("*/results.json")]
    assert max(r["last_map_min"] for r in results) == 30.0
