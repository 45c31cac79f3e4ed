"""Files as scanners write them, through `cmr-node process` with the built-in routes.

- The real Siemens Prisma ShMOLLI phantom acquisition in ../shared/reference-data (skipped when absent):
  the scanner's own inline map is the reference.
- Imitations of Philips (JPEG Lossless, private inversion times, raw images and inline map in one series),
  GE (gauss, private image type) and enhanced multi-frame exports (tests/scanner_files.py).
- Anonymized exports: Type 2 patient attributes, private elements and Manufacturer removed.
Every output object must pass dciodvfy, carry no private element, and derived T1 maps must read in ms with
dcm2niix.
"""
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.conftest import dciodvfy_errors, require_tool
from tests.scanner_files import enhanced_study, ge_study, philips_study

pytestmark = pytest.mark.integration     # `cmr-node process` as a process, dciodvfy and dcm2niix

REFERENCE = (Path(__file__).resolve().parents[2] / "shared" / "reference-data" / "vendor"
             / "siemens-prisma-shmolli-phantom" / "Hcmr_Phantom_1916_260C" / "Konrad_Shmolli")
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason="Siemens ShMOLLI phantom not in ../shared")
SCANNER_MAP = "ShMOLLI_192i_e11_T1MAP_14/IM-0003-0002.dcm"
# centres (row, col) of the phantom's nine tubes in this acquisition, found by fitting a 3 x 3 lattice to the
# magnitude image; a 7-pixel radius keeps the ROI inside each tube's wall (12 pixels)
TUBES = [(129, 153), (131, 185), (130, 217), (161, 151), (163, 184), (163, 218), (195, 155), (196, 185), (196, 217)]
TUBE_RADIUS_PX = 7


def process(input_dir: Path, out_dir: Path) -> tuple[dict, subprocess.CompletedProcess]:
    """`cmr-node process` as a user runs it: no configuration, JSON logs on stderr."""
    result = subprocess.run([sys.executable, "-m", "node.cli", "--log-format", "json", "process", str(input_dir),
                             "--out", str(out_dir)], capture_output=True, text=True, timeout=900)
    return json.loads((out_dir / "results.json").read_text()), result


def outputs(out_dir: Path) -> dict[str, pydicom.Dataset]:
    """Output objects by Series Description (the first instance of each series)."""
    found = {}
    for ds in sorted((pydicom.dcmread(p) for p in out_dir.glob("*.dcm")), key=lambda d: int(d.InstanceNumber)):
        found.setdefault(str(ds.SeriesDescription), ds)
    return found


def series(report: dict) -> dict[str, dict]:
    return {s["series_description"]: s for s in report["series"]}


def assert_outputs_stand_on_their_own(out_dir: Path) -> None:
    for path in out_dir.glob("*.dcm"):
        assert dciodvfy_errors(path) == [], path.name
        ds = pydicom.dcmread(path)
        assert not [e.tag for e in ds.iterall() if e.tag.is_private], path.name


def nifti(path: Path) -> np.ndarray:
    """Voxel values of a NIfTI-1 file (dcm2niix output) after its scl_slope/scl_inter."""
    raw = path.read_bytes()
    dims = struct.unpack_from("<8h", raw, 40)
    datatype = struct.unpack_from("<h", raw, 70)[0]
    offset, slope, intercept = struct.unpack_from("<3f", raw, 108)
    dtype = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 64: np.float64, 512: np.uint16}[datatype]
    values = np.frombuffer(raw, dtype=dtype, count=int(np.prod(dims[1:dims[0] + 1])), offset=int(offset))
    return values * (slope or 1.0) + (intercept if slope else 0.0)


def assert_dcm2niix_reads_ms(out_dir: Path, tmp_path: Path) -> None:
    """dcm2niix (an independent reader) gets the derived T1 maps' values in ms, not rescaled by a vendor slope."""
    derived = [p for p in out_dir.glob("*.dcm") if str(pydicom.dcmread(p, stop_before_pixels=True)
                                                       .SeriesDescription).endswith("_T1MAP_cmrnode")]
    assert derived
    for k, path in enumerate(derived):
        folder = tmp_path / f"dcm2niix-{k}"
        (folder / "in").mkdir(parents=True)
        shutil.copy(path, folder / "in")
        subprocess.run([require_tool("dcm2niix"), "-o", str(folder), "-f", "map", "-b", "n", str(folder / "in")],
                       check=True, capture_output=True, timeout=120)
        ds = pydicom.dcmread(path)
        ms = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_allclose(np.sort(nifti(folder / "map.nii").ravel()), np.sort(ms.ravel()), atol=0.5)


