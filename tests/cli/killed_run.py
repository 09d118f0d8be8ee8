"""Child process of the fault tests: ``napari-sam2`` that kills itself with SIGKILL right after a chosen durable step.

Usage: ``python -m tests.cli.killed_run KIND -- ARGS…`` (ARGS as for ``napari-sam2``). Environment:
``NAPARI_SAM2_TEST_SKIP``, a JSON list of step names not to kill at (default none); ``NAPARI_SAM2_TEST_AT``, a text
that the name of the step to kill at must contain (default: any step).

KIND says which steps count:

* ``resume`` — the run's resume points: a run record saved (``RunRecord.save``: the commit a re-run continues from)
  and a resume state written (``RunRecord.write_blob``: the array is there, the record does not name it yet);
* ``file`` — every file written into the label store (``atomic_write_bytes``): label store creation, chunks, records.

The process dies right after the first counted step that is not skipped, after printing
``killed after <name>`` on stderr; the name describes the point (the record's progress for ``resume`` steps, the
file's path inside the store for ``file`` steps), so that a parent can visit every point once, run after run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

VOLATILE = ("save_seconds", "state_bytes", "saves", "state", "seed", "device", "command", "stack_path", "inputs")


def _progress(data: dict) -> str:
    """The record's progress without what differs between equivalent runs (timings, checksums, paths)."""
    kept = {k: v for k, v in data.items() if k not in VOLATILE}
    kept.update(has_state=data.get("state") is not None, has_seed=data.get("seed") is not None)
    return json.dumps(kept, sort_keys=True)


def _die_after(name: str, skip: set[str]) -> None:
    if name in skip or os.environ.get("NAPARI_SAM2_TEST_AT", "") not in name:
        return
    print(f"killed after {name}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _hook_resume_points(skip: set[str]) -> None:
    from napari_sam2.cli.run_record import RunRecord

    save, write_blob = RunRecord.save, RunRecord.write_blob

    def saved(self: RunRecord) -> None:
        save(self)
        _die_after(f"commit {_progress(self.data)}", skip)

    def blob_written(self: RunRecord, prefix: str, data: bytes) -> dict:
        ref = write_blob(self, prefix, data)
        _die_after(f"{prefix}array {_progress(self.data)}", skip)
        return ref

    RunRecord.save, RunRecord.write_blob = saved, blob_written


def _hook_files(root: Path, skip: set[str]) -> None:
    from napari_sam2.io import atomic_store

    write = atomic_store.atomic_write_bytes

    def written(path, data, *, exclusive: bool = False) -> None:
        write(path, data, exclusive=exclusive)
        path = Path(path).resolve()
        if path.is_relative_to(root):
            _die_after(f"file {path.relative_to(root)}", skip)

    atomic_store.atomic_write_bytes = written


def main() -> int:
    kind, separator, *args = sys.argv[1:]
    assert separator == "--", "usage: python -m tests.cli.killed_run KIND -- ARGS"
    skip = set(json.loads(os.environ.get("NAPARI_SAM2_TEST_SKIP", "[]")))
    if kind == "resume":
        _hook_resume_points(skip)
    else:
        _hook_files(Path(args[args.index("--out") + 1]).resolve(), skip)
    from napari_sam2.cli.main import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
