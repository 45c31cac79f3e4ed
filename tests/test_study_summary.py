"""The study summary (issue 16, item 3): one Secondary Capture per study from the study's own reports, its
numbers the reports' numbers, bullseyes in the AHA layout, quality findings and missing protocol parts."""
import json
import re
import shutil
from dataclasses import replace

import numpy as np
import pydicom
import pytest

from analysis.phantoms.t1_ecv import ecv_phantom
from dicom_out.phantom_studies import write_ecv_study, write_raw_molli_ecv_study
from dicom_out.study_summary import BULLSEYE_RADIUS, WIDTH
from dicom_out.viewer_images import viridis
from node.config import parse_config
from node.process.offline import process_folder
from tests.conftest import dciodvfy_errors

SC_SOP_CLASS, PDF_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.104.1"


def _jobs(folder, out, **inputs):
    report = process_folder(folder, out, parse_config({"inputs": inputs} if inputs else {}))
    return {j["module"]: j for j in report["jobs"]}


@pytest.fixture(scope="module")
def ecv_processed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    write_ecv_study(folder / "in")
    return _jobs(folder / "in", folder / "out", summary_pdf=True), folder / "out"


def test_the_summary_shows_what_the_ecv_report_holds(ecv_processed):
    jobs, out = ecv_processed
    summary, ecv = jobs["summary"], jobs["ecv"]
    assert summary["state"] == "done", summary.get("error")
    results = summary["results"]
    assert results["reports"] == [ecv["results"]["report_sop_instance_uid"]]
    measured = {g["region"]: {(m["name"]["value"], m["derivation"]): m["value"] for m in g["measurements"]}
                for g in ecv["results"]["measurements"]}
    ecv_segments = {str(n): measured[label][("ECV", "Mean")] for n, label in
                    ((int(k.split()[1]), k) for k in measured if k.startswith("AHA "))}
    [bullseye] = [b for b in results["bullseyes"] if b["title"] == "ECV (%)"]
    assert bullseye["segments"] == ecv_segments and sorted(map(int, ecv_segments)) == list(range(7, 13))
    [number] = [n for n in results["numbers"] if n["label"] == "ECV, LV myocardium (mean)"]
    assert number["value"] == measured["LV myocardium"][("ECV", "Mean")]
    assert number["reference"] == [17.0, 33.0] and results["field_strength_t"] == 1.5   # Dabir 2014, 1.5 T
    assert results["quality_flags"] == []


@pytest.mark.integration     # dciodvfy
def test_the_page_is_a_valid_secondary_capture_with_the_bullseye_drawn_where_the_segments_are(ecv_processed):
    jobs, out = ecv_processed
    files = {pydicom.dcmread(out / f, stop_before_pixels=True).SOPClassUID: out / f for f in jobs["summary"]["outputs"]}
    assert set(files) == {SC_SOP_CLASS, PDF_SOP_CLASS}
    for path in files.values():
        assert dciodvfy_errors(path) == []
    sc = pydicom.dcmread(files[SC_SOP_CLASS])
    assert sc.SeriesDescription == "CMR summary (cmr-node)" and sc.BurnedInAnnotation == "YES"
    assert "Not for diagnostic use unless validated locally" in sc.ImageComments
    pixels = sc.pixel_array
    # the ECV bullseye is the second of two; mid segments 7 (anterior, top) and 10 (inferior, bottom)
    cx, cy = WIDTH // 2 + WIDTH // 4, 60 + 40 + BULLSEYE_RADIUS
    ring = BULLSEYE_RADIUS * (2 / 3 + 1 / 3) / 2 + 10                       # mid ring, off the printed value
    segments = jobs["summary"]["results"]["bullseyes"][1]["segments"]
    for number, (dx, dy) in ((7, (8, -ring)), (10, (8, ring))):
        expected = viridis(np.array([segments[str(number)]]), 15.0, 45.0)[0]
        assert np.abs(pixels[int(cy + dy), int(cx + dx)].astype(int) - expected).max() <= 2, number
    pdf = pydicom.dcmread(files[PDF_SOP_CLASS])
    assert pdf.EncapsulatedDocument[:5] == b"%PDF-" and pdf.StudyInstanceUID == sc.StudyInstanceUID