# ---- Siemens: the real ShMOLLI phantom --------------------------------------------------------------------
@pytest.fixture(scope="module")
def siemens(tmp_path_factory):
    out = tmp_path_factory.mktemp("siemens")
    report, result = process(REFERENCE, out)
    return report, result, out


def _tube_medians(t1: np.ndarray) -> list[float]:
    rows, cols = np.mgrid[:t1.shape[0], :t1.shape[1]]
    return [float(np.median(t1[(rows - r) ** 2 + (cols - c) ** 2 <= TUBE_RADIUS_PX ** 2])) for r, c in TUBES]


@needs_reference
def test_siemens_shmolli_matches_the_scanners_map_in_every_tube(siemens):
    report, result, out = siemens
    assert result.returncode == 0, result.stdout
    [molli] = [j for j in report["jobs"] if j["module"] == "molli"]
    slice_ = molli["results"]["slices"][0]
    assert slice_["images_per_inversion"] == "5-1-1" and slice_["fit"].startswith("ShMOLLI conditional")
    scanner = _tube_medians(pydicom.dcmread(REFERENCE / SCANNER_MAP).pixel_array.astype(float))
    ours = _tube_medians(outputs(out)["ShMOLLI_192i_e11_T1MAP_cmrnode"].pixel_array.astype(float))
    assert min(scanner) < 400 and max(scanner) > 3000     # the tubes span short to long T1
    for reference, value in zip(scanner, ours):
        assert abs(value / reference - 1) <= (0.02 if reference <= 2000 else 0.05), (reference, value)


@needs_reference
def test_siemens_series_kinds_phase_is_not_fitted_and_no_ecv_from_one_acquisition(siemens):
    report, result, _ = siemens
    kinds = {(s["series_number"], tuple(sorted(s["kinds"]))): s for s in report["series"]}
    assert set(kinds) == {(12, ("t1_raw",)), (13, ("phase",)), (14, ("other", "t1_map")), (15, ("other",)),
                          (9412, ("t1_map",)), (9903, ("report",))}   # the node's map and report, taken back in
    assert kinds[(13, ("phase",))]["routes"] == []
    assert [j["module"] for j in report["jobs"]] == ["molli", "summary"]
    why = "route ecv needs paired T1 maps; the study's are single"
    assert why in kinds[(14, ("other", "t1_map"))]["not_routed_because"] and why in result.stdout


@needs_reference
def test_siemens_outputs_stand_on_their_own_and_the_log_has_no_patient_data(siemens, tmp_path):
    _, result, out = siemens
    assert_outputs_stand_on_their_own(out)
    assert_dcm2niix_reads_ms(out, tmp_path)
    source = pydicom.dcmread(REFERENCE / SCANNER_MAP)
    for value in (str(source.PatientName), str(source.PatientID), str(source.PatientBirthDate)):
        assert value not in result.stderr
    assert all(json.loads(line) for line in result.stderr.splitlines())


@needs_reference
def test_anonymized_export_runs_and_keeps_type2_empty(tmp_path):
    """As a research export leaves it: no Patient's Birth Date, Sex, Name, ID, study date, no Manufacturer,
    no private elements."""
    (tmp_path / "in").mkdir()
    for path in (REFERENCE / "ShMOLLI_192i_e11_12").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                        "AccessionNumber", "ReferringPhysicianName", "StudyID", "Manufacturer"):
            delattr(ds, keyword)
        ds.remove_private_tags()
        ds.save_as(tmp_path / "in" / path.name)
    report, result = process(tmp_path / "in", tmp_path / "out")
    assert result.returncode == 0 and [j["state"] for j in report["jobs"]] == ["done", "done"], result.stdout
    for ds in outputs(tmp_path / "out").values():
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
            assert ds[keyword].value in ("", None), (ds.SeriesDescription, keyword)
    assert_outputs_stand_on_their_own(tmp_path / "out")


