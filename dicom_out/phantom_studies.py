"""Phantom studies written as DICOM files, as a scanner would send them."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from analysis.phantoms.t1_ecv import EcvPhantom, ecv_phantom
from dicom_out.synthetic_mr import SyntheticStudy, save_series, t1_map_series

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
