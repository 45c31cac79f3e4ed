"""Receive throughput: DCMTK storescu pushing N MR images (256x256) on loopback, the node vs DCMTK storescp.

Both receivers run as separate processes; the node stores with full durability
(fsync of file and directory, SQLite synchronous=FULL) before answering Success.
Prints one JSON object. Usage: python benchmarks/receive_throughput.py [--images 1000]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import report  # noqa: E402
from dicom_out.synthetic_mr import SyntheticStudy, save_series, t1_map_series  # noqa: E402
from node.demo.local_pacs import free_port  # noqa: E402


def make_images(directory: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    study = SyntheticStudy()
    paths = []
    for start in range(0, count, 100):
        block = rng.integers(0, 4000, size=(min(100, count - start), 256, 256)).astype(float)
        series = t1_map_series(block, study, series_description=f"BENCH_{start}", series_number=start,
                               acquired=study.study_datetime, pixel_mm=1.0)
        paths += save_series(series, directory / str(start))
    return paths


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port}")


# Debian's DCMTK leaves Nagle's algorithm on unless TCP_NODELAY=1 is set; with it on, storescp
# answers every image after a 40 ms delayed ACK (about 22 images/s), which says nothing of storage.
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def push(port: int, called_ae: str, files: list[Path]) -> float:
    started = time.perf_counter()
    result = subprocess.run(["storescu", "-aet", "BENCH", "-aec", called_ae, "127.0.0.1", str(port),
                             *map(str, files)], capture_output=True, text=True, env=DCMTK_ENV)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return elapsed


def run_receiver(cmd: list[str], port: int, called_ae: str, files: list[Path]) -> float:
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=DCMTK_ENV)
    try:
        wait_for_port(port)
        return push(port, called_ae, files)
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cmr-bench-"))
    try:
        files = make_images(work / "images", args.images)
        port = free_port()
        (work / "storescp").mkdir()
        scp_seconds = run_receiver(["storescp", "-aet", "STORESCP", "-od", str(work / "storescp"), str(port)],
                                   port, "STORESCP", files)
        port = free_port()
        config = work / "node.toml"
        config.write_text(f'[node]\nae_title = "CMRNODE"\nport = {port}\ndata_dir = "{work / "node-data"}"\n'
                          "[completion]\nseries_quiet_seconds = 3600\nstudy_quiet_seconds = 3600\n")
        node_seconds = run_receiver([sys.executable, "-m", "node.cli", "--log-level", "WARNING", "serve",
                                     "--config", str(config)], port, "CMRNODE", files)
        stored = len(list((work / "node-data" / "incoming").rglob("*.dcm")))
        ratio = scp_seconds / node_seconds
        return report({
            "benchmark": "receive_throughput", "images": args.images, "image_size": "256x256 uint16",
            "storescp_images_per_s": round(args.images / scp_seconds, 1),
            "node_images_per_s": round(args.images / node_seconds, 1),
            "ratio_node_to_storescp": round(scp_seconds / node_seconds, 3),
            "target_ratio": 0.8, "node_stored": stored,
            "node_durability": "fsync file + directory, SQLite WAL synchronous=FULL, before Success",
        }, {"node at 0.8 x storescp or faster": ratio >= 0.8, "every image stored": stored == args.images})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
