"""The widget's "Find and track" box: the expected object size (diameter, size range), how good a candidate mask
must be (predicted quality, stability; the engine's defaults unless set), re-detection every K frames, and the
Find all (Shift-F) and Track all (Shift-T) buttons."""

from __future__ import annotations

from qtpy.QtWidgets import QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QPushButton, QSpinBox

from napari_sam2._qt.auto_driver import AutoOptions

MAX_PIXELS = 100_000_000


def _spin(maximum: int, none_text: str, suffix: str, tip: str, value: int = 0) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(0, maximum)
    spin.setSpecialValueText(none_text)  # shown for 0
    spin.setSuffix(suffix)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _score_spin(tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(0.0, 1.0)
    spin.setSingleStep(0.05)
    spin.setDecimals(2)
    spin.setSpecialValueText("default")  # shown for 0: the engine's own threshold
    spin.setToolTip(tip)
    return spin


class FindTrackPanel(QGroupBox):
    """Settings and buttons; the widget connects the buttons and reads :meth:`options`."""

    def __init__(self) -> None:
        super().__init__("Find and track")
        self.diameter_spin = _spin(10000, "automatic", " px", "Expected object diameter in pixels of the frame: sets "
                                   "the spacing of the grid of point prompts (automatic: a default suited to cells)")
        self.min_area_spin = _spin(MAX_PIXELS, "default", " px²",
                                   "Smallest object area kept, in pixels (default: a sixth of a disc of the diameter)")
        self.max_area_spin = _spin(MAX_PIXELS, "default", " px²",
                                   "Largest object area kept, in pixels (default: four discs of the diameter)")
        self.quality_spin = _score_spin("Keep a candidate mask only if the model's predicted quality (IoU) is at "
                                        "least this (default: the engine's); lower it when too few objects are found")
        self.stability_spin = _score_spin("Keep a candidate mask only if it is at least this stable when its "
                                          "threshold moves (default: the engine's)")
        self.redetect_spin = _spin(10000, "never", " frames", "Track all looks for objects that no track covers "
                                   "every K frames (cells that enter, appear or are born) and tracks them too", 10)
        self.find_button = QPushButton("Find all (Shift-F)")
        self.find_button.setToolTip("Find every object on the frame on screen that no object covers yet (Shift-F); "
                                    "each becomes a new object with status “automatic”")
        self.track_button = QPushButton("Track all (Shift-T)")
        self.track_button.setToolTip("Track every object forward from the frame on screen (Shift-T), with "
                                     "re-detection every K frames and divisions; Shift-C cancels")
        size_row = QHBoxLayout()
        size_row.addWidget(self.min_area_spin)
        size_row.addWidget(self.max_area_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.find_button)
        buttons.addWidget(self.track_button)
        form = QFormLayout(self)
        form.addRow("Object diameter", self.diameter_spin)
        form.addRow("Area from / to", size_row)
        quality_row = QHBoxLayout()
        quality_row.addWidget(self.quality_spin)
        quality_row.addWidget(self.stability_spin)
        form.addRow("Quality / stability ≥", quality_row)
        form.addRow("Re-detect every", self.redetect_spin)
        form.addRow(buttons)

    def options(self) -> AutoOptions:
        """The settings as the engine's options (0: the default in every box)."""
        def value(spin: QSpinBox) -> int | None:
            return spin.value() or None

        diameter = value(self.diameter_spin)
        return AutoOptions(
            object_diameter=float(diameter) if diameter else None,
            min_area=value(self.min_area_spin),
            max_area=value(self.max_area_spin),
            redetect_every=value(self.redetect_spin),
            min_quality=self.quality_spin.value() or None,
            min_stability=self.stability_spin.value() or None,
        )

    def set_running(self, running: bool) -> None:
        self.find_button.setEnabled(not running)
        self.track_button.setEnabled(not running)
