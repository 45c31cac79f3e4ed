"""Receive under load: 4 concurrent DCMTK storescu senders x 500 MR images (256x256), into the node and into
Orthanc (its defaults, started here), in interleaved rounds with fresh storage, medians.

Reports each receiver's total throughput, the node's peak resident memory (VmHWM, summed over the node's
process and its children) and that every image was stored. Orthanc, like every DCMTK-based receiver, gets
TCP_NODELAY=1 in its environment (benchmarks/receive_throughput.py says why). Prints one JSON object.
Usage: python benchmarks/receive_load.py [--senders 4] [--images 500] [--rounds 3]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import report  # noqa: E402
from benchmarks.receive_throughput import DCMTK_ENV, make_images, node_command, node_config, wait_for_port  # noqa: E402
from node.demo.local_pacs import Orthanc, free_port  # noqa: E402


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process and, recursively, its children (MB); 0 for one that has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                    for c in (task / "children").read_text().split()]
    except OSError:
        return 0.0
    own = next((int(line.split()[1]) / 1024.0 for line in status.splitlines() if line.startswith("VmHWM:")), 0.0)
    return own + sum(peak_rss_mb(child) for child in children)


def send_all(port: int, called_ae: str, batches: list[list[Path]]) -> tuple[float, list[int]]:
    started = time.perf_counter()
    senders = [subprocess.Popen(["storescu", "-aet", f"SENDER{k}", "-aec", called_ae, "127.0.0.1", str(port),
                                 *map(str, files)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=DCMTK_ENV)
               for k, files in enumerate(batches)]
    codes = [s.wait() for s in senders]
    return time.perf_counter() - started, codes


def load_node(work: Path, batches: list[list[Path]], name: str) -> tuple[float, list[int], int, float]:
    port = free_port()
    node = subprocess.Popen(node_command(node_config(work, port, name)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        seconds, codes = send_all(port, "CMRNODE", batches)
        peak = peak_rss_mb(node.pid)
    finally:
        node.terminate()
        node.wait(timeout=60)
    return seconds, codes, len(list((work / name / "incoming").rglob("*.dcm"))), peak


def load_orthanc(work: Path, batches: list[list[Path]], name: str) -> tuple[float, list[int], int]:
    server = Orthanc(work / name).start()
    try:
        seconds, codes = send_all(server.dicom_port, server.ae_title, batches)
        return seconds, codes, len(server.instances())
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--images", type=int, default=500, help="per sender")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(DCMTK_ENV)
    work = Path(tempfile.mkdtemp(prefix="cmr-load-"))
    total = args.senders * args.images
    try:
        batches = [make_images(work / f"sender{k}", args.images) for k in range(args.senders)]
        seconds: dict[str, list[float]] = {"node": [], "orthanc": []}
        stored: dict[str, list[int]] = {"node": [], "orthanc": []}
        failed_senders, peaks = 0, []
        for k in range(args.rounds):
            elapsed, codes, count, peak = load_node(work, batches, f"node{k}")
            peaks.append(peak)
            for name, run in (("node", (elapsed, codes, count)), ("orthanc", load_orthanc(work, batches, f"orthanc{k}"))):
                seconds[name].append(run[0])
                failed_senders += sum(c != 0 for c in run[1])
                stored[name].append(run[2])
            for name in (f"node{k}", f"orthanc{k}"):
                shutil.rmtree(work / name, ignore_errors=True)
        rate = {name: total / statistics.median(values) for name, values in seconds.items()}
        return report({
            "benchmark": "receive_load", "senders": args.senders, "images_per_sender": args.images,
            "rounds": args.rounds, "image_size": "256x256 uint16", "images_total": total,
            **{f"{name}_images_per_s": round(value, 1) for name, value in rate.items()},
            **{f"{name}_images_per_s_rounds": [round(total / s, 1) for s in values] for name, values in seconds.items()},
            "ratio_node_to_orthanc": round(rate["node"] / rate["orthanc"], 3),
            "node_peak_rss_mb": round(max(peaks), 1), "stored": stored, "failed_senders": failed_senders,
        }, {"node at 1.0 x Orthanc or faster": rate["node"] >= rate["orthanc"],
            "every image stored, every round": all(c == total for counts in stored.values() for c in counts),
            "every sender succeeded": failed_senders == 0,
            "node peak memory under 300 MB": max(peaks) < 300})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
