"""Phantom studies written as DICOM files, as a scanner would send them."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.phantoms.t1_ecv import EcvPhantom, ecv_phantom
from dicom_out.synthetic_mr import SyntheticStudy, save_series, t1_map_series

if TYPE_CHECKING:
    import numpy as np

PRE_DESCRIPTION = "MOLLI_pre_MOCO_T1"
POST_DESCRIPTION = "MOLLI_post15min_MOCO_T1"


def write_ecv_study(directory: Path, study: SyntheticStudy | None = None,
                    phantom: EcvPhantom | None = None) -> tuple[SyntheticStudy, EcvPhantom, list[Path]]:
    """A native and a 15-minute post-contrast T1 map of the ECV phantom, one series each."""
    study = study or SyntheticStudy()
    phantom = phantom or ecv_phantom()
    injection = study.study_datetime + timedelta(minutes=10)
    pre = t1_map_series(phantom.t1_pre_ms, study, series_description=PRE_DESCRIPTION, series_number=10,
                        acquired=study.study_datetime + timedelta(minutes=5), pixel_mm=phantom.pixel_mm)
    post = t1_map_series(phantom.t1_post_ms, study, series_description=POST_DESCRIPTION, series_number=20,
                         acquired=injection + timedelta(minutes=15), pixel_mm=phantom.pixel_mm,
                         contrast_agent="Gadobutrol", bolus_start=injection)
    paths = save_series(pre, directory / "pre") + save_series(post, directory / "post")
    return study, phantom, paths


DDCE_NATIVE_DESCRIPTION = "dDCE_native_MOCO_T1"


def ddce_post_description(minutes: float) -> str:
    return f"dDCE_post_{minutes:04.1f}min_MOCO_T1"


def write_ddce_study(directory: Path, study: SyntheticStudy | None = None, phantom=None,
                     bolus_start_in_dicom: bool = True, first_pass=None,
                     ts_in: str = "InversionTime", arterial_input=None) -> tuple[SyntheticStudy, object, list[Path]]:
    """The dDCE phantom as a scanner sends it: a native T1 map series and one series per post-contrast map;
    with first_pass (analysis.phantoms.first_pass.FirstPassPhantom of the same slice and injection), the
    first-pass perfusion series too (analysis/phantoms/first_pass.py; ts_in as synthetic_mr.perfusion_series),
    and with arterial_input another one as a dual-sequence protocol's AIF series.

    Returns (study, phantom, files); files of the native series come first, then by acquisition time."""
    from analysis.phantoms.ddce import ddce_phantom
    study = study or SyntheticStudy()
    phantom = phantom if phantom is not None else ddce_phantom()
    injection = study.study_datetime + timedelta(minutes=10)
    files = save_series(t1_map_series(phantom.t1_native_ms, study, series_description=DDCE_NATIVE_DESCRIPTION,
                                      series_number=100, acquired=injection - timedelta(minutes=3),
                                      pixel_mm=phantom.pixel_mm), directory / "native")
    for k, minutes in enumerate(phantom.times_min):
        series = t1_map_series(phantom.t1_post_ms[k], study, series_description=ddce_post_description(minutes),
                               series_number=101 + k, acquired=injection + timedelta(minutes=float(minutes)),
                               pixel_mm=phantom.pixel_mm, contrast_agent="Gadobutrol",
                               bolus_start=injection if bolus_start_in_dicom else None)
        files += save_series(series, directory / f"post_{k:02d}")
    if first_pass is not None:
        from dicom_out.synthetic_mr import perfusion_series
        files += save_series(perfusion_series(
            first_pass.frames, first_pass.times_s, study, injection=injection, ts_ms=first_pass.ts_ms,
            flip_deg=first_pass.flip_deg, pd_frames=first_pass.pd_frames, pd_flip_deg=first_pass.pd_flip_deg,
            pixel_mm=phantom.pixel_mm, ts_in=ts_in), directory / "first_pass")
    if arterial_input is not None:     # a dual-sequence protocol's own low-resolution, short-TS AIF series
        from dicom_out.synthetic_mr import perfusion_series
        files += save_series(perfusion_series(
            arterial_input.frames, arterial_input.times_s, study, injection=injection, ts_ms=arterial_input.ts_ms,
            flip_deg=arterial_input.flip_deg, pd_frames=arterial_input.pd_frames,
            pd_flip_deg=arterial_input.pd_flip_deg, pixel_mm=arterial_input.pixel_mm, series_number=91,
            series_description="PERF_AIF"), directory / "arterial_input")
    return study, phantom, files


T2_DESCRIPTION = "T2map_MOCO"


def write_t2_map(directory: Path, study: SyntheticStudy, t2_ms, pixel_mm: float,
                 series_number: int = 15) -> list[Path]:
    """A scanner's inline T2 map of the phantom slice (before contrast), as its own series."""
    series = t1_map_series(t2_ms, study, series_description=T2_DESCRIPTION, series_number=series_number,
                           acquired=study.study_datetime + timedelta(minutes=7), pixel_mm=pixel_mm, map_type="T2")
    return save_series(series, directory / "t2map")


