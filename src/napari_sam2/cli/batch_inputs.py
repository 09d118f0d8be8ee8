"""The stacks of a ``batch`` run: INPUTs (files, folders, globs, manifests) → one :class:`StackSpec` each, with its
prompt file and the name of its label store. No Dask, no torch: problems are found before any cluster starts.
"""

from __future__ import annotations

import csv
import glob
import json
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from napari_sam2.cli.errors import CliError

STACK_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr")
MANIFEST_SUFFIXES = (".csv", ".json")
MANIFEST_COLUMNS = ("stack", "prompts", "axis", "channel", "position")
PROMPT_SUFFIXES = (".json", ".csv")


@dataclass(frozen=True)
class StackSpec:
    """One stack to segment: its path, prompt file (None: from the batch's --prompts/--prompts-dir, or --auto) and
    per-stack ``segment`` options (None: the batch's own); ``name`` names its label store ``<name>.zarr``."""

    stack: Path
    prompts: Path | None = None
    axis: str | None = None
    channel: str | None = None
    position: str | None = None
    name: str = ""


def stack_stem(path: Path) -> str:
    """``movie.ome.tif`` → ``movie``; ``plate/A01.zarr`` → ``A01``."""
    name = path.name
    for suffix in STACK_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return path.stem or name


def _is_zarr(path: Path) -> bool:
    return any((path / marker).is_file() for marker in ("zarr.json", ".zgroup", ".zarray"))


def _is_stack_entry(path: Path) -> bool:
    lower = path.name.lower()
    if path.is_dir():
        return lower.endswith(".zarr") or _is_zarr(path)
    return lower.endswith((".tif", ".tiff"))


def _folder_stacks(folder: Path) -> list[Path]:
    """A zarr folder is one stack; any other folder holds stacks (its TIFF files and zarr folders)."""
    if _is_zarr(folder):
        return [folder]
    found = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and _is_stack_entry(p))
    if not found:
        raise CliError(f"{folder}: no stacks (.tif, .tiff, .zarr) in this folder")
    return found


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _manifest_rows(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as handle:
                rows: Any = list(csv.DictReader(handle))
        else:
            rows = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(rows, dict):
                rows = rows.get("stacks")
    except OSError as exc:
        raise CliError(f"manifest {path}: {exc.strerror or exc}") from None
    except (ValueError, csv.Error) as exc:
        raise CliError(f"manifest {path}: not valid {path.suffix[1:].upper()} ({exc})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise CliError(f"manifest {path}: expected a list of rows (JSON: a list, or {{\"stacks\": [...]}})")
    return rows


def read_manifest(path: Path) -> list[StackSpec]:
    """Rows with columns ``stack`` (required), ``prompts``, ``axis``, ``channel``, ``position`` (e.g. ``t=3``);
    paths relative to the manifest's folder."""
    specs = []
    for i, row in enumerate(_manifest_rows(path), start=1):
        unknown = sorted(set(row) - set(MANIFEST_COLUMNS) - {None})
        if unknown:
            raise CliError(f"manifest {path}: unknown column(s) {unknown}; the columns are {list(MANIFEST_COLUMNS)}")
        stack = _cell(row.get("stack"))
        if stack is None:
            raise CliError(f"manifest {path}: row {i} has no stack")
        prompts = _cell(row.get("prompts"))
        position = row.get("position")
        if isinstance(position, dict):  # JSON: {"t": 3}
            position = ",".join(f"{k}={v}" for k, v in position.items())
        specs.append(StackSpec(path.parent / stack, path.parent / prompts if prompts else None,
                               _cell(row.get("axis")), _cell(row.get("channel")), _cell(position)))
    if not specs:
        raise CliError(f"manifest {path}: no rows")
    return specs


def expand_inputs(inputs: list[str]) -> list[StackSpec]:
    """Every stack named by INPUTs, in order, without duplicates (same path and same options)."""
    specs: list[StackSpec] = []
    for text in inputs:
        path = Path(text)
        if any(c in text for c in "*?[") and not path.exists():
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise CliError(f"{text}: no file matches this pattern")
            specs += [StackSpec(Path(m)) for m in matches]
        elif not path.exists():
            raise CliError(f"{path} does not exist")
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            specs += read_manifest(path)
        elif path.is_dir():
            specs += [StackSpec(p) for p in _folder_stacks(path)]
        else:
            specs.append(StackSpec(path))
    unique = list(dict.fromkeys(replace(s, stack=s.stack.resolve()) for s in specs))
    return name_stores(unique)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def name_stores(specs: list[StackSpec]) -> list[StackSpec]:
    """Give each stack a label-store name: its stem (``-t3`` added for a --position), then, where names collide, the
    folder name in front, then ``-2``, ``-3``… in input order. The same inputs always give the same names, so a
    batch run again finds its stores."""
    names = []
    for s in specs:
        name = _slug(stack_stem(s.stack))
        if s.position:
            name += "-" + _slug(s.position.replace("=", "").replace(",", "-"))
        names.append(name)
    counts = Counter(names)
    names = [f"{_slug(s.stack.parent.name)}-{n}" if counts[n] > 1 else n for s, n in zip(specs, names, strict=True)]
    seen: Counter[str] = Counter()
    final = []
    for n in names:
        seen[n] += 1
        final.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return [replace(s, name=n) for s, n in zip(specs, final, strict=True)]


def prompts_for(spec: StackSpec, prompts: str | None, prompts_dir: str | None) -> Path | None:
    """The prompt file of ``spec``: the manifest's, else ``prompts``, else ``prompts_dir/<stack stem>.json|.csv``
    (None if there is none there: that stack fails with a one-line error, the others go on)."""
    if spec.prompts is not None:
        return spec.prompts
    if prompts is not None:
        return Path(prompts)
    if prompts_dir is None:
        return None
    for suffix in PROMPT_SUFFIXES:
        candidate = Path(prompts_dir) / f"{stack_stem(spec.stack)}{suffix}"
        if candidate.is_file():
            return candidate
    return None