def test_a_moved_map_and_a_missing_partner_reach_the_summary(tmp_path):
    p = ecv_phantom()
    write_ecv_study(tmp_path / "moved", phantom=replace(p, t1_post_ms=np.roll(p.t1_post_ms, 4, axis=0)))
    flags = _jobs(tmp_path / "moved", tmp_path / "out1")["summary"]["results"]["quality_flags"]
    [flag] = flags
    moved = re.fullmatch(r"ecv: Motion between maps above the limit \(Patient motion ([\d.]+) mm\)", flag)
    assert moved and abs(float(moved.group(1)) - 6.0) < 0.6          # the 4-pixel (6 mm) shift, from the report
    # raw MOLLI before contrast only: the node makes the native map, and no post-contrast map comes
    write_raw_molli_ecv_study(tmp_path / "raw")
    shutil.rmtree(tmp_path / "raw" / "MOLLI_post15min")
    jobs = _jobs(tmp_path / "raw", tmp_path / "out2")
    assert "ecv" not in jobs
    flags = jobs["summary"]["results"]["quality_flags"]
    assert any(f.startswith("T1 maps: need a native and a post-contrast T1 map; found 1 acquisition(s): 1 native, "
                            "0 post-contrast") for f in flags), flags
    assert json.dumps(flags)


def test_bullseye_segments_sit_where_the_aha_model_puts_them():
    """Seen from the apex: anterior (1, 7, 13) at the top, the septum (2-3, 8-9, 14) on the left, inferior at the
    bottom, lateral on the right; basal outside, apical inside (Cerqueira et al., Circulation 2002;105:539)."""
    from PIL import Image, ImageDraw
    from dicom_out.study_summary import Bullseye, draw_bullseye
    canvas = Image.new("RGB", (400, 400))
    bullseye = Bullseye("segment numbers", {n: float(n) for n in range(1, 17)}, 1.0, 16.0)
    draw_bullseye(ImageDraw.Draw(canvas), (200, 200), bullseye)
    pixels = np.asarray(canvas).astype(int)
    centre_deg = {1: 90, 2: 150, 3: 210, 4: 270, 5: 330, 6: 30, 13: 90, 14: 180, 15: 270, 16: 0}
    centre_deg.update({n + 6: centre_deg[n] for n in range(1, 7)})
    for number, angle in centre_deg.items():
        radius = BULLSEYE_RADIUS * ({0: 5 / 6, 1: 1 / 2, 2: 2 / 9}[0 if number <= 6 else 1 if number <= 12 else 2])
        # beside the printed number: 12 degrees further round (30 on the small apical ring)
        a = np.radians(angle + (12 if number <= 12 else 30))
        x, y = 200 + radius * np.cos(a), 200 - radius * np.sin(a)
        expected = viridis(np.array([float(number)]), 1.0, 16.0)[0]
        assert np.abs(pixels[int(round(y)), int(round(x))] - expected).max() <= 2, number


def test_a_site_sets_its_own_reference_ranges_and_a_bad_one_is_refused(tmp_path):
    from node.config import ConfigError
    write_ecv_study(tmp_path / "in")
    jobs = _jobs(tmp_path / "in", tmp_path / "out", reference_ranges={"ecv_percent_1.5T": [22, 30]})
    [number] = [n for n in jobs["summary"]["results"]["numbers"] if n["label"] == "ECV, LV myocardium (mean)"]
    assert number["reference"] == [22.0, 30.0]
    for bad in ({"ecv_percent": [22, 30]}, {"ecv_percent_1.5T": [30, 22]}, {"ecv_percent_1.5T": [22]}):
        with pytest.raises(ConfigError, match="reference_ranges"):
            parse_config({"inputs": {"reference_ranges": bad}})


def test_reports_the_node_did_not_make_are_passed_over_and_the_summary_waits(tmp_path):
    """A scanner's SR that is no TID 1500 report (a dose report, say): nothing to summarise, no page, no failure
    (the route runs again when the node's own reports arrive)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    from node.process.modules import ModuleInput
    from node.process.modules.summary import run
    from node.settings import ModuleSettings
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.11", generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "SR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(tmp_path / "dose.dcm", enforce_file_format=True)
    output = run(ModuleInput("1.2.3", [str(tmp_path / "dose.dcm")], ModuleSettings(), "key"))
    assert output.datasets == [] and output.results["waiting_for"] == "the study's cmr-node reports"


def test_a_multi_slice_ddce_value_is_given_per_slice_not_as_open_both_ways():
    """With several slices the report's LV myocardium group carries no single regional value (one interval per
    slice, in results.json), only whether every slice identifies it: the summary says that, not 'not
    identified, open both ways'."""
    from dicom_out import codes
    from node.process.modules.summary import _regional
    from node.registry.parse import Code, Group, ParsedReport
    said = [(Code.of(codes.identifiable(codes.VE_PLUS_VP)), Code.of(codes.YES))]
    group = Group("LV myocardium, 30-min window", None, Code.of(codes.LV_MYOCARDIUM), None, [], said)
    report = ParsedReport("1", "2", "3", "p", None, None, "20261126000000", "cmr-node ddce", [group])
    number = _regional(report, group.region, codes.VE_PLUS_VP, "ve + vp", "")
    assert (number.value, number.missing, number.note) == (None, "per slice", "identified on every slice")
