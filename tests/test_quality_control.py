"""Quality control findings (issue 16, item 4): a moved T1 map, a noisy raw series, a blood T1 no heart has,
each flagged in results.json and coded in the report's "Quality control" group; a clean study says so."""
from dataclasses import replace

import highdicom as hd
import numpy as np
import pytest

from analysis.phantoms import Region
from analysis.phantoms.t1_ecv import ecv_phantom
from analysis.quality import magnitude_snr
from dicom_out.phantom_studies import write_ecv_study, write_raw_molli_ecv_study
from node.config import offline_config
from node.process.offline import process_folder


def _process(tmp_path, phantom=None, **kwargs):
    write_ecv_study(tmp_path / "in", phantom=phantom, **kwargs)
    [job] = [j for j in process_folder(tmp_path / "in", tmp_path / "out", offline_config())["jobs"]
             if j["module"] == "ecv"]
    assert job["state"] == "done", job.get("error")
    return job["results"], tmp_path / "out"


def _quality_group(out, results):
    sr = hd.sr.srread(out / f"{results['report_sop_instance_uid']}.dcm")
    [group] = [g for g in sr.content.get_image_measurement_groups() if g.tracking_identifier == "Quality control"]
    findings = {e.value.value for e in group.get_qualitative_evaluations()}
    measured = {m.name.value: m.value for m in group.get_measurements()}
    return findings, measured


def test_a_study_without_problems_says_no_quality_finding(tmp_path):
    results, out = _process(tmp_path)
    assert results["quality_flags"] == []
    findings, measured = _quality_group(out, results)
    assert findings == {"QC-NONE"}
    assert measured["128553"] < 0.5                     # patient motion (mm): none in the phantom


def test_a_moved_post_contrast_map_is_registered_and_flagged(tmp_path):
    """The post-contrast breath-hold 4 pixels (6 mm) lower: the map is moved back before ECV, and flagged."""
    p = ecv_phantom()
    moved = replace(p, t1_post_ms=np.roll(p.t1_post_ms, 4, axis=0))
    results, out = _process(tmp_path, phantom=moved)
    assert abs(results["largest_shift_mm"] - 6.0) < 0.6
    assert any("moved 6." in flag and "limit 2 mm" in flag for flag in results["quality_flags"])
    findings, measured = _quality_group(out, results)
    assert findings == {"QC-MOTION"} and abs(measured["128553"] - 6.0) < 0.6
    ecv = np.asarray(hd.pm.ParametricMap.from_file(out / f"{results['maps'][0]['sop_instance_uid']}.dcm")
                     .get_volume().array)[0]
    # the ECV map lies on the native map: each myocardial voxel at its phantom value, not a mix of the two
    # positions (unregistered, the anterior and inferior walls mix with blood and infarct)
    myocardium = np.isin(p.labels, [Region.REMOTE, Region.INFARCT, Region.MVO])
    assert np.median(np.abs(ecv[myocardium] - 100 * p.ecv_truth[myocardium])) < 2.0


def test_blood_t1_no_heart_has_is_flagged(tmp_path):
    p = ecv_phantom()
    blood = (p.labels == Region.LV_BLOOD) | (p.labels == Region.RV_BLOOD)
    low_blood = replace(p, t1_pre_ms=np.where(blood, p.t1_pre_ms * 0.75, p.t1_pre_ms))   # about 1160 ms at 1.5 T
    results, out = _process(tmp_path, phantom=low_blood)
    assert any("native blood T1 11" in f and "1300-1900 ms for 1.5 T" in f for f in results["quality_flags"])
    assert _quality_group(out, results)[0] == {"QC-BLOODT1"}


def test_snr_of_magnitude_images_from_background_noise():
    """Tissue 1000 over Rayleigh noise of sigma 20 (Gaussian noise of SD 20 on both channels): SNR 50."""
    rng = np.random.default_rng(3)
    truth = np.zeros((128, 128))
    truth[32:96, 32:96] = 1000.0
    image = np.abs(truth + 20.0 * rng.standard_normal(truth.shape) + 1j * 20.0 * rng.standard_normal(truth.shape))
    assert magnitude_snr(image) == pytest.approx(50.0, rel=0.1)
    assert magnitude_snr(np.where(truth > 0, image, 0.0)) is None      # background masked by the scanner


def test_a_noisy_raw_molli_series_is_flagged_and_a_clean_one_is_not(tmp_path):
    """Raw MOLLI images with noise of 20 % of the signal amplitude: SNR about 8 on the most recovered image,
    under the default minimum of 15; with 1 % noise, about 150."""
    snrs = {}
    for noise in (0.2, 0.01):
        write_raw_molli_ecv_study(tmp_path / f"in{noise}", noise_fraction=noise)
        report = process_folder(tmp_path / f"in{noise}", tmp_path / f"out{noise}", offline_config())
        molli = [j for j in report["jobs"] if j["module"] == "molli"]
        assert len(molli) == 2 and all(j["state"] == "done" for j in molli)
        flags = [f for j in molli for f in j["results"]["quality_flags"]]
        findings = set()
        for job in molli:
            group_findings, measured = _quality_group(tmp_path / f"out{noise}", job["results"])
            findings |= group_findings
            snrs.setdefault(noise, []).append(measured["111787"])
        if noise == 0.2:
            assert len(flags) == 2 and all("raw inversion-recovery images at 0.0 mm: SNR" in f for f in flags)
            assert findings == {"QC-SNR"}
        else:
            assert flags == [] and findings == {"QC-NONE"}
    assert max(snrs[0.2]) < 15 < min(snrs[0.01])


def test_a_wall_drawn_on_the_moved_post_contrast_map_moves_with_it(tmp_path):
    """The post-contrast breath-hold 4 pixels lower, the wall drawn on that map where it shows it: registration
    moves the map onto the native one, and the drawn wall with it, so the wall measured is the heart's."""
    import pydicom
    from analysis.phantoms import MYOCARDIUM
    from dicom_out import codes
    from dicom_out.segmentation import Segment, build_segmentation
    p = ecv_phantom()
    moved = replace(p, t1_post_ms=np.roll(p.t1_post_ms, 4, axis=0))
    _, _, files = write_ecv_study(tmp_path / "in", phantom=moved)
    post = pydicom.dcmread(next(f for f in files if f.parent.name == "post"))
    drawn = np.roll(np.isin(p.labels, MYOCARDIUM), 4, axis=0)
    build_segmentation(drawn[None, :, :, None], [post], [Segment("LV myocardium", codes.ANATOMICAL_STRUCTURE,
                                                                 codes.LV_MYOCARDIUM, manual=True)],
                       series_uid=pydicom.uid.generate_uid(), sop_uid=pydicom.uid.generate_uid(), series_number=60,
                       series_description="contours", software_version="test").save_as(tmp_path / "in" / "seg.dcm")
    [job] = [j for j in process_folder(tmp_path / "in", tmp_path / "out", offline_config())["jobs"]
             if j["module"] == "ecv"]
    assert job["results"]["maps"][0]["myocardium_source"] == "received SEG"
    [seg] = [hd.seg.segread(tmp_path / "out" / name) for name in job["outputs"]
             if pydicom.dcmread(tmp_path / "out" / name, stop_before_pixels=True).SeriesDescription
             == "ECV regions (cmr-node)"]
    wall = np.asarray(seg.get_volume(combine_segments=False).array)[0][..., 0] > 0
    truth = np.isin(p.labels, MYOCARDIUM)
    assert 2 * (wall & truth).sum() / (wall.sum() + truth.sum()) > 0.95     # on the native map's heart
