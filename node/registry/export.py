"""`cmr-node registry export`: the registry's flat rows (node/registry/store.py EXPORT_COLUMNS) as CSV, JSON or
Apache Parquet, the columnar file pandas, DuckDB and R arrow read with the column types kept (a value is a
double, an empty interval a null, not the text "")."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from node.registry.store import EXPORT_COLUMNS

FORMATS = ("csv", "json", "parquet")
NUMERIC = {"value": "float64", "ci95_low": "float64", "ci95_high": "float64", "current": "int8"}


def write_export(rows: list[dict], fmt: str, out: Path | None) -> None:
    """rows to out (standard output when None; Parquet needs a file)."""
    if fmt == "parquet":
        if out is None:
            raise ValueError("--format parquet writes a file: give --out FILE")
        _parquet(rows, out)
        return
    stream = open(out, "w", newline="") if out else sys.stdout
    try:
        if fmt == "json":
            json.dump(rows, stream, indent=2)
            stream.write("\n")
        else:
            writer = csv.DictWriter(stream, fieldnames=EXPORT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    finally:
        if out:
            stream.close()


def _parquet(rows: list[dict], out: Path) -> None:
    import pyarrow as pa            # here: only an export to Parquet needs it
    import pyarrow.parquet as pq
    schema = pa.schema([(name, getattr(pa, NUMERIC.get(name, "string"))()) for name in EXPORT_COLUMNS])
    table = pa.Table.from_pydict({name: [row[name] for row in rows] for name in EXPORT_COLUMNS}, schema=schema)
    pq.write_table(table, out)
