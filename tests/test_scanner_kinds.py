"""What a series is, from its headers (node/scanner): kinds, vendor conventions, the T1 timeline of a study,
and native vs post-contrast T1 maps."""
import json
from datetime import timedelta

import numpy as np
import pytest
from pydicom.uid import generate_uid

from analysis.phantoms.t1_ecv import ecv_phantom
from dicom_out.synthetic_mr import SyntheticStudy, save_series, t1_map_series
from node.route.router import t1_timeline
from node.inputs.frames import field_strength_t, read_instance, vendor_of
from node.inputs.kinds import classify_files
from node.errors import InputError
from node.inputs.t1_maps import classify, group_by_series, read_t1_maps
from tests.scanner_files import START, Study, _ge_private, _pixels, _plane, save_one


def _series(tmp_path, name: str, frames: int, per_frame, study=None, image_type=("ORIGINAL", "PRIMARY", "M", "ND"),
            manufacturer="SIEMENS") -> list:
    """A small single-frame series; per_frame(ds, k) sets what varies."""
    study = study or Study(manufacturer, "model", 1.5)
    uid = generate_uid()
    paths = []
    for k in range(frames):
        ds = study.header(name, 7, START)
        ds.SeriesInstanceUID, ds.InstanceNumber = uid, k + 1
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImageType = list(image_type)
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "SS", ""
        _plane(ds, 8, 8, 2.0, 0.0)
        _pixels(ds, np.full((8, 8), 100.0))
        per_frame(ds, k)
        paths.append(save_one(ds, tmp_path / name))
    [found] = classify_files([str(p) for p in paths])
    return found


def test_ge_first_pass_perfusion_with_one_inversion_time_and_rising_trigger_time(tmp_path):
    """As a GE 1.5 T perfusion series is written: 79 frames of one slice, TI 130.8 ms on every frame, Trigger
    Time rising to 55 s, field strength in gauss."""
    study = Study("GE MEDICAL SYSTEMS", "Signa", 15000)

    def frame(ds, k):
        ds.InversionTime, ds.TriggerTime = 130.8, k * 700.0
        ds.ScanningSequence = ["GR", "IR"]
    found = _series(tmp_path, "PERFUSION", 79, frame, study)
    assert found.kinds == ["perfusion"] and "79 frames" in found.why["perfusion"]
    assert field_strength_t(read_instance(found.frames["perfusion"][0].instance.path).dataset) == 1.5


def test_cine_lge_t2prep_and_complex_components(tmp_path):
    cine = _series(tmp_path, "cine", 25, lambda ds, k: setattr(ds, "TriggerTime", k * 36.0))
    assert cine.kinds == ["cine"]

    def lge(ds, k):
        ds.InversionTime, ds.ScanningSequence = 300.0, ["GR", "IR"]
    assert _series(tmp_path, "LGE", 1, lge).kinds == ["lge"]
    t2 = _series(tmp_path, "T2map", 4, lambda ds, k: setattr(ds, "ImageComments", f"T2 prep. duration = {k * 25} ms"))
    assert t2.kinds == ["t2_raw"]

    def phase(ds, k):
        ds.InversionTime = 100.0 + 1000.0 * k
    for image_type, manufacturer, kind in ((("ORIGINAL", "PRIMARY", "P", "ND"), "SIEMENS", "phase"),
                                           (("ORIGINAL", "PRIMARY", "PHASE MAP", "P", "FFE"), "Philips", "phase"),
                                           (("ORIGINAL", "PRIMARY", "R_IR", "R", "IR"), "Philips", "real"),
                                           (("ORIGINAL", "PRIMARY", "I", "ND"), "SIEMENS", "imaginary")):
        found = _series(tmp_path, f"{kind}-{manufacturer}", 5, phase, image_type=image_type, manufacturer=manufacturer)
        assert found.kinds == [kind], (image_type, found.why)


