"""`cmr-node demo`: the whole chain on a synthetic study.

Scanner (synthetic T1 maps: an ECV study, and a dDCE study with a native map
and 16 post-contrast maps from 1 to 30 min) --C-STORE--> node --ECV and dDCE
modules--> Parametric Maps --C-STORE--> local PACS (Orthanc when installed,
else a folder-writing storage SCP). Prints what was found per phantom region
beside the truth, and where to look.
"""
from __future__ import annotations

import logging
import shutil
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom

from analysis.phantoms import Region
from dicom_out.phantom_studies import write_ddce_study, write_ecv_study
from node.config import builtin_routes, parse_config
from node.demo.local_pacs import FolderStorageSCP, Orthanc, free_port, orthanc_executable
from node.network.scu import push_files
from node.service import Node

PM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.30"
ECV_DESCRIPTION = "ECV map (cmr-node)"
log = logging.getLogger("cmr_node.demo")


def demo_config(workdir: Path, pacs_port: int, pacs_ae: str) -> dict:
    return {
        "node": {"ae_title": "CMRNODE", "host": "127.0.0.1", "port": free_port(),
                 "data_dir": str(workdir / "node-data"), "min_free_mb": 100},
        "completion": {"series_quiet_seconds": 1, "study_quiet_seconds": 2, "sweep_interval_seconds": 0.5},
        "dispatch": {"retry_base_seconds": 1, "interval_seconds": 0.5},
        "destinations": [{"name": "pacs", "host": "127.0.0.1", "port": pacs_port, "ae_title": pacs_ae}],
        # the built-in routes: the node knows the phantom's series by their headers, not their names
        "routes": builtin_routes(destinations=["pacs"], viewer_images=["grayscale", "colour"]),
    }


def _maps_in_pacs(pacs, study_uid: str) -> dict[str, bytes]:
    """Parametric Maps of the study held by the PACS, by Series Description."""
    found = {}
    if isinstance(pacs, Orthanc):
        for orthanc_id in pacs.find_instances(PM_SOP_CLASS):
            tags = pacs.instance_tags(orthanc_id)
            if tags.get("StudyInstanceUID") == study_uid:
                found[tags["SeriesDescription"]] = pacs.instance_file(orthanc_id)
    else:
        for path in pacs.files():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if ds.SOPClassUID == PM_SOP_CLASS and ds.StudyInstanceUID == study_uid:
                found[ds.SeriesDescription] = path.read_bytes()
    return found


def _wait_for_maps(pacs, study_uid: str, descriptions: set[str], timeout: float) -> dict[str, np.ndarray]:
    """Pixel values of the named maps once all of them are in the PACS."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = _maps_in_pacs(pacs, study_uid)
        if descriptions <= set(found):
            return {d: pydicom.dcmread(BytesIO(found[d])).pixel_array for d in descriptions}
        time.sleep(0.5)
    raise TimeoutError(f"not all of {sorted(descriptions)} reached the PACS within {timeout:.0f} s")


def _ecv_summary(ecv: np.ndarray, phantom) -> list[str]:
    lines = ["region            ECV found (median)   truth"]
    for region in (Region.REMOTE, Region.INFARCT, Region.MVO, Region.OTHER_TISSUE):
        found = float(np.median(ecv[phantom.labels == region]))
        truth = phantom.truth_by_region[region.name.lower()] * 100
        lines.append(f"{region.name.lower():16s}  {found:8.1f} %            {truth:5.1f} %")
    return lines


DDCE_LABELS = ("ve+vp", "ve")   # the maps sent: vp, PS and Fp are identified nowhere by delayed maps alone
DDCE_WITHHELD = ("vp", "PS", "Fp")


def _ddce_summary(maps: dict[str, np.ndarray], phantom) -> list[str]:
    lines = ["region    window   " + "  ".join(f"{label:>13s}" for label in DDCE_LABELS),
             "                   (found / truth; fractions)"]
    for region in (Region.REMOTE, Region.INFARCT, Region.MVO):
        truth = phantom.truth[region.name.lower()]
        expected = {"ve+vp": truth["ve"] + truth["vp"], "ve": truth["ve"]}
        for window in ("5min", "30min"):
            cells = [f"{float(np.median(maps[f'dDCE {window} {label}'][phantom.labels == region])):6.2f}/"
                     f"{expected[label]:<6.2f}" for label in DDCE_LABELS]
            lines.append(f"{region.name.lower():9s} {window:>6s}   " + "  ".join(cells))
    lines.append(f"{', '.join(DDCE_WITHHELD)}: identified in almost no voxel by delayed maps alone, so their maps "
                 "are withheld (results.json and the report give the bounds)")
    return lines


def _wait_for_registry(node: Node, timeout: float) -> list[dict]:
    """Registry rows once both studies' reports (dDCE with its 30-min window) are in."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = node.registry.rows()
        regions = {(r["producer"], r["region"]) for r in rows}
        if {("cmr-node ecv", "LV myocardium"), ("cmr-node ddce", "LV myocardium, 30-min window"),
                ("cmr-node lge", "LV myocardium (LGE_standard)")} <= regions:
            return rows
        time.sleep(0.5)
    raise TimeoutError(f"the reports did not reach the registry within {timeout:.0f} s")