@needs_reference
def test_siemens_inversion_times_from_image_comments_when_the_attribute_is_gone(tmp_path):
    """ShMOLLI also writes "TIeff nnn ms" in Image Comments; without Inversion Time the fit is the same."""
    (tmp_path / "in").mkdir()
    for path in (REFERENCE / "ShMOLLI_192i_e11_12").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        del ds.InversionTime
        ds.ScanningSequence = "GR"      # no IR left in the attributes either: the comments are the evidence
        ds.save_as(tmp_path / "in" / path.name)
    report, result = process(tmp_path / "in", tmp_path / "out")
    [slice_] = report["jobs"][0]["results"]["slices"]
    assert slice_["inversion_time_source"] == "Image Comments (0020,4000)" and slice_["images_per_inversion"] == "5-1-1"
    assert slice_["inversion_times_ms"] == [100.0, 180.0, 260.0, 1100.0, 2100.0, 3100.0, 4100.0]


# ---- Philips -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def philips(tmp_path_factory):
    """The Philips study, JPEG Lossless as the scanner exported it (DCMTK dcmcjpeg)."""
    native = tmp_path_factory.mktemp("philips-native")
    study, phantom, files = philips_study(native)
    compressed = tmp_path_factory.mktemp("philips")
    for path in files:
        target = compressed / path.relative_to(native)
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([require_tool("dcmcjpeg"), "+e1", str(path), str(target)], check=True, timeout=60)
    out = tmp_path_factory.mktemp("philips-out")
    report, result = process(compressed, out)
    return phantom, report, result, out


def test_philips_study_runs_with_the_built_in_routes(philips):
    _, report, result, _ = philips
    assert result.returncode == 0, result.stdout
    kinds = {name: sorted(s["kinds"]) for name, s in series(report).items()}
    for name in ("T1_native", "T1_enhanced", "LL-NATIVO", "LL-POST"):
        assert kinds[name] == ["t1_map", "t1_raw"], name
        assert sorted(series(report)[name]["routes"]) == ["ecv", "molli", "summary"]
    assert kinds["IR_TFE_BH"] == ["lge", "real"]
    raw = series(report)["T1_native"]["kinds"]["t1_raw"]
    assert raw["frames"] == 11 and "Philips magnitude image" in raw["why"]
    assert sorted(j["module"] for j in report["jobs"]) == ["ecv"] + ["molli"] * 4 + ["summary"]


def test_philips_molli_from_raw_images_matches_the_inline_map(philips):
    phantom, report, _, out = philips
    tissue = phantom.labels > 0
    maps = outputs(out)
    for name in ("T1_native", "T1_enhanced", "LL-NATIVO", "LL-POST"):
        job = next(j for j in report["jobs"] if j["module"] == "molli" and name in j["results"]["derived_series_description"])
        assert job["results"]["slices"][0]["inversion_time_source"] == "Philips Inversion Delay Time (2005,xx72)"
        assert job["results"]["slices"][0]["images_per_inversion"] == "3-3-5"
        ours = maps[f"{name}_T1MAP_cmrnode"].pixel_array.astype(float)
        inline = phantom.t1_post_ms if name in ("T1_enhanced", "LL-POST") else phantom.t1_pre_ms
        fitted = tissue & (ours > 0)
        assert fitted.sum() >= 0.9 * tissue.sum(), name
        assert abs(np.median(ours[fitted] / inline[fitted]) - 1) < 0.02, name


def test_philips_ecv_pairs_each_slice_with_its_native_map(philips):
    _, report, _, _ = philips
    ecv = next(j for j in report["jobs"] if j["module"] == "ecv")["results"]
    roles = {s["series_number"]: (s["role"], s["decided_by"]) for s in ecv["classified_by"]["series"]}
    # the scanner's inline maps are used; cmr-node's own maps of the same acquisitions are set aside
    assert roles == {301: ("native", "Series Description"), 401: ("native", "Series Description"),
                     1101: ("post", "Series Description"), 1201: ("post", "Series Description")}
    assert len(ecv["classified_by"]["set_aside"]) == 4
    slices = [s for m in ecv["maps"] for s in m["slices"]]
    assert sorted(s["position_mm"] for s in slices) == [0.0, 10.0] and ecv["skipped_slices"] == []
    for s in slices:   # the scanner's native blood T1 (1550 ms in the phantom), not a raw image's
        assert abs(s["blood_t1_native_ms"] - 1550) < 30


