"""Reading Meta's SAM 2 checkpoint files (``torch.load(path)["model"]``) with errors a user can act on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

MAX_KEYS_SHOWN = 5


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used for the requested model."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``"model"`` state dict of a SAM 2 checkpoint file, loaded on the CPU without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds: pickle, zip, EOF, unsupported global
        raise CheckpointError(
            f"{path} is not a SAM 2 checkpoint: torch.load could not read it ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'})"
        ) from err
    if not isinstance(payload, Mapping) or "model" not in payload or not isinstance(payload["model"], Mapping):
        found = sorted(payload)[:MAX_KEYS_SHOWN] if isinstance(payload, Mapping) else type(payload).__name__
        raise CheckpointError(f"{path} is not a SAM 2 checkpoint: expected a dict with a 'model' state dict, "
                              f"found {found}")
    state = dict(payload["model"])
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path} is not a SAM 2 checkpoint: entries {bad[:MAX_KEYS_SHOWN]} are not tensors")
    return state


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between two state dicts' keys and shapes (empty if they match)."""
    problems = [f"missing {k}" for k in expected if k not in found]
    problems += [f"unexpected {k}" for k in found if k not in expected]
    problems += [
        f"{k}: shape {tuple(found[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and tuple(found[k].shape) != tuple(v.shape)
    ]
    return problems


def load_checkpoint_into(model: nn.Module, path: str | Path, model_name: str, *, guess=None) -> None:
    """Load a checkpoint file strictly into ``model`` (a ``SAM2Model`` named ``model_name``).

    ``guess(state) -> str | None`` may name the model the file was really made for, to say so in the error.
    """
    state = read_state_dict(path)
    problems = state_dict_mismatch(model.state_dict(), state)
    if problems:
        hint = guess(state) if guess is not None else None
        also = f"; it looks like a {hint} checkpoint" if hint and hint != model_name else ""
        shown = "; ".join(problems[:MAX_KEYS_SHOWN])
        more = f" (and {len(problems) - MAX_KEYS_SHOWN} more)" if len(problems) > MAX_KEYS_SHOWN else ""
        raise CheckpointError(
            f"{path} does not fit model {model_name}{also}: {len(problems)} mismatching keys: {shown}{more}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path} could not be loaded into {model_name}: {err}") from err