def test_siemens_secondary_maps_and_enhanced_complex_component(tmp_path):
    def t1s(ds, k):
        ds.SeriesDescription = "MOLLI_MOCO_T1S"
    assert _series(tmp_path, "t1s", 1, t1s, image_type=("DERIVED", "PRIMARY", "M", "ND")).kinds == ["other"]

    def complex_phase(ds, k):
        ds.ComplexImageComponent, ds.InversionTime = "PHASE", 100.0 + 1000.0 * k
    assert _series(tmp_path, "cc", 5, complex_phase, manufacturer="").kinds == ["phase"]


def test_ge_phase_sensitive_mde_pair(tmp_path):
    def psmde(ds, k):
        ds.InversionTime, ds.ScanningSequence = 300.0, ["GR", "IR"]
        _ge_private(ds, 0 if k == 0 else 2)
    study = Study("GE MEDICAL SYSTEMS", "Signa", 15000)
    for name in ("MAG:SAX_SS_PSMDE", "PS:SAX_SS_PSMDE"):
        def named(ds, k, name=name):
            psmde(ds, 0)
            ds.SeriesDescription = name
        assert _series(tmp_path, name.replace(":", "_"), 3, named, study,
                       image_type=("ORIGINAL", "PRIMARY", "OTHER")).kinds == ["lge"]


def test_vendor_from_private_creators_when_manufacturer_is_empty(tmp_path):
    ds = Study("", "", 1.5).header("x", 1, START)
    _ge_private(ds, 1)
    assert vendor_of(ds) == "ge"
    ds.Manufacturer = "SIEMENS"
    assert vendor_of(ds) == "siemens"


# ---- T1 timeline of a study (routing) --------------------------------------------------------------------
def _rows(minutes_per_plane: dict[int, list[float]]) -> list[dict]:
    rows = []
    for z, minutes in minutes_per_plane.items():
        for m in minutes:
            plane = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, z]
            acquired = (START + timedelta(minutes=m)).isoformat()
            rows.append({"kinds": "t1_map", "classification": json.dumps(
                {"kinds": {"t1_map": {"acquired": [[plane, acquired]]}}})})
    return rows


@pytest.mark.parametrize("minutes, expected", [
    ({0: [0.0]}, "single"),
    ({0: [0.0, 0.2]}, "single"),                    # the scanner's map and cmr-node's of one acquisition
    ({0: [0.0, 4.0]}, "single"),                    # dDCE: native and the 1-minute map only
    ({0: [0.0, 20.0]}, "paired"),                   # ECV
    ({0: [0.0, 1.5, 20.0]}, "paired"),              # a native repeated for motion, then post-contrast
    ({0: [0.0], 10: [20.0]}, "single"),             # two slices, one acquisition each
    ({0: [0.0, 4.0, 5.0]}, "dynamic"),              # dDCE: native, 1 and 2 minutes
    ({0: [0.0, 4.0, 5.0, 6.0, 8.0, 12.0, 33.0]}, "dynamic"),
])
def test_t1_timeline(minutes, expected):
    assert t1_timeline(_rows(minutes)) == expected


# ---- native vs post-contrast T1 maps ---------------------------------------------------------------------
def _maps(tmp_path, pre_description: str, post_description: str, agent_on_native: bool = False,
          bolus: bool = False) -> dict:
    phantom = ecv_phantom()
    study = SyntheticStudy()
    injection = study.study_datetime + timedelta(minutes=10)
    pre = t1_map_series(phantom.t1_pre_ms, study, series_description=pre_description, series_number=10,
                        acquired=study.study_datetime + timedelta(minutes=5), pixel_mm=phantom.pixel_mm,
                        contrast_agent="Gadobutrol" if agent_on_native else None,
                        bolus_start=injection if (agent_on_native and bolus) else None)
    post = t1_map_series(phantom.t1_post_ms, study, series_description=post_description, series_number=20,
                         acquired=injection + timedelta(minutes=15), pixel_mm=phantom.pixel_mm,
                         contrast_agent="Gadobutrol", bolus_start=injection if bolus else None)
    files = save_series(pre, tmp_path / "pre") + save_series(post, tmp_path / "post")
    return group_by_series(read_t1_maps([str(f) for f in files]))


