"""`cmr-node process`: the node's routing and modules on a folder of DICOM files, without network."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pydicom

import node
from node.config import Config
from node.store.index import Index, InstanceRecord
from node.errors import failure_of
from node.process.jobs import log_failure, run_module, write_datasets, write_previews
from node.receive.receiver import RejectedInstance, instance_record, read_file_header
from node.route.router import Router, t1_timeline
from node.settings import ModuleSettings

log = logging.getLogger("cmr_node.process")


def _record(path: Path) -> InstanceRecord:
    raw, ds, transfer_syntax = read_file_header(path)
    return instance_record(ds, str(path), len(raw), transfer_syntax, None)


def index_folder(input_dir: Path, index: Index) -> list[str]:
    """Index every readable DICOM file below input_dir; return the files skipped, with the reason."""
    skipped = []
    for path in sorted(p for p in input_dir.rglob("*") if p.is_file()):
        try:
            index.record_instance(_record(path))
        except (RejectedInstance, pydicom.errors.InvalidDicomError, OSError, ValueError) as exc:
            skipped.append(f"{path.relative_to(input_dir)}: {exc}")
    return skipped


def _run_job(job, settings: ModuleSettings, viewer_images: tuple[str, ...], out_dir: Path, index: Index) -> dict:
    entry = {"route": job.route, "module": job.module, "study_instance_uid": job.study_uid}
    try:
        output = run_module(job.module, job.study_uid, job.inputs["files"], settings, job.input_key, viewer_images,
                            bool(job.inputs.get("final")))
        written = write_datasets(output.datasets, out_dir, set(output.reingest))
        entry["previews"] = sorted(write_previews(output.previews, out_dir, prefix=f"job{job.id}_"))
        entry.update(state="done", results=output.results, outputs=[Path(o["path"]).name for o in written])
        index.finish_job(job.id, str(out_dir), [], [], job.study_uid, output.results.get("waiting_for"))
        for out in written:
            if out["reingest"]:
                index.record_instance(_record(Path(out["path"])))
    except Exception as exc:  # one failing module does not stop the others
        failure = failure_of(exc)
        log_failure(f"route {job.route}", failure, exc)
        entry.update(state="failed", error=failure.reason, failure=failure.as_dict())
        index.fail_job(job.id, failure)
    return entry


def _series_report(index: Index, router: Router, jobs: list[dict]) -> list[dict]:
    """Every series seen: what it was classified as, which routes took it, or why none did."""
    taken: dict[str, list[str]] = {}
    for job in index.all_jobs():
        for series_uid in job.inputs["series"]:
            taken.setdefault(series_uid, []).append(job.route)
    out = []
    for row in index.all_series():
        entry = json.loads(row["classification"]) if row["classification"] else {"series_instance_uid": row["series_uid"]}
        entry["routes"] = sorted(set(taken.get(row["series_uid"], [])))
        # a series only the study summary (a route marked last) read was still given to no module: say why
        modules = [route for route in router.config.routes if not route.last]
        if not set(entry["routes"]) & {route.name for route in modules}:
            timeline = t1_timeline(index.series_of_study(row["study_uid"]))
            entry["not_routed_because"] = [r for route in modules
                                           if (r := route.mismatch(row, timeline))] or ["no routes configured"]
        out.append(entry)
    return out


def process_folder(input_dir: Path, out_dir: Path, config: Config) -> dict:
    """Route and run every module on input_dir; write *.dcm and results.json into out_dir."""
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {input_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    index = Index(":memory:")
    skipped = index_folder(input_dir, index)
    router = Router(config, index)
    report = {"cmr_node_version": node.__version__, "skipped_files": skipped, "jobs": []}
    # rounds: outputs taken back in (T1 maps from raw MOLLI) can start further routes
    router.sweep(now=float("inf"))
    while True:
        while jobs := index.claim_jobs(limit=1_000_000):
            for job in jobs:
                route = next(r for r in config.routes if r.name == job.route)
                report["jobs"].append(_run_job(job, config.inputs, route.viewer_images, out_dir, index))
            router.sweep(now=float("inf"))
        # the folder is all there is: a module still waiting gets its final run, as at a study's completion
        if not [j for study in {s["study_uid"] for s in index.all_series()} for j in router.final_runs(study)]:
            break
    report["series"] = _series_report(index, router, report["jobs"])
    (out_dir / "results.json").write_text(json.dumps(report, indent=2))
    index.close()
    return report