def write_raw_molli_ecv_study(directory: Path, study: SyntheticStudy | None = None, phantom: EcvPhantom | None = None,
                              noise_fraction: float = 0.01) -> tuple[SyntheticStudy, EcvPhantom, list[Path]]:
    """The ECV phantom as raw MOLLI images (5(3)3), native and 15 min post-contrast, as a scanner without
    inline maps sends it. T1 for the images is the phantom's noise-free truth; the noise is in the images."""
    from analysis.phantoms.molli import SCHEME_5_3_3_MS, molli_images
    from dicom_out.synthetic_mr import molli_series
    study = study or SyntheticStudy()
    phantom = phantom or ecv_phantom(noise_fraction=0.0)
    injection = study.study_datetime + timedelta(minutes=10)
    files = []
    for name, t1, acquired, agent, number, seed in (
            ("MOLLI_pre", phantom.t1_pre_ms, study.study_datetime + timedelta(minutes=5), None, 30, 1),
            ("MOLLI_post15min", phantom.t1_post_ms, injection + timedelta(minutes=15), "Gadobutrol", 40, 2)):
        images = molli_images(t1, noise_fraction=noise_fraction, seed=seed)
        series = molli_series(images, SCHEME_5_3_3_MS, study, series_description=name, series_number=number,
                              acquired=acquired, pixel_mm=phantom.pixel_mm, contrast_agent=agent,
                              bolus_start=injection if agent else None)
        files += save_series(series, directory / name)
    return study, phantom, files


def write_oximetry_study(directory: Path, study: SyntheticStudy | None = None, phantom=None,
                         with_roi: bool = True, roi_as: str = "seg") -> tuple[SyntheticStudy, object, list[Path]]:
    """T2-prepared images (3 T) and, with_roi, the coronary sinus drawn on the first image, as a SEG
    (roi_as="seg") or as an RT Structure Set contour (roi_as="rtstruct")."""
    from pydicom.sr.codedict import codes as sr_codes

    from analysis.phantoms.oximetry import oximetry_phantom
    from dicom_out.segmentation import Segment, build_segmentation
    from dicom_out.synthetic_mr import t2prep_series
    from dicom_out.uids import derived_uid
    study = study or SyntheticStudy(field_strength_t=3.0)
    phantom = phantom if phantom is not None else oximetry_phantom()
    images = t2prep_series(phantom.images, phantom.te_ms, study, series_description="T2prep_oximetry",
                           series_number=50, acquired=study.study_datetime + timedelta(minutes=20),
                           pixel_mm=phantom.pixel_mm)
    files = save_series(images, directory / "t2prep")
    if with_roi and roi_as == "rtstruct":
        import numpy as np

        from dicom_out.rtstruct import build_rtstruct
        rows, cols = np.nonzero(phantom.coronary_sinus)
        centre, radius = np.array([rows.mean(), cols.mean()]), 5.0 / phantom.pixel_mm
        angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        polygon = centre + radius * np.column_stack([np.sin(angles), np.cos(angles)])
        rt = build_rtstruct(images[0], "Coronary sinus", polygon, series_uid=derived_uid(study.study_uid, "cs-rt"),
                            sop_uid=derived_uid(study.study_uid, "cs-rt", 1), series_number=52,
                            when=study.study_datetime)
        (directory / "rtstruct").mkdir(parents=True, exist_ok=True)
        rt.save_as(directory / "rtstruct" / "coronary_sinus.dcm", enforce_file_format=True)
        files.append(directory / "rtstruct" / "coronary_sinus.dcm")
    elif with_roi:
        seg = build_segmentation(
            phantom.coronary_sinus[None, :, :, None], [images[0]],
            [Segment("Coronary sinus", sr_codes.SCT.AnatomicalStructure, sr_codes.SCT.CoronarySinus, manual=True)],
            series_uid=derived_uid(study.study_uid, "cs-seg"), sop_uid=derived_uid(study.study_uid, "cs-seg", 1),
            series_number=51, series_description="Coronary sinus ROI", software_version="phantom")
        (directory / "seg").mkdir(parents=True, exist_ok=True)
        seg.save_as(directory / "seg" / "coronary_sinus.dcm")
        files.append(directory / "seg" / "coronary_sinus.dcm")
    return study, phantom, files


