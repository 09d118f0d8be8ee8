"""The strip of an object's crops over time in review mode: small thumbnails (grey image, the object's outline in
its colour, the frame under each), in a row inside the dock. Clicking one goes to that frame.

A Qt strip rather than a napari layer: it belongs to the object under review, not to the image's coordinates, so it
must not join the layer list, the layer controls or a saved layer set, and it costs napari nothing to redraw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qtpy.QtCore import QSize, Qt, Signal
from qtpy.QtGui import QColor, QIcon, QImage, QPixmap
from qtpy.QtWidgets import QListView, QListWidget, QListWidgetItem

from napari_sam2._qt.crops import Crop, outline

FRAME_ROLE = Qt.ItemDataRole.UserRole


def crop_pixmap(crop: Crop, colour: str) -> QPixmap:
    """``crop`` as an RGB pixmap: the grey image with the mask's outline in ``colour``."""
    rgb = np.repeat(crop.image[..., None], 3, axis=-1)
    edge = outline(crop.mask)
    c = QColor(colour)
    rgb[edge] = (c.red(), c.green(), c.blue())
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


class CropStrip(QListWidget):
    """``frame_clicked(frame)`` when a thumbnail is clicked."""

    frame_clicked = Signal(int)

    def __init__(self, size: int = 64) -> None:
        super().__init__()
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(size, size))
        self.setFixedHeight(size + 44)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setToolTip("The object under review over time (its outline in its colour): click a crop to go there")
        self.itemClicked.connect(lambda item: self.frame_clicked.emit(int(item.data(FRAME_ROLE))))

    def show_crops(self, crops: Sequence[Crop], colour: str, word: str = "frame") -> None:
        """Replace the thumbnails by ``crops`` (outlined in ``colour``)."""
        self.clear()
        for crop in crops:
            item = QListWidgetItem(QIcon(crop_pixmap(crop, colour)), f"{word[0]} {crop.frame}")
            item.setData(FRAME_ROLE, crop.frame)
            item.setToolTip(f"{word} {crop.frame}")
            self.addItem(item)

    def frames(self) -> list[int]:
        """The frames shown, in order."""
        return [int(self.item(i).data(FRAME_ROLE)) for i in range(self.count())]