def test_philips_outputs_stand_on_their_own(philips, tmp_path):
    _, report, _, out = philips
    assert_outputs_stand_on_their_own(out)
    assert_dcm2niix_reads_ms(out, tmp_path)
    ecv = next(j for j in report["jobs"] if j["module"] == "ecv")
    assert len(ecv["previews"]) == len(set(ecv["previews"])) == 2   # two ECV maps, two preview files


def test_philips_slice_without_a_native_partner_is_skipped_and_said(tmp_path):
    philips_study(tmp_path / "in")
    shutil.rmtree(tmp_path / "in" / "LL-NATIVO")
    report, result = process(tmp_path / "in", tmp_path / "out")
    assert result.returncode == 0, result.stdout
    ecv = next(j for j in report["jobs"] if j["module"] == "ecv")["results"]
    assert [s["position_mm"] for m in ecv["maps"] for s in m["slices"]] == [0.0]
    [skipped] = ecv["skipped_slices"]
    assert skipped["position_mm"] == 10.0 and "no native slice" in skipped["reason"]


# ---- GE ------------------------------------------------------------------------------------------------
def test_ge_gauss_phase_and_inline_maps(tmp_path):
    ge_study(tmp_path / "in")
    report, result = process(tmp_path / "in", tmp_path / "out")
    assert result.returncode == 0, result.stdout
    by_number = {s["series_number"]: s for s in report["series"]}
    assert list(by_number[6]["kinds"]) == ["phase"] and "(0043,102F)" in by_number[6]["kinds"]["phase"]["why"]
    assert list(by_number[5]["kinds"]) == ["t1_raw"]
    assert list(by_number[105]["kinds"]) == ["t1_map"] and "MOLLI_" in by_number[105]["kinds"]["t1_map"]["why"]
    assert sorted(j["module"] for j in report["jobs"]) == ["ecv", "molli", "molli", "summary"]
    maps = outputs(tmp_path / "out")
    assert float(maps["SAX_MOLLI_PRE_BH_T1MAP_cmrnode"].MagneticFieldStrength) == 1.5   # tesla, not 15000
    ecv = next(j for j in report["jobs"] if j["module"] == "ecv")["results"]
    assert abs(ecv["maps"][0]["slices"][0]["blood_t1_native_ms"] - 1550) < 30
    assert_outputs_stand_on_their_own(tmp_path / "out")
    assert_dcm2niix_reads_ms(tmp_path / "out", tmp_path)


# ---- enhanced multi-frame --------------------------------------------------------------------------------
def test_enhanced_multiframe_raw_images_and_maps_are_read_frame_by_frame(tmp_path):
    _, phantom, _ = enhanced_study(tmp_path / "in")
    report, result = process(tmp_path / "in", tmp_path / "out")
    assert result.returncode == 0, result.stdout
    kinds = {s["series_description"]: sorted(s["kinds"]) for s in report["series"]}
    assert kinds["MOLLI_native"] == ["t1_raw"] and kinds["MOLLI_post_MOCO_T1"] == ["t1_map"]
    assert kinds["T1_post_enhanced"] == ["t1_map", "t1_raw"]          # one Philips object, raw frames and map
    tissue = phantom.labels > 0
    maps = outputs(tmp_path / "out")
    for name, truth in (("MOLLI_native_T1MAP_cmrnode", phantom.t1_pre_ms),
                        ("T1_post_enhanced_T1MAP_cmrnode", phantom.t1_post_ms)):
        t1 = maps[name].pixel_array.astype(float)
        assert abs(np.median(t1[tissue & (t1 > 0)] / truth[tissue & (t1 > 0)]) - 1) < 0.02, name
    ecv = next(j for j in report["jobs"] if j["module"] == "ecv")["results"]
    assert sorted(s["position_mm"] for m in ecv["maps"] for s in m["slices"]) == [0.0, 0.0, 10.0]
    assert all(abs(s["ecv_percent_tissue_median"] - 20) < 2 for m in ecv["maps"] for s in m["slices"])
    assert_outputs_stand_on_their_own(tmp_path / "out")
    assert_dcm2niix_reads_ms(tmp_path / "out", tmp_path)


