"""Job scripts the widget writes for work better run elsewhere (training, many stacks): bash with a SLURM header."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def write_slurm_script(path: Path, *, job_name: str, log: Path, command: str, comments: Sequence[str],
                       cpus: int, time: str, memory: str = "32G", gpus: int = 1) -> Path:
    """Write an executable bash script at ``path`` that SLURM can take (``sbatch``) and bash can run as is:
    the header asks for ``gpus`` GPUs, ``cpus`` cores, ``memory`` and ``time``; ``comments`` explain it."""
    text = "\n".join([
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --gres=gpu:{gpus}",
        f"#SBATCH --cpus-per-task={cpus}",
        f"#SBATCH --mem={memory}",
        f"#SBATCH --time={time}",
        f"#SBATCH --output={log}",
        *(f"# {line}" for line in comments),
        "set -euo pipefail",
        command,
        "",
    ])
    path.write_text(text)
    path.chmod(0o755)
    return path
