"""Receive throughput: DCMTK storescu pushing N MR images (256x256) on loopback into DCMTK storescp, Orthanc and
the node, in interleaved rounds (one of each per round, fresh storage every time), medians.

- storescp: writes files, no fsync, no index: the floor of what a DICOM receiver costs.
- Orthanc (Debian `orthanc`, its defaults, started here): its SQLite index and synced storage area; what a
  hospital would otherwise put next to the scanner, and the yardstick (issue 15). Like every DCMTK-based
  receiver it reads TCP_NODELAY from its environment: without it, Orthanc 1.10 waits for delayed ACKs and
  takes 20 images/s on this machine; with it, about 175.
- The node: `cmr-node serve`, every instance's file flushed and its index row committed before Success (README,
  How the node keeps data safe).
Prints one JSON object. Usage: python benchmarks/receive_throughput.py [--images 1000] [--rounds 3]
(CMR_NODE_RECEIVE_PROCESSES=N in the environment runs the node with receive_processes = N.)
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import report  # noqa: E402
from dicom_out.synthetic_mr import SyntheticStudy, save_series, t1_map_series  # noqa: E402
from node.demo.local_pacs import Orthanc, free_port  # noqa: E402


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


def node_config(work: Path, port: int, name: str) -> Path:
    config = work / f"{name}.toml"
    processes = os.environ.get("CMR_NODE_RECEIVE_PROCESSES")     # to compare settings; the default otherwise
    config.write_text(f'[node]\nae_title = "CMRNODE"\nport = {port}\ndata_dir = "{work / name}"\n'
                      + (f"receive_processes = {processes}\n" if processes else "") +
                      "[completion]\nseries_quiet_seconds = 3600\nstudy_quiet_seconds = 3600\n")
    return config


def node_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "node.cli", "--log-level", "WARNING", "serve", "--config", str(config)]


def time_storescp(work: Path, files: list[Path], name: str) -> float:
    port = free_port()
    (work / name).mkdir()
    return run_receiver(["storescp", "-aet", "STORESCP", "-od", str(work / name), str(port)], port, "STORESCP", files)


def time_orthanc(work: Path, files: list[Path], name: str) -> tuple[float, int]:
    server = Orthanc(work / name).start()
    try:
        seconds = push(server.dicom_port, server.ae_title, files)
        return seconds, len(server.instances())
    finally:
        server.stop()


def time_node(work: Path, files: list[Path], name: str) -> tuple[float, int]:
    port = free_port()
    seconds = run_receiver(node_command(node_config(work, port, name)), port, "CMRNODE", files)
    return seconds, len(list((work / name / "incoming").rglob("*.dcm")))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(DCMTK_ENV)      # Orthanc inherits it (storescp and storescu are given it)
    work = Path(tempfile.mkdtemp(prefix="cmr-bench-"))
    try:
        files = make_images(work / "images", args.images)
        seconds: dict[str, list[float]] = {"storescp": [], "orthanc": [], "node": []}
        stored: dict[str, list[int]] = {"orthanc": [], "node": []}
        for k in range(args.rounds):      # interleaved: a slow minute of the machine hits all three alike
            seconds["storescp"].append(time_storescp(work, files, f"storescp{k}"))
            for name, timer in (("orthanc", time_orthanc), ("node", time_node)):
                elapsed, count = timer(work, files, f"{name}{k}")
                seconds[name].append(elapsed)
                stored[name].append(count)
                shutil.rmtree(work / f"{name}{k}", ignore_errors=True)
        rate = {name: args.images / statistics.median(values) for name, values in seconds.items()}
        return report({
            "benchmark": "receive_throughput", "images": args.images, "rounds": args.rounds,
            "image_size": "256x256 uint16", "sender": "DCMTK storescu, one association, TCP_NODELAY=1",
            **{f"{name}_images_per_s": round(value, 1) for name, value in rate.items()},
            **{f"{name}_images_per_s_rounds": [round(args.images / s, 1) for s in values]
               for name, values in seconds.items()},
            "ratio_node_to_orthanc": round(rate["node"] / rate["orthanc"], 3),
            "ratio_node_to_storescp": round(rate["node"] / rate["storescp"], 3),
            "stored": stored,
            "node_durability": "file and directory flushed, index row committed before Success (README)",
        }, {"node at 1.0 x Orthanc or faster": rate["node"] >= rate["orthanc"],
            "every image stored, every round": all(c == args.images for counts in stored.values() for c in counts)})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
