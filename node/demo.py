"""`cmr-node demo`: the whole chain on a synthetic study.

Scanner (synthetic native + post-contrast T1 maps) --C-STORE--> node --ECV
module--> Parametric Map --C-STORE--> local PACS (Orthanc when installed,
else a folder-writing storage SCP). Prints the ECV found per phantom region
beside the truth, and where to look.
"""
from __future__ import annotations

import logging
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom

from analysis.phantoms import Region
from dicom_out.phantom_studies import write_ecv_study
from node.config import parse_config
from node.local_pacs import FolderStorageSCP, Orthanc, free_port, orthanc_executable
from node.scu import push_files
from node.service import Node

PM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.30"
log = logging.getLogger("cmr_node.demo")


def demo_config(workdir: Path, pacs_port: int, pacs_ae: str) -> dict:
    return {
        "node": {"ae_title": "CMRNODE", "host": "127.0.0.1", "port": free_port(),
                 "data_dir": str(workdir / "node-data")},
        "completion": {"series_quiet_seconds": 1, "study_quiet_seconds": 2, "sweep_interval_seconds": 0.5},
        "dispatch": {"retry_base_seconds": 1, "interval_seconds": 0.5},
        "destinations": [{"name": "pacs", "host": "127.0.0.1", "port": pacs_port, "ae_title": pacs_ae}],
        "routes": [{"name": "ecv", "series_description": "(?i)^(?!.*ddce).*(t1.?map|molli|moco_t1)", "module": "ecv",
                    "destinations": ["pacs"]}],
    }


def _wait_for_map(pacs, timeout: float) -> bytes:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if isinstance(pacs, Orthanc):
            found = pacs.find_instances(PM_SOP_CLASS)
            if found:
                return pacs.instance_file(found[0])
        else:
            for path in pacs.files():
                data = path.read_bytes()
                if PM_SOP_CLASS.encode() in data[:1024]:
                    return data
        time.sleep(0.5)
    raise TimeoutError(f"no ECV map reached the PACS within {timeout:.0f} s")


def _summary(pm_bytes: bytes, phantom) -> list[str]:
    ecv = pydicom.dcmread(BytesIO(pm_bytes)).pixel_array  # one slice; values are ECV in %
    lines = ["region            ECV found (median)   truth"]
    for region in (Region.REMOTE, Region.INFARCT, Region.MVO, Region.OTHER_TISSUE):
        found = float(np.median(ecv[phantom.labels == region]))
        truth = phantom.truth_by_region[region.name.lower()] * 100
        lines.append(f"{region.name.lower():16s}  {found:8.1f} %            {truth:5.1f} %")
    return lines


def run_demo(workdir: Path, keep_running: bool = False, timeout: float = 180.0) -> int:
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    study, phantom, files = write_ecv_study(workdir / "scanner")
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
        statuses = push_files("SCANNER", "127.0.0.1", node.port, "CMRNODE", files)
        print(f"scanner pushed {len(files)} T1 map images, statuses {sorted({hex(s) for s in statuses})}")
        started = time.time()
        pm_bytes = _wait_for_map(pacs, timeout)
        print(f"ECV Parametric Map arrived in the PACS {time.time() - started:.1f} s after the push\n")
        print("\n".join(_summary(pm_bytes, phantom)))
        print(f"\nnode data (inputs, index, results/*/results.json): {workdir / 'node-data'}")
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
