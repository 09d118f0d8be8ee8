"""``napari-sam2 batch``: one ``segment`` run per stack, as Dask tasks on a local cluster, SLURM jobs or a running
scheduler; progress in the terminal, a summary in OUT_DIR, exit status 1 if any stack failed.

The stacks, their prompt files and store names are worked out first (``batch_inputs``, no Dask); each becomes a
:class:`~napari_sam2.cli.batch_task.StackJob` run by ``batch_task.run_stack`` on a worker. Workers report each
run's frames through Dask events; this process draws the progress and collects the results.
"""

from __future__ import annotations

import contextlib
import functools
import io
import sys
import threading
import time
import uuid
from argparse import Namespace
from pathlib import Path
from typing import Any

from napari_sam2.cli.batch_inputs import StackSpec, expand_inputs, prompts_for, stack_stem
from napari_sam2.cli.batch_summary import summary_table, write_summary
from napari_sam2.cli.batch_task import StackJob, StackResult, failed, run_stack
from napari_sam2.cli.errors import CliError, UsageError
from napari_sam2.cli.progress import Progress, format_duration

EXPORT_SUFFIXES = {"ome-zarr": ".ome.zarr", "tiff": ".tif", "ctc": "_ctc"}
POLL_SECONDS = 0.25


def say(args: Namespace, text: str) -> None:
    if not args.quiet:
        print(f"napari-sam2 batch: {text}", file=sys.stderr, flush=True)


def segment_options(args: Namespace, spec: StackSpec) -> list[str]:
    """The batch's ``segment`` options as arguments (the manifest row's axis, channel and position first)."""
    own = {"axis": spec.axis, "channel": spec.channel, "position": spec.position}
    argv: list[str] = []
    for dest, flag, is_switch in args.segment_options:
        value = own.get(dest) or getattr(args, dest)
        if is_switch:
            argv += [flag] if value else []
        elif value is not None:
            argv += [flag, str(value)]
    return argv


@functools.cache
def segment_has_auto() -> bool:
    """Whether this napari-sam2's ``segment`` takes ``--auto`` (its automatic mode)."""
    from napari_sam2.cli.main import build_parser

    probe = ["segment", "STACK", "--prompts", "PROMPTS.json", "--out", "LABELS", "--auto"]
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            _, unknown = build_parser().parse_known_args(probe)
        except SystemExit:  # it knows --auto, and refuses it together with --prompts
            return True
    return "--auto" not in unknown


def make_job(spec: StackSpec, args: Namespace, out_dir: Path) -> StackJob:
    """The ``segment`` command of one stack (its store ``OUT_DIR/<name>.zarr``, its export beside it)."""
    labels = (out_dir / f"{spec.name}.zarr").resolve()
    argv = ["segment", str(spec.stack)]
    error = None
    prompts = prompts_for(spec, args.prompts, args.prompts_dir)
    if prompts is not None:
        argv += ["--prompts", str(Path(prompts).resolve())]
    elif args.auto:
        argv.append("--auto")
        if not segment_has_auto():
            error = "segment has no automatic mode (--auto) in this napari-sam2 yet: give --prompts or --prompts-dir"
    else:
        stem = stack_stem(spec.stack)
        error = f"no prompt file {stem}.json or {stem}.csv in {args.prompts_dir}"
    argv += ["--out", str(labels), *segment_options(args, spec)]
    if args.export is not None:
        argv += ["--export-path", str((out_dir / f"{spec.name}{EXPORT_SUFFIXES[args.export]}").resolve())]
    return StackJob(spec.name, str(spec.stack), str(labels), tuple(argv), error)


def plan_jobs(args: Namespace) -> list[StackJob]:
    """Check the batch's own inputs (one line for a problem) and make every stack's job."""
    if args.device.startswith("cuda:"):
        raise UsageError("batch pins each worker to its own GPU(s): use --device cuda (or auto), not cuda:N")
    if args.prompts is not None and not Path(args.prompts).is_file():
        raise CliError(f"prompt file {args.prompts} does not exist")
    if args.prompts_dir is not None and not Path(args.prompts_dir).is_dir():
        raise CliError(f"--prompts-dir {args.prompts_dir} is not a folder")
    specs = expand_inputs(args.inputs)
    if not (args.prompts or args.prompts_dir or args.auto) and any(s.prompts is None for s in specs):
        raise UsageError("give --prompts FILE, --prompts-dir DIR or --auto (or a manifest with a prompts column "
                         "for every stack)")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"--out-dir {out_dir} is a file; it must be a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create --out-dir {out_dir}: {exc.strerror or exc}") from None
    return [make_job(spec, args, out_dir) for spec in specs]


