"""Command line: serve, process, demo, status, retry, inputs, backfill, registry."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from node.ops import logs
from node.config import ConfigError, load_config, offline_config


def _serve(args) -> int:
    from node.service import Node
    Node(load_config(args.config)).serve_forever()
    return 0


def _process(args) -> int:
    from node.process.offline import process_folder
    config = load_config(args.config) if args.config else offline_config()
    report = process_folder(Path(args.input_dir), Path(args.out), config)
    failed = [j for j in report["jobs"] if j["state"] != "done"]
    for series in report["series"]:
        kinds = ", ".join(series.get("kinds", {})) or "unclassified"
        why = ["not routed to a module: " + "; ".join(series["not_routed_because"])] \
            if series.get("not_routed_because") else []
        routes = ", ".join(series["routes"] + why)
        print(f"series {series.get('series_number')} {series.get('series_description', '')!r}: {kinds} -> {routes}")
    for job in failed:
        failure = job["failure"]
        what = "input not usable" if failure["kind"] == "input" else "internal error"
        print(f"route {job['route']} failed ({what}, at '{failure['step']}'): {failure['reason']}")
    print(f"{len(report['jobs'])} job(s), {len(failed)} failed, {len(report['skipped_files'])} file(s) skipped; "
          f"results in {Path(args.out) / 'results.json'}")
    return 1 if failed else 0


def _demo(args) -> int:
    from node.demo.demo import run_demo
    return run_demo(Path(args.workdir), keep_running=args.keep_running)


def _open_index(args):
    from node.store.index import Index
    from node.store.layout import Layout
    config = load_config(args.config)
    path = Layout(config.node.data_dir).index_path
    if not path.exists():
        raise ConfigError(f"no index at {path}: has the node run with this configuration?")
    return Index(path)


def _status(args) -> int:
    index = _open_index(args)
    print(json.dumps(index.status(), indent=2))
    return 0


def _retry(args) -> int:
    count = _open_index(args).retry_dead(args.destination)
    print(f"{count} dead letter(s) queued again")
    return 0


def _inputs(args) -> int:
    from node.settings import study_value
    from node.store.layout import is_valid_uid
    if not is_valid_uid(args.study_uid):
        raise ConfigError(f"not a Study Instance UID: {args.study_uid!r}")
    index = _open_index(args)
    if args.action == "set":
        values = {}
        for pair in args.values:
            key, _, value = pair.partition("=")
            try:
                study_value(key, value)
            except ValueError as exc:
                raise ConfigError(f"{pair!r}: {exc}") from None
            values[key] = value
        index.set_study_inputs(args.study_uid, values)
        print(f"{len(values)} value(s) set; the study's routes run again")
    print(json.dumps(index.study_inputs(args.study_uid), indent=2))
    return 0


def _date(text: str | None, flag: str = "--since"):
    """A date option as YYYY-MM-DD (YYYYMMDD accepted); None when not given."""
    if text is None:
        return None
    from datetime import date
    digits = text.replace("-", "")
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])) if len(digits) == 8 else \
            date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected a date YYYY-MM-DD") from None


def _since(text: str | None) -> str | None:
    """--since as YYYY-MM-DD (YYYYMMDD accepted)."""
    day = _date(text)
    return day.isoformat() if day else None


def _backfill(args) -> int:
    import re
    from node.backfill.driver import run_backfill
    try:
        description = re.compile(args.series_description) if args.series_description else None
    except re.error as exc:
        raise ConfigError(f"--series-description: bad regular expression: {exc}") from None
    since, until = _date(args.since), _date(args.until, "--until")
    if until is not None and until < since:
        raise ConfigError("--until: before --since")
    if args.in_flight is not None and args.in_flight < 1:
        raise ConfigError("--in-flight: at least 1")
    return run_backfill(load_config(args.config), args.source, since, until, description, args.dry_run,
                        args.in_flight)


def _registry(args) -> int:
    from node.registry import ingest_file, open_registry
    from node.registry.export import write_export
    if args.action == "export" and args.format == "parquet" and not args.out:
        raise ConfigError("--format parquet writes a file: give --out FILE")
    registry = open_registry(load_config(args.config))
    if args.action == "summary":
        print(json.dumps(registry.summary(), indent=2))
    elif args.action == "ingest":
        for path in args.files:
            print(f"{Path(path).name}: {ingest_file(registry, Path(path))}")
    else:
        write_export(registry.rows(since=_since(args.since), history=args.history), args.format,
                     Path(args.out) if args.out else None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmr-node", description=__doc__)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="text", choices=logs.FORMATS,
                        help="json: one JSON object per line, for journald/Docker log collectors")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the node in the foreground")
    p.add_argument("--config", required=True)
    p.set_defaults(func=_serve)
    p = sub.add_parser("process", help="run routing and modules on a folder of DICOM files, offline")
    p.add_argument("input_dir")
    p.add_argument("--config")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_process)
    p = sub.add_parser("demo", help="synthetic study -> node -> local PACS, end to end")
    p.add_argument("--workdir", default="demo-output")
    p.add_argument("--keep-running", action="store_true", help="leave the node and the PACS running")
    p.set_defaults(func=_demo)
    p = sub.add_parser("status", help="series received, jobs, outbox per destination")
    p.add_argument("--config", required=True)
    p.set_defaults(func=_status)
    p = sub.add_parser("retry", help="send dead letters again")
    p.add_argument("--config", required=True)
    p.add_argument("--destination")
    p.set_defaults(func=_retry)
    p = sub.add_parser("inputs", help="per-study inputs (hematocrit, injection time, ...)")
    p.add_argument("action", choices=["set", "show"])
    p.add_argument("study_uid")
    p.add_argument("values", nargs="*", help="key=value")
    p.add_argument("--config", required=True)
    p.set_defaults(func=_inputs)
    p = sub.add_parser("backfill", help="process an archive's studies of a period: find, retrieve, route, send")
    p.add_argument("--config", required=True)
    p.add_argument("--from", dest="source", required=True, help="a [[sources]] name")
    p.add_argument("--since", required=True, help="study date YYYY-MM-DD, inclusive")
    p.add_argument("--until", help="study date YYYY-MM-DD, inclusive (default: no end)")
    p.add_argument("--series-description", help="only series whose Series Description matches (regex, search)")
    p.add_argument("--dry-run", action="store_true", help="list what would be processed, and why not; retrieve and process nothing")
    p.add_argument("--in-flight", type=int, help="studies in the node at once (default: twice the job capacity)")
    p.set_defaults(func=_backfill)
    p = sub.add_parser("registry", help="the CMR registry: export, summary, ingest SR files")
    p.add_argument("action", choices=["export", "summary", "ingest"])
    p.add_argument("files", nargs="*", help="SR files (ingest)")
    p.add_argument("--config", required=True)
    p.add_argument("--format", choices=["csv", "json", "parquet"], default="csv",
                   help="parquet (for pandas, DuckDB, R arrow) needs --out")
    p.add_argument("--since", help="study date YYYY-MM-DD, inclusive")
    p.add_argument("--history", action="store_true", help="also rows of reports a revision replaced")
    p.add_argument("--out", help="file to write (default: standard output)")
    p.set_defaults(func=_registry)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"cmr-node: configuration error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"cmr-node: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
