"""Viewer-ready companions of the Parametric Maps: grayscale and colour Secondary Captures, PNG previews."""
import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image

from node.config import ConfigError, parse_config
from node.process.offline import process_folder
from tests.conftest import PM_SOP_CLASS, SC_SOP_CLASS, dciodvfy_errors, storescu

ROUTE = {"name": "ecv", "series_description": "(?i)moco_t1", "module": "ecv"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, ecv_study):
    out = tmp_path_factory.mktemp("viewer")
    config = parse_config({"routes": [dict(ROUTE, viewer_images=["grayscale", "colour"])]})
    process_folder(ecv_study[2][0].parent.parent, out, config)
    by_kind = {}
    for path in out.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        kind = "pm" if ds.SOPClassUID == PM_SOP_CLASS else (ds.get("PhotometricInterpretation"), ds.SOPClassUID)
        by_kind[kind] = (path, ds)
    return out, by_kind


def test_grayscale_image_gives_the_map_values_back(outputs):
    _, by_kind = outputs
    pm = by_kind["pm"][1]
    _, sc = by_kind[("MONOCHROME2", SC_SOP_CLASS)]
    values = sc.pixel_array * float(sc.RescaleSlope) + float(sc.RescaleIntercept)
    assert np.abs(values - pm.pixel_array).max() <= float(sc.RescaleSlope) / 2 + 1e-6
    assert list(sc.ImageType) == ["DERIVED", "SECONDARY"] and sc.BurnedInAnnotation == "NO"
    assert [float(c) for c in sc.WindowCenter][0] == 40.0 and sc.WindowCenterWidthExplanation[0] == "ECV default (%)"
    assert "NOT FOR DIAGNOSIS" in sc.DerivationDescription
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == pm.SOPInstanceUID
    assert (sc.StudyInstanceUID, sc.PatientID) == (pm.StudyInstanceUID, pm.PatientID)


def test_colour_image_has_bar_and_warning_burned_in(outputs):
    _, by_kind = outputs
    _, sc = by_kind[("RGB", SC_SOP_CLASS)]
    assert sc.BurnedInAnnotation == "YES" and sc.SamplesPerPixel == 3
    rgb = sc.pixel_array
    assert rgb.shape[0] > 3 * 160 and rgb.shape[1] > 3 * 160     # enlarged map plus colour bar column
    bar = rgb[40:-60, 3 * 160 + 14]
    assert len({tuple(p) for p in bar}) > 50                      # a colour gradient, not a flat column
    assert (rgb[-20:, :200] == [255, 210, 0]).all(axis=-1).any()  # the yellow warning line


@pytest.mark.integration
def test_viewer_images_are_valid_dicom(outputs):
    _, by_kind = outputs
    for kind in (("MONOCHROME2", SC_SOP_CLASS), ("RGB", SC_SOP_CLASS)):
        assert dciodvfy_errors(by_kind[kind][0]) == [], kind


def test_png_preview_written(outputs):
    out, _ = outputs
    [png] = (out / "previews").glob("*.png")
    assert Image.open(png).size[0] > 480


def test_route_without_viewer_images_sends_only_the_map(tmp_path, ecv_study):
    config = parse_config({"routes": [dict(ROUTE, viewer_images=[])]})
    job = process_folder(ecv_study[2][0].parent.parent, tmp_path, config)["jobs"][0]
    kinds = {str(pydicom.dcmread(tmp_path / f, stop_before_pixels=True).SOPClassUID) for f in job["outputs"]}
    assert SC_SOP_CLASS not in kinds and job["previews"]


def test_unknown_viewer_kind_is_a_config_error():
    with pytest.raises(ConfigError, match=r"viewer_images\[0\]"):
        parse_config({"routes": [dict(ROUTE, viewer_images=["sepia"])]})


@pytest.mark.integration
def test_viewer_images_read_back_and_accepted_by_orthanc(outputs, orthanc):
    _, by_kind = outputs
    paths = [by_kind[("MONOCHROME2", SC_SOP_CLASS)][0], by_kind[("RGB", SC_SOP_CLASS)][0]]
    for path in paths:
        assert hd.imread(path).SOPClassUID == SC_SOP_CLASS     # highdicom reads them as images
    assert storescu(orthanc.dicom_port, paths, called_ae=orthanc.ae_title).returncode == 0
    stored = {orthanc.instance_tags(i).get("SOPInstanceUID") for i in orthanc.find_instances(SC_SOP_CLASS)}
    assert {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths} <= stored