def _registry_summary(rows: list[dict]) -> list[str]:
    wanted = {"ECV": "ECV (%)", "VEVP": "ve+vp", "PS": "PS (mL/min/g)", "FP": "Fp (mL/min/g)",
              "INFSIZE": "infarct (% LV)", "TRANSMUR": "transmural %", "MVOSIZE": "MVO (% LV)", "CNRIB": "CNR inf-blood"}
    lines = ["registry (from the Structured Reports; medians over the automatic LV myocardium):"]
    for r in rows:
        if r["concept_code"] in wanted and r["derivation"] in ("Median", None) and r["region"].startswith("LV myo"):
            lines.append(f"  {r['producer']:14s} {r['region']:30s} {wanted[r['concept_code']]:14s} {r['value']:.3g}")
    return lines


def _infarct_truth(phantom) -> float:
    myocardium = np.isin(phantom.labels, (Region.REMOTE, Region.INFARCT, Region.MVO)).sum()
    return 100.0 * np.isin(phantom.labels, (Region.INFARCT, Region.MVO)).sum() / myocardium


def _collect_previews(data_dir: Path, target: Path) -> int:
    target.mkdir(parents=True, exist_ok=True)
    previews = sorted(data_dir.glob("results/*/previews/*.png"))
    for png in previews:   # results/<job id>/previews/<name>: one folder for all jobs, so the job id in front
        shutil.copy(png, target / f"job{png.parent.parent.name}_{png.name}")
    return len(previews)


def run_demo(workdir: Path, keep_running: bool = False, timeout: float = 180.0) -> int:
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ecv_study, ecv_phantom_, ecv_files = write_ecv_study(workdir / "scanner" / "ecv")
    ddce_study, ddce_phantom_, ddce_files = write_ddce_study(workdir / "scanner" / "ddce")
    if orthanc_executable():
        pacs = Orthanc(workdir / "orthanc").start()
        where = f"Orthanc at {pacs.url} (DICOM port {pacs.dicom_port})"
    else:
        pacs = FolderStorageSCP(workdir / "pacs").start()
        where = f"built-in storage SCP writing to {pacs.directory} (install Debian 'orthanc' for a real PACS)"
    node = Node(parse_config(demo_config(workdir, pacs.dicom_port, pacs.ae_title)))
    try:
        node.start()
        print(f"node listening as CMRNODE on 127.0.0.1:{node.port}; PACS: {where}")
        files = ecv_files + ddce_files
        statuses = push_files("SCANNER", "127.0.0.1", node.port, "CMRNODE", files)
        print(f"scanner pushed {len(files)} T1 map images (an ECV study and a dDCE study), "
              f"statuses {sorted({hex(s) for s in statuses})}")
        started = time.time()
        ecv = _wait_for_maps(pacs, ecv_study.study_uid, {ECV_DESCRIPTION}, timeout)[ECV_DESCRIPTION]
        print(f"ECV Parametric Map arrived in the PACS {time.time() - started:.1f} s after the push\n")
        print("\n".join(_ecv_summary(ecv, ecv_phantom_)))
        wanted = {f"dDCE {w} {label}" for w in ("5min", "30min") for label in DDCE_LABELS}
        maps = _wait_for_maps(pacs, ddce_study.study_uid, wanted, timeout)
        print(f"\ndDCE Parametric Maps (5 and 30 min, 2CXM) arrived {time.time() - started:.1f} s after the push\n")
        print("\n".join(_ddce_summary(maps, ddce_phantom_)))
        print()
        print("\n".join(_registry_summary(_wait_for_registry(node, timeout))))
        print(f"phantom truth: infarct {_infarct_truth(ddce_phantom_):.1f} % of LV myocardium, transmurality 60 %")
        count = _collect_previews(workdir / "node-data", workdir / "previews")
        print(f"\n{count} PNG previews of the maps: {workdir / 'previews'}")
        print(f"node data (inputs, index, results/*/results.json, registry.sqlite): {workdir / 'node-data'}")
        print(f"PACS: {where}")
        if keep_running:
            print("running until Ctrl-C")
            while True:
                time.sleep(1)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        node.stop()
        pacs.stop()