def test_long_non_ascii_series_description_is_cut_by_bytes_keeping_the_suffix(tmp_path):
    """A UTF-8 description of 60 characters is 110 bytes: the derived series keep within 64 bytes (LO) and end
    in the node's suffix, which site routes match on."""
    from dicom_out.phantom_studies import write_raw_molli_ecv_study
    _, _, files = write_raw_molli_ecv_study(tmp_path / "in")
    for path in files:
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SeriesDescription = f"{ds.SeriesDescription} Séquence T1 modifiée Look-Locker à respiration bloquée"
        ds.save_as(path)
    report, result = process(tmp_path / "in", tmp_path / "out")
    assert result.returncode == 0, result.stdout
    descriptions = [pydicom.dcmread(p).SeriesDescription for p in (tmp_path / "out").glob("*.dcm")]
    assert all(len(d.encode("utf-8")) <= 64 for d in descriptions)
    derived = [d for d in descriptions if d.endswith("_T1MAP_cmrnode")]
    assert len(derived) == 2 and all(d.startswith("MOLLI_p") for d in derived)
    assert [j["module"] for j in report["jobs"]] == ["molli", "molli", "ecv", "summary"]   # "pre"/"post" survive the cut
    assert_outputs_stand_on_their_own(tmp_path / "out")


def test_philips_raw_molli_without_its_private_inversion_times_is_not_fitted_and_says_why(tmp_path):
    """An anonymizer that removes private elements removes Philips' inversion times: no guess, a reason."""
    philips_study(tmp_path / "in")
    for path in (tmp_path / "in" / "T1_native").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.remove_private_tags()
        ds.save_as(path)
    report, result = process(tmp_path / "in", tmp_path / "out")
    assert result.returncode == 0, result.stdout
    native = series(report)["T1_native"]
    assert sorted(native["kinds"]) == ["other", "t1_map"] and native["routes"] == ["ecv", "summary"]
    assert "Philips Inversion Delay Time (2005,xx72)" in native["kinds"]["other"]["why"]
    assert "anonymizers remove private elements" in native["kinds"]["other"]["why"]


def test_a_seg_on_one_frame_of_an_enhanced_map_draws_that_slice_only(tmp_path):
    """A workstation's contours on frame 2 (10 mm) of the Siemens enhanced native map: masks are matched by
    frame, so that slice's wall is the drawn one and the other slice, in the same instance, keeps its own."""
    from analysis.phantoms import MYOCARDIUM
    from dicom_out import codes
    from dicom_out.segmentation import Segment, build_segmentation
    from node.inputs.frames import read_frames
    _, phantom, files = enhanced_study(tmp_path / "in")
    native = next(f for f in files if f.parent.name == "MOLLI_native_MOCO_T1")
    frames = sorted(read_frames([native]), key=lambda f: f.position_mm)
    drawn = np.stack([np.zeros_like(phantom.labels, dtype=bool), np.isin(phantom.labels, MYOCARDIUM)])
    build_segmentation(drawn[..., None], frames, [Segment("LV myocardium", codes.ANATOMICAL_STRUCTURE,
                                                          codes.LV_MYOCARDIUM, manual=True)],
                       series_uid=pydicom.uid.generate_uid(), sop_uid=pydicom.uid.generate_uid(), series_number=60,
                       series_description="contours", software_version="test").save_as(tmp_path / "in" / "seg.dcm")
    report, result = process(tmp_path / "in", tmp_path / "out")
    assert result.returncode == 0, result.stdout
    ecv = next(j for j in report["jobs"] if j["module"] == "ecv")["results"]
    sources = {tuple(s["position_mm"] for s in m["slices"]): m["myocardium_source"] for m in ecv["maps"]}
    assert sources[(0.0, 10.0)] == "received SEG on 1 of 2 slices, automatic on the others"