def _roles(how: dict) -> list[tuple]:
    return sorted((s["series_number"], s["role"], s["decided_by"]) for s in how["series"])


def test_native_map_with_the_agent_and_pre_in_its_description_is_native(tmp_path):
    natives, posts, how = classify(_maps(tmp_path, "T1MAP_PRE", "T1MAP", agent_on_native=True))
    assert _roles(how) == [(10, "native", "Series Description"), (20, "post", "blood T1 against the other acquisitions")]


def test_bolus_start_time_decides_before_physics(tmp_path):
    _, _, how = classify(_maps(tmp_path, "T1MAP_A", "T1MAP_B", agent_on_native=True, bolus=True))
    assert _roles(how) == [(10, "native", "Contrast/Bolus Start Time"), (20, "post", "Contrast/Bolus Start Time")]


def test_blood_t1_decides_without_words_or_bolus_time(tmp_path):
    """Both carry the agent, neither says pre or post: blood T1 1550 vs 400 ms decides."""
    _, _, how = classify(_maps(tmp_path, "T1MAP_A", "T1MAP_B", agent_on_native=True))
    assert _roles(how) == [(10, "native", "blood T1 against the other acquisitions"),
                           (20, "post", "blood T1 against the other acquisitions")]


def test_two_native_maps_are_not_a_pair(tmp_path):
    groups = _maps(tmp_path, "T1MAP_PRE", "T1MAP_PRE_repeat")
    with pytest.raises(InputError, match="2 native, 0 post-contrast"):
        classify(groups)


def test_a_study_nothing_routes_is_logged_with_each_series_kind_and_reason(tmp_path, caplog):
    """As the served node sees it: the study completes, no route takes any series, the log says why (UIDs,
    kinds and reasons; no description, which may name a person)."""
    import logging
    from node.config import parse_config
    from node.store.index import Index
    from node.process.offline import index_folder
    from node.route.router import Router

    def phase(ds, k):
        ds.InversionTime = 100.0 + 1000.0 * k
        ds.SeriesDescription = "MOLLI Doe^Jane"
    found = _series(tmp_path, "phase", 5, phase, image_type=("ORIGINAL", "PRIMARY", "P", "ND"))
    index = Index(":memory:")
    index_folder(tmp_path / "phase", index)
    with caplog.at_level(logging.INFO, logger="cmr_node.route"):
        assert Router(parse_config({}), index).sweep(now=float("inf")) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"study {index.all_series()[0]['study_uid']}: nothing routed: series {found.series_uid} "
                        "(phase): route molli takes t1_raw; route t2map takes t2_raw; route ecv takes t1_map, segmentation; "
                        "route ddce takes t1_map, perfusion; route lge takes t1_map, segmentation; "
                        "route t2segments takes t2_map, t1_map, segmentation; route summary takes report, t1_map"]
    assert "Doe" not in caplog.text


def test_a_first_pass_series_alone_ends_with_a_clear_message(tmp_path):
    """The GE perfusion series through `cmr-node process`: recognised as perfusion, routed nowhere (the dDCE
    route reads a first pass only with the study's dynamic T1 maps), and said so per route; no job, no crash."""
    from node.config import offline_config
    from node.process.offline import process_folder
    study = Study("GE MEDICAL SYSTEMS", "Signa", 15000)

    def frame(ds, k):
        ds.InversionTime, ds.TriggerTime = 130.8, k * 700.0
        ds.ScanningSequence = ["GR", "IR"]
    _series(tmp_path / "in", "PERFUSION", 79, frame, study)
    report = process_folder(tmp_path / "in", tmp_path / "out", offline_config())
    [series] = report["series"]
    assert list(series["kinds"]) == ["perfusion"] and report["jobs"] == [] and report["skipped_files"] == []
    assert series["routes"] == [] and series["not_routed_because"]
    reasons = series["not_routed_because"]
    assert "route ddce needs dynamic T1 maps; the study's are none" in reasons
    assert all("takes" in reason for reason in reasons if not reason.startswith("route ddce"))
