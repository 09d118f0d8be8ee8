"""The summary of a ``batch`` run: ``batch_summary.csv`` and ``batch_summary.json`` in OUT_DIR, and a table for the
terminal."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from napari_sam2.cli.batch_task import StackResult
from napari_sam2.io.atomic_store import atomic_write_bytes

SUMMARY_NAME = "batch_summary"
COLUMNS = ("stack", "labels", "frames", "objects", "seconds", "status", "error", "resumed_from")


def write_summary(out_dir: Path, results: Sequence[StackResult], meta: dict) -> tuple[Path, Path]:
    """Write the rows (and, in the JSON, ``meta``: the command, cluster, total time); returns (csv, json) paths."""
    rows = [r.as_dict() for r in results]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in COLUMNS})
    csv_path, json_path = out_dir / f"{SUMMARY_NAME}.csv", out_dir / f"{SUMMARY_NAME}.json"
    atomic_write_bytes(csv_path, text.getvalue().encode("utf-8"))
    atomic_write_bytes(json_path, (json.dumps({**meta, "stacks": rows}, indent=1) + "\n").encode("utf-8"))
    return csv_path, json_path


def summary_table(results: Sequence[StackResult], width: int = 60) -> str:
    """A plain-text table: stack, frames, objects, seconds, status, error (shortened to ``width``)."""
    header = ("stack", "frames", "objects", "seconds", "status", "error")
    rows = [(Path(r.stack).name, "" if r.frames is None else str(r.frames), "" if r.objects is None else
             str(r.objects), f"{r.seconds:.1f}", r.status,
             r.error if len(r.error) <= width else r.error[: width - 1] + "…") for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)]
    return "\n".join(lines)
