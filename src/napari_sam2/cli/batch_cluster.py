"""The Dask cluster of a ``batch`` run: local worker processes (one per GPU, each pinned to it, or N on the CPU), SLURM
jobs from a config file (``dask_jobqueue.SLURMCluster``, adapting to the stacks left), or a running scheduler.

Every worker runs one stack at a time (one thread); the stack's ``segment`` run gets the worker's share of the
CPU cores as its torch threads (``OMP_NUM_THREADS``). ``distributed`` and ``dask_jobqueue`` are imported here
only, when a batch starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from napari_sam2.cli.errors import CliError, UsageError

INSTALL_HINT = "pip install 'napari-sam2[cluster]'"
# Keys of the SLURM config file: dask_jobqueue.SLURMCluster's own, and ours (gpus, modules, max_jobs).
SLURM_KEYS = {
    "queue", "account", "cores", "memory", "walltime", "gpus", "modules", "job_script_prologue",
    "job_extra_directives", "job_directives_skip", "local_directory", "log_directory", "python", "interface",
    "job_name", "worker_extra_args", "death_timeout", "shebang", "max_jobs", "scheduler_options",
}


def import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise CliError(f"napari-sam2 batch needs Dask's distributed: {INSTALL_HINT}") from None
    return distributed


def visible_gpus() -> list[str]:
    """The GPUs this machine shows, without importing torch: ``CUDA_VISIBLE_DEVICES`` if set, else
    ``nvidia-smi``'s list, else none."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


