"""The widget's "Lineage" box: show the lineage as a Tracks layer, and override what the division rule decided —
mark a division (parent → two daughters), merge another track into the current object, split the current object's
track at the frame on screen, or end it there; export the labels with their lineage (Cell Tracking Challenge result,
GEFF graph). The widget carries the actions out (see ``lineage_edits`` and ``lineage_actions``)."""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QGridLayout, QGroupBox, QLabel, QPushButton, QSpinBox

MAX_ID = 2**31 - 1


def _id_spin(tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(0, MAX_ID)
    spin.setSpecialValueText("—")
    spin.setToolTip(tip)
    return spin


class LineagePanel(QGroupBox):
    """Signals: ``show_requested()``, ``division_requested(parent, daughter, daughter)``,
    ``merge_requested(other)`` (into the current object), ``split_requested()``, ``end_requested()`` (the current
    object, at the frame on screen), ``export_requested(kind)`` ("ctc" or "geff")."""

    show_requested = Signal()
    division_requested = Signal(int, int, int)
    merge_requested = Signal(int)
    split_requested = Signal()
    end_requested = Signal()
    export_requested = Signal(str)

    def __init__(self) -> None:
        super().__init__("Lineage")
        self.show_button = QPushButton("Show lineage")
        self.show_button.setToolTip("Show the tracks and divisions as a napari Tracks layer (refreshed after Track "
                                    "all and after every change below)")
        self.parent_spin = _id_spin("The dividing object (the mother cell)")
        self.daughter_spins = (_id_spin("First daughter"), _id_spin("Second daughter"))
        self.division_button = QPushButton("Mark division")
        self.division_button.setToolTip("Record that the parent divided into the two daughters (their parent link); "
                                        "end or split the parent first if its track goes on as a daughter")
        self.merge_spin = _id_spin("The object whose track continues the current object's")
        self.merge_button = QPushButton("Merge into current")
        self.merge_button.setToolTip("The chosen object is the same cell as the current one: its pixels on every "
                                     "frame become the current object's, and it is deleted")
        self.split_button = QPushButton("Split current here")
        self.split_button.setToolTip("From the frame on screen on, the current object is another cell: a new "
                                     "object takes its pixels there")
        self.end_button = QPushButton("End current here")
        self.end_button.setToolTip("The current object's track ends before the frame on screen: its pixels from "
                                   "there on are erased")
        self.ctc_button = QPushButton("Export CTC…")
        self.ctc_button.setToolTip("Write a Cell Tracking Challenge result folder: mask000.tif…, res_track.txt with "
                                   "each track's parent, statuses.json with the review statuses")
        self.geff_button = QPushButton("Export GEFF…")
        self.geff_button.setToolTip("Write the tracks as a GEFF graph (nodes: centroid, area, track, status; edges "
                                    "along each track and from parents to daughters)")
        grid = QGridLayout(self)
        grid.addWidget(self.show_button, 0, 0, 1, 4)
        grid.addWidget(QLabel("Parent"), 1, 0)
        grid.addWidget(self.parent_spin, 1, 1)
        grid.addWidget(QLabel("→ daughters"), 1, 2)
        grid.addWidget(self.daughter_spins[0], 2, 1)
        grid.addWidget(self.daughter_spins[1], 2, 2)
        grid.addWidget(self.division_button, 2, 3)
        grid.addWidget(QLabel("Merge"), 3, 0)
        grid.addWidget(self.merge_spin, 3, 1)
        grid.addWidget(self.merge_button, 3, 2, 1, 2)
        grid.addWidget(self.split_button, 4, 0, 1, 2)
        grid.addWidget(self.end_button, 4, 2, 1, 2)
        grid.addWidget(self.ctc_button, 5, 0, 1, 2)
        grid.addWidget(self.geff_button, 5, 2, 1, 2)
        self.show_button.clicked.connect(self.show_requested)
        self.division_button.clicked.connect(self._division)
        self.merge_button.clicked.connect(lambda: self.merge_requested.emit(self.merge_spin.value()))
        self.split_button.clicked.connect(self.split_requested)
        self.end_button.clicked.connect(self.end_requested)
        self.ctc_button.clicked.connect(lambda: self.export_requested.emit("ctc"))
        self.geff_button.clicked.connect(lambda: self.export_requested.emit("geff"))

    def _division(self) -> None:
        a, b = (s.value() for s in self.daughter_spins)
        self.division_requested.emit(self.parent_spin.value(), a, b)
