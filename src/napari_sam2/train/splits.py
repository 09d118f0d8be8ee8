"""Which data may train a shipped model, and which part of it is held out for evaluation.

The openly licensed stacks in ``shared/data`` (see ``shared/data/README.md``) are split along their frame axis: the
first part may train, the rest is held out and only evaluated. The Cell Tracking Challenge sets (GOWT1, PSC) are
evaluation only: their conditions of use forbid training a shipped model on them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    """A stack's training frames ``[0, train_end)`` and held-out frames ``[train_end, end)`` along ``axis``."""

    name: str
    axis: str
    train_end: int
    licence: str


OPEN_SPLITS: dict[str, Split] = {
    # 48 frames, automatic Voronoi-Otsu labels used as pseudo labels (CC BY 4.0)
    "cancer_cell_migration": Split("cancer_cell_migration", "t", 32, "CC BY 4.0"),
    # 10 frames, hand-drawn per-frame labels (CC BY 4.0)
    "c2c12": Split("c2c12", "t", 6, "CC BY 4.0"),
    # 51 z-slices of the 8-cell volume train; the whole 16-cell volume is held out (MIT / CC BY 3.0)
    "qcanet_embryo_8cell": Split("qcanet_embryo_8cell", "z", 51, "MIT / CC BY 3.0"),
    "qcanet_embryo_16cell": Split("qcanet_embryo_16cell", "z", 0, "MIT / CC BY 3.0"),
}

EVALUATION_ONLY: tuple[str, ...] = ("ctc_gowt1_01", "ctc_psc_02")