def worker_envs(workers: int | None, gpus: list[str], gpus_per_worker: int, cpus: int) -> list[dict[str, str]]:
    """The environment of each local worker: its GPUs (``CUDA_VISIBLE_DEVICES``; with more workers than GPUs,
    workers share them in turn) and its torch threads (the CPU cores shared out)."""
    if workers is None:
        workers = max(1, len(gpus) // gpus_per_worker) if gpus else 1
    threads = str(max(1, cpus // workers))
    envs = []
    for i in range(workers):
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[(i * gpus_per_worker + j) % len(gpus)]
                                                   for j in range(gpus_per_worker))
        envs.append(env)
    return envs


def local_cluster(envs: list[dict[str, str]], extra_env: dict[str, str] | None = None) -> Any:
    """A Dask cluster of ``len(envs)`` worker processes on this machine (one thread each), worker i with
    ``envs[i]`` (and ``extra_env``) in its environment; a worker that dies is started again by its nanny."""
    distributed = import_distributed()
    from distributed.deploy.spec import SpecCluster

    workers = {
        f"napari-sam2-{i}": {"cls": distributed.Nanny,
                             "options": {"nthreads": 1, "env": {**env, **(extra_env or {})}, "memory_limit": 0,
                                         "silence_logs": logging.ERROR}}
        for i, env in enumerate(envs)
    }
    scheduler = {"cls": distributed.Scheduler, "options": {"dashboard": False, "dashboard_address": None}}
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.ERROR, name="napari-sam2")


def read_config(path: Path) -> dict[str, Any]:
    """A SLURM config file: YAML (``.yaml``/``.yml``) or TOML; its settings may sit under a ``slurm`` key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cluster config {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            document = yaml.safe_load(text)
        else:
            document = tomllib.loads(text)
    except Exception as exc:  # yaml.YAMLError, tomllib.TOMLDecodeError
        raise CliError(f"cluster config {path}: cannot be read ({str(exc).splitlines()[0]})") from None
    if isinstance(document, dict) and isinstance(document.get("slurm"), dict):
        document = document["slurm"]
    if not isinstance(document, dict):
        raise CliError(f"cluster config {path}: expected settings (key: value), e.g. queue: gpu")
    unknown = sorted(set(document) - SLURM_KEYS)
    if unknown:
        raise CliError(f"cluster config {path}: unknown setting(s) {unknown}; known: {sorted(SLURM_KEYS)}")
    return document


def _as_list(value: Any, key: str, path: Path) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise CliError(f"cluster config {path}: {key} must be text or a list of texts")


def slurm_kwargs(config: dict[str, Any], path: Path, gpus_per_worker: int) -> dict[str, Any]:
    """``dask_jobqueue.SLURMCluster`` arguments from the config: one worker per job, one stack at a time, the
    job's ``cores`` as its torch threads; ``gpus`` (default ``--gpus-per-worker``) as ``--gres=gpu:N``;
    ``modules`` loaded before the worker starts."""
    settings = {k: v for k, v in config.items() if k not in ("gpus", "modules", "max_jobs", "cores")}
    cores = config.get("cores", 4)
    gpus = config.get("gpus", gpus_per_worker)
    if not isinstance(cores, int) or cores < 1 or not isinstance(gpus, int) or gpus < 0:
        raise CliError(f"cluster config {path}: cores must be a whole number ≥ 1 and gpus ≥ 0")
    directives = _as_list(config.get("job_extra_directives"), "job_extra_directives", path)
    if gpus:
        directives.append(f"--gres=gpu:{gpus}")
    prologue = [f"module load {m}" for m in _as_list(config.get("modules"), "modules", path)]
    prologue += _as_list(config.get("job_script_prologue"), "job_script_prologue", path)
    prologue += ["export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}", "export MKL_NUM_THREADS=$OMP_NUM_THREADS"]
    settings.update(cores=1, processes=1, job_cpu=cores, job_extra_directives=directives,
                    job_script_prologue=prologue)
    settings.setdefault("memory", "16GB")
    settings.setdefault("walltime", "04:00:00")
    settings.setdefault("job_name", "napari-sam2")
    return settings


def slurm_cluster(path: Path, gpus_per_worker: int, stacks: int, max_jobs: int | None = None) -> Any:
    """A ``SLURMCluster`` from the config file at ``path``, adapting between 0 and ``max_jobs`` jobs (default: the
    config's ``max_jobs``, else one per stack)."""
    config = read_config(path)
    kwargs = slurm_kwargs(config, path, gpus_per_worker)
    import_distributed()
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise CliError(f"--cluster slurm needs dask-jobqueue: {INSTALL_HINT}") from None
    try:
        cluster = SLURMCluster(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CliError(f"cluster config {path}: {exc}") from None
    cluster.adapt(minimum=0, maximum=max(1, min(stacks, max_jobs or config.get("max_jobs") or stacks)))
    return cluster


def open_client(kind: str, *, workers: int | None, gpus_per_worker: int, device: str, config: str | None,
                stacks: int, extra_env: dict[str, str] | None = None) -> tuple[Any, Any, str]:
    """(client, cluster this run started or None, a line saying what it is)."""
    distributed = import_distributed()
    if kind == "local":
        gpus = [] if device in ("cpu", "mps") else visible_gpus()
        envs = worker_envs(workers, gpus, gpus_per_worker, os.cpu_count() or 1)
        cluster = local_cluster(envs, extra_env)
        where = ", ".join(f"GPU {e['CUDA_VISIBLE_DEVICES']}" for e in envs) if gpus else \
            f"CPU, {envs[0]['OMP_NUM_THREADS']} thread(s) each"
        return distributed.Client(cluster), cluster, f"{len(envs)} local worker(s) ({where})"
    if kind == "slurm":
        if config is None:
            raise UsageError("--cluster slurm needs --cluster-config FILE (queue, account, memory, walltime, gpus…)")
        cluster = slurm_cluster(Path(config), gpus_per_worker, stacks, workers)
        return distributed.Client(cluster), cluster, "SLURM jobs (adaptive; they start as the queue allows)"
    if "://" not in kind:
        raise UsageError(f"--cluster takes local, slurm or a scheduler address like tcp://host:8786, got {kind!r}")
    try:
        client = distributed.Client(kind, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise CliError(f"cannot reach the Dask scheduler at {kind}: {exc}") from None
    return client, None, f"the Dask scheduler at {kind}"