def write_raw_molli_ddce_study(directory: Path, phantom, study: SyntheticStudy | None = None,
                               noise_fraction: float = 0.01) -> tuple[SyntheticStudy, list[Path]]:
    """A dDCE study as raw MOLLI images: native and every post-contrast time point, one series each."""
    from analysis.phantoms.molli import SCHEME_5_3_3_MS, molli_images
    from dicom_out.synthetic_mr import molli_series
    study = study or SyntheticStudy()
    injection = study.study_datetime + timedelta(minutes=10)
    # (series description, T1 map, acquisition time, contrast agent or None before contrast)
    acquisitions: list[tuple[str, np.ndarray, datetime, str | None]] = [
        ("dDCE_native_MOLLI", phantom.t1_native_ms, injection - timedelta(minutes=3), None)]
    acquisitions += [(f"dDCE_post_{m:04.1f}min_MOLLI", phantom.t1_post_ms[k], injection + timedelta(minutes=float(m)),
                      "Gadobutrol") for k, m in enumerate(phantom.times_min)]
    files = []
    for k, (name, t1, acquired, agent) in enumerate(acquisitions):
        series = molli_series(molli_images(t1, noise_fraction=noise_fraction, seed=100 + k), SCHEME_5_3_3_MS, study,
                              series_description=name, series_number=200 + k, acquired=acquired,
                              pixel_mm=phantom.pixel_mm, contrast_agent=agent,
                              bolus_start=injection if agent else None)
        files += save_series(series, directory / f"{k:02d}")
    return study, files


def write_mixed_archive(directory: Path, kinds: list[str],
                        first_day: datetime = datetime(2026, 11, 2, 9)) -> tuple[dict[str, str], list[Path]]:
    """An archive's worth of phantom studies, one per day from first_day, each of a kind: "ecv" (inline T1
    maps), "molli" (ECV from raw MOLLI), "oximetry" (3 T, with its coronary sinus SEG) or "ddce" (a small dDCE
    phantom: 80 x 80 at 2 mm, maps 1-6 min). Returns (Study Instance UID -> kind, files)."""
    from analysis.phantoms.ddce import ddce_phantom
    from analysis.phantoms.short_axis import SliceGeometry
    small_ddce = ddce_phantom(geometry=SliceGeometry(matrix=80, pixel_mm=2.0), times_min=(1, 2, 3, 4, 5, 6))
    writers = {"ecv": lambda folder, study: write_ecv_study(folder, study)[2],
               "molli": lambda folder, study: write_raw_molli_ecv_study(folder, study)[2],
               "oximetry": lambda folder, study: write_oximetry_study(folder, study)[2],
               "ddce": lambda folder, study: write_ddce_study(folder, study, phantom=small_ddce)[2]}
    studies, files = {}, []
    for k, kind in enumerate(kinds):
        study = SyntheticStudy(patient_id=f"CMRN-ARCHIVE-{k:04d}", accession_number=f"ARC{k:05d}",
                               study_datetime=first_day + timedelta(days=k),
                               field_strength_t=3.0 if kind == "oximetry" else 1.5)
        files += writers[kind](directory / f"{k:04d}-{kind}", study)
        studies[study.study_uid] = kind
    return studies, files
