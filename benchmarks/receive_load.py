"""Receive under load: 4 concurrent DCMTK storescu senders x 500 MR images (256x256) into one node.

Reports total throughput, the node's peak resident memory (VmHWM of the node
process) and that every image was stored. Prints one JSON object.
Usage: python benchmarks/receive_load.py [--senders 4] [--images 500]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import report  # noqa: E402
from benchmarks.receive_throughput import DCMTK_ENV, make_images, wait_for_port  # noqa: E402
from node.demo.local_pacs import free_port  # noqa: E402


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--images", type=int, default=500, help="per sender")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cmr-load-"))
    try:
        batches = [make_images(work / f"sender{k}", args.images) for k in range(args.senders)]
        port = free_port()
        config = work / "node.toml"
        config.write_text(f'[node]\nae_title = "CMRNODE"\nport = {port}\ndata_dir = "{work / "node-data"}"\n'
                          "min_free_mb = 100\n[completion]\nseries_quiet_seconds = 3600\nstudy_quiet_seconds = 3600\n")
        node = subprocess.Popen([sys.executable, "-m", "node.cli", "--log-level", "WARNING", "serve", "--config",
                                 str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port)
            started = time.perf_counter()
            senders = [subprocess.Popen(["storescu", "-aet", f"SENDER{k}", "-aec", "CMRNODE", "127.0.0.1", str(port),
                                         *map(str, files)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        env=DCMTK_ENV) for k, files in enumerate(batches)]
            codes = [s.wait() for s in senders]
            elapsed = time.perf_counter() - started
            peak = peak_rss_mb(node.pid)
        finally:
            node.terminate()
            node.wait(timeout=60)
        total = args.senders * args.images
        stored = len(list((work / "node-data" / "incoming").rglob("*.dcm")))
        return report({
            "benchmark": "receive_load", "senders": args.senders, "images_per_sender": args.images,
            "image_size": "256x256 uint16", "images_total": total, "stored": stored,
            "all_senders_succeeded": all(c == 0 for c in codes), "seconds": round(elapsed, 2),
            "images_per_s": round(total / elapsed, 1), "node_peak_rss_mb": round(peak, 1),
        }, {"every image stored": stored == total, "every sender succeeded": all(c == 0 for c in codes),
            "node peak memory under 300 MB": peak < 300})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
