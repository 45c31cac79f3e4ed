"""Backfill throughput (issue 17): studies per hour from a real Orthanc archive (C-FIND, C-MOVE) through the
node, with module jobs on a Dask cluster of 1, 2 and 4 worker processes (one thread each), and on the node's
own local worker processes (1 and 2) as the peer, all in one run on this machine. Scaling is the figure, not
the absolute number: the machine's cores bound it. Prints JSON.

    python benchmarks/backfill.py [--studies 10] [--workers 1 2 4]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import report  # noqa: E402
from dicom_out.phantom_studies import write_mixed_archive  # noqa: E402
from node.demo.local_dask import DaskCluster  # noqa: E402
from node.demo.local_pacs import FolderStorageSCP, Orthanc, free_port  # noqa: E402

MIX = ["ecv", "molli", "oximetry", "ecv", "molli", "ddce"]   # repeated: the archive's kinds of study
SPEEDUP_TARGET = 1.4    # two Dask workers against one, on a machine with at least two cores


def config_toml(data_dir: Path, node_port: int, pacs: Orthanc, results: FolderStorageSCP, executor: dict,
                local_workers: int) -> str:
    executor_lines = "".join(f'{key} = "{value}"\n' for key, value in executor.items())
    return f"""[node]
ae_title = "CMRNODE"
port = {node_port}
data_dir = "{data_dir}"
workers = {local_workers}
min_free_mb = 10

[executor]
{executor_lines}
[inputs]
ddce_windows_minutes = [5]

[[destinations]]
name = "results"
host = "127.0.0.1"
port = {results.dicom_port}
ae_title = "{results.ae_title}"

[[sources]]
name = "archive"
host = "127.0.0.1"
port = {pacs.dicom_port}
ae_title = "{pacs.ae_title}"
"""


def run(work: Path, name: str, node_port: int, pacs: Orthanc, results: FolderStorageSCP, executor: dict,
        local_workers: int = 1) -> dict:
    folder = work / f"node-{name}"
    folder.mkdir()
    toml = folder / "node.toml"
    toml.write_text(config_toml(folder / "data", node_port, pacs, results, executor, local_workers))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "node.cli", "--log-level", "WARNING", "backfill", "--config",
                             str(toml), "--from", "archive", "--since", "2026-01-01"], capture_output=True,
                            text=True, timeout=7200)
    seconds = time.monotonic() - started
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-500:]
    processed = int(summary.split(" processed")[0].rsplit(" ", 1)[-1]) if " processed" in summary else 0
    return {"executor": name, "seconds": round(seconds, 1), "studies_processed": processed,
            "studies_per_hour": round(processed / seconds * 3600.0, 1), "exit_code": result.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    kinds = [MIX[k % len(MIX)] for k in range(args.studies)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="cmr-node-backfill-bench-") as tmp:
        work = Path(tmp)
        _, files = write_mixed_archive(work / "scanner", kinds)
        node_port = free_port()
        pacs = Orthanc(work / "orthanc", extra={"DicomModalities": {"cmrnode": ["CMRNODE", "127.0.0.1", node_port]}})
        pacs.start()
        # results go elsewhere: in the archive, a study's cmr-node report would make the next run skip it
        results = FolderStorageSCP(work / "results").start()
        try:
            for path in files:
                pacs.post("/instances", path.read_bytes())
            for count in args.workers:
                cluster = DaskCluster(work / f"dask-{count}", workers=count).start()
                try:
                    rows.append(dict(run(work, f"dask-{count}", node_port, pacs, results,
                                         {"kind": "dask", "scheduler": cluster.address}), workers=count))
                finally:
                    cluster.stop()
            for count in (1, 2):
                rows.append(dict(run(work, f"local-{count}", node_port, pacs, results, {"kind": "local"}, count),
                                 workers=count))
        finally:
            results.stop()
            pacs.stop()
    by_name = {r["executor"]: r for r in rows}
    one, two = by_name.get("dask-1"), by_name.get("dask-2")
    speedup = round(two["studies_per_hour"] / one["studies_per_hour"], 2) if one and two and one[
        "studies_per_hour"] else None
    targets = {"every run processed every study": all(r["studies_processed"] == len(kinds) and r["exit_code"] == 0
                                                      for r in rows)}
    if speedup is not None and (os.cpu_count() or 1) >= 2:
        targets[f"2 Dask workers >= {SPEEDUP_TARGET} x 1 worker"] = speedup >= SPEEDUP_TARGET
    return report({"studies": len(kinds), "mix": {k: kinds.count(k) for k in set(kinds)},
                   "cpu_count": os.cpu_count(), "runs": rows, "dask_speedup_2_over_1": speedup}, targets)


if __name__ == "__main__":
    sys.exit(main())
