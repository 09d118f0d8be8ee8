"""The stack and the prompts of a ``segment`` run: option parsing, opening, and checking that they fit together.

No torch here: every problem with the input files is found before the model is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_sam2.cli.errors import CliError, UsageError
from napari_sam2.io import FrameSource
from napari_sam2.io.axes import CHANNEL, SPATIAL
from napari_sam2.io.prompt_file import PromptSet, load_prompts
from napari_sam2.io.stack_formats import open_raw

_API_TO_OPTIONS = [
    (re.compile(r"pass channel=<index> or channel='rgb'"), "pass --channel N or --channel rgb"),
    (re.compile(r"fix it with position=\{'([^']+)': index\}"), r"fix it with --position \1=N"),
    (re.compile(r"leave channel=None"), "leave out --channel"),
    (re.compile(r"pass axes=\.\.\. to name them"), "name them with --axes, e.g. --axes tzyx"),
]


def option_wording(message: str) -> str:
    """An I/O-layer message with its Python keyword hints (``channel=…``) said as command-line options."""
    for pattern, replacement in _API_TO_OPTIONS:
        message = pattern.sub(replacement, message)
    return message


def parse_axis(text: str | None) -> str | int | None:
    """``--axis``: a name (``t``, ``z``, …) or an index."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        raise UsageError("--axis needs an axis name (t, z, …) or index")
    return int(text) if text.lstrip("-").isdigit() else text.lower()


def parse_channel(text: str | None) -> int | str | None:
    """``--channel``: an index or ``rgb``."""
    if text is None:
        return None
    text = text.strip().lower()
    if text == "rgb":
        return "rgb"
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--channel must be a channel index or 'rgb', got {text!r}") from None


def parse_position(text: str | None) -> dict[str, int]:
    """``--position z=12,t=3`` → ``{"z": 12, "t": 3}``."""
    if not text:
        return {}
    position: dict[str, int] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep or not name or not value.lstrip("-").isdigit():
            raise UsageError(f"--position takes NAME=INDEX pairs separated by commas (e.g. t=3,z=12), got {text!r}")
        if name in position:
            raise UsageError(f"--position names axis {name!r} twice")
        position[name] = int(value)
    return position


@dataclass
class StackAndPrompts:
    """The opened stack (frames along the run's axis) and the prompts, checked against each other."""

    source: FrameSource
    prompts: PromptSet
    stack_path: Path

    @property
    def frame_axis(self) -> str:
        return self.source.frame_axis

    def identity(self) -> dict[str, Any]:
        """What makes a run's input the same on a re-run (the stack by name, shape and dtype, not by folder)."""
        return {
            "stack": {"name": self.stack_path.name, "shape": list(self.source.full_shape),
                      "dtype": str(self.source.dtype)},
            "axis": self.source.frame_axis,
            "position": self.source.position,
            "channel": self.source.channel,
            "prompts": self.prompts.fingerprint(),
        }


def default_axis(names: tuple[str, ...]) -> str:
    """The frame axis when none is given: ``t`` if the stack has one, else its only other non-spatial axis."""
    candidates = [n for n in names if n not in (*SPATIAL, CHANNEL)]
    if "t" in candidates or len(candidates) != 1:
        return "t"  # several candidates and no t: FrameSource's error lists them
    return candidates[0]


def _choose(option: Any, from_file: Any, name: str, prompts: PromptSet) -> Any:
    """The command line's value, else the prompt file's; both given and different is an error."""
    if option is None:
        return from_file
    if from_file is not None and option != from_file:
        raise CliError(
            f"{prompts.source} was made with {name} {from_file!r} but the command says {option!r}: frames of the "
            f"prompts would not be the frames segmented (leave out the option, or fix the prompt file)"
        )
    return option


def parse_axes(text: str | None) -> str | list[str] | None:
    """``--axes tzyx`` or ``--axes t,z,y,x``: names for every axis of the stack."""
    if text is None:
        return None
    text = text.strip().lower()
    return [a.strip() for a in text.split(",")] if "," in text else text


def open_stack_and_prompts(stack: str, prompts_path: str | None, axis: str | None, channel: str | None,
                           position: str | None, axes: str | None = None) -> StackAndPrompts:
    """Open ``stack`` lazily along the chosen axis (default: ``t``, or a volume's ``z``) and read the prompts
    (options as given on the command line; no prompt file: an empty set, for ``--auto``)."""
    axis_opt, channel_opt, position_opt = parse_axis(axis), parse_channel(channel), parse_position(position)
    if "c" in position_opt:  # `--position c=1` is a natural way to pick a channel
        if channel_opt is not None:
            raise UsageError("give the channel once: --channel N or --position c=N")
        channel_opt = position_opt.pop("c")
    path = Path(stack)
    if not path.exists():
        raise CliError(f"stack {path} does not exist")
    is_json = prompts_path is not None and Path(prompts_path).suffix.lower() == ".json"
    prompts = load_prompts(prompts_path) if is_json else None
    if prompts is not None:
        axis_opt = _choose(axis_opt, prompts.axis, "--axis", prompts)
        channel_opt = _choose(channel_opt, prompts.channel, "--channel", prompts)
        if prompts.position:
            for name, value in prompts.position.items():
                position_opt[name] = _choose(position_opt.get(name), value, f"--position {name}=", prompts)
    raw = open_raw(path, axes=parse_axes(axes))
    try:
        source = FrameSource(raw, axis=default_axis(raw.axes.names) if axis_opt is None else axis_opt,
                             channel=channel_opt, position=position_opt or None)
    except BaseException:
        raw.close()
        raise
    try:
        if prompts_path is None:
            return StackAndPrompts(source, PromptSet((), source="no prompt file"), path)
        if prompts is None:
            prompts = load_prompts(prompts_path, axes=source.label_axes, frame_axis=source.frame_axis,
                                   position=source.position)
        height, width = source.shape2d
        prompts.check_fits(len(source), height, width, axis_name=source.frame_axis)
    except BaseException:
        source.close()
        raise
    return StackAndPrompts(source, prompts, path)