class BatchProgress:
    """Frames done over every stack (from the workers' events) on one line, with stacks done and the time left.

    A stack's total is known once its run starts; until then it counts as the mean of the known ones. Frames a
    resumed run had done before count as done, not towards the speed."""

    def __init__(self, stacks: int, enabled: bool) -> None:
        self.stacks = stacks
        self.finished = self.failed = 0
        self.frames: dict[str, tuple[int, int]] = {}  # stack → (most frames done seen, total)
        self.bar = Progress(1, enabled=enabled, unit="frame")
        self.lock = threading.Lock()
        self.counted = 0

    def event(self, event: tuple[float, dict[str, Any]]) -> None:
        """A worker's report (in the client's thread)."""
        msg = event[1]
        with self.lock:
            best, _ = self.frames.get(msg["stack"], (msg["resumed"], msg["total"]))
            self.counted += max(0, msg["done"] - best)
            self.frames[msg["stack"]] = (max(best, msg["done"]), msg["total"])

    def stack_finished(self, ok: bool) -> None:
        with self.lock:
            self.finished += 1
            self.failed += not ok

    def draw(self) -> None:
        with self.lock:
            done = sum(d for d, _ in self.frames.values())
            known = [t for _, t in self.frames.values()]
            total = sum(known) + (self.stacks - len(known)) * (sum(known) / len(known) if known else 0)
            new, self.counted = self.counted, 0
            self.bar.label = (f"stacks {self.finished}/{self.stacks}" + (f" ({self.failed} failed)" if self.failed
                                                                          else "") + " · frames")
        self.bar.update(done, int(round(total)), new)

    def close(self) -> None:
        self.bar.close()


def collect(client: Any, jobs: list[StackJob], args: Namespace, progress: BatchProgress) -> list[StackResult]:
    """Submit every stack and gather its result as it comes, in input order; a stack whose task failed (its worker
    lost too often, or stopped more often than ``--retries``) gets a failed row with the reason."""
    topic = f"napari-sam2-batch-{uuid.uuid4().hex}"
    client.subscribe_topic(topic, progress.event)
    token = uuid.uuid4().hex[:8]
    futures = [client.submit(run_stack, job, topic, key=f"napari-sam2-{job.name}-{token}", retries=args.retries,
                             pure=False) for job in jobs]
    results: list[StackResult | None] = [None] * len(jobs)
    pending = set(range(len(jobs)))
    while pending:
        for i in sorted(pending):
            future, job = futures[i], jobs[i]
            if not future.done():
                continue
            pending.discard(i)
            if future.status == "finished":
                results[i] = future.result()
            else:
                exc = future.exception() if future.status == "error" else None
                reason = f"{type(exc).__name__}: {exc}" if exc is not None else f"task {future.status}"
                results[i] = failed(job, " ".join(reason.split()))
            ok = results[i].status == "done"
            progress.stack_finished(ok)
            if not ok:
                progress.bar.message(f"napari-sam2 batch: {job.stack}: {results[i].error}")
        progress.draw()
        if pending:
            time.sleep(POLL_SECONDS)
    client.unsubscribe_topic(topic)
    return [r for r in results if r is not None]


def run_batch(args: Namespace, extra_env: dict[str, str] | None = None) -> int:
    """The ``batch`` command; ``extra_env``: more environment for local workers (tests)."""
    from napari_sam2.cli.batch_cluster import open_client

    jobs = plan_jobs(args)
    out_dir = Path(args.out_dir)
    began = time.monotonic()
    client, cluster, where = open_client(args.cluster, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                                         device=args.device, config=args.cluster_config, stacks=len(jobs),
                                         extra_env=extra_env)
    say(args, f"{len(jobs)} stack(s) on {where}; label stores in {out_dir}")
    progress = BatchProgress(len(jobs), enabled=not args.quiet)
    try:
        results = collect(client, jobs, args, progress)
    finally:
        progress.close()
        client.close()
        if cluster is not None:
            cluster.close()
    seconds = time.monotonic() - began
    meta = {"command": ["napari-sam2", *sys.argv[1:]], "cluster": where, "seconds": round(seconds, 2)}
    csv_path, _ = write_summary(out_dir, results, meta)
    bad = [r for r in results if r.status != "done"]
    if not args.quiet:
        print(summary_table(results), file=sys.stderr)
    rate = len(results) / seconds * 3600 if seconds > 0 else 0.0
    say(args, f"{len(results) - len(bad)} done, {len(bad)} failed, in {format_duration(seconds)} "
              f"({rate:.0f} stacks/hour); summary in {csv_path}")
    print(out_dir)
    return 1 if bad else 0
