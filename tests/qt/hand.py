"""A hand on the napari canvas: real Qt mouse events (press, move, release) at canvas pixels, mapped from world
coordinates through the viewer's camera, the view's transform in a 2D view. No napari private attributes: the canvas
is found as a Qt child of the viewer's main window, and every mapping is checked against ``viewer.cursor.position``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qtpy.QtCore import QPoint, Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication, QWidget

MODIFIERS = {"Shift": Qt.KeyboardModifier.ShiftModifier, "Control": Qt.KeyboardModifier.ControlModifier}


def find_canvas(window_child: QWidget) -> QWidget:
    """The vispy canvas widget of the napari window that holds ``window_child`` (e.g. a dock widget)."""
    canvases = [w for w in window_child.window().findChildren(QWidget) if type(w).__name__.startswith("CanvasBackend")]
    assert len(canvases) == 1, canvases
    return canvases[0]


def type_key(hand: Hand, key, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    """A key typed into the canvas, as a user types it with the pointer over the image."""
    QTest.keyClick(hand.canvas, key, modifiers)
    QApplication.processEvents()


class Hand:
    """Drives ``canvas`` (found with :func:`find_canvas`) of ``viewer`` with the mouse."""

    def __init__(self, viewer, canvas: QWidget) -> None:
        self.viewer = viewer
        self.canvas = canvas
        viewer.window.show()
        QApplication.processEvents()

    @property
    def camera(self):
        """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
        scene = getattr(self.viewer, "scene", None)
        return scene.camera if scene is not None else self.viewer.camera

    def pixel(self, yx: Sequence[float]) -> QPoint:
        """The canvas pixel showing world point (y, x) of the displayed plane."""
        camera = self.camera
        cy, cx = camera.center[-2:]
        x = (yx[1] - cx) * camera.zoom + self.canvas.width() / 2
        y = (yx[0] - cy) * camera.zoom + self.canvas.height() / 2
        return QPoint(int(round(x)), int(round(y)))

    def move(self, yx: Sequence[float], buttons: bool = False) -> None:
        """Move the pointer to world (y, x) (dragging when a button is held) and check where napari puts it.

        The move event is sent to the canvas itself (a pointer warped through the X server reports late, and Qt
        sends nothing for a move to where the pointer already is); vispy drops a move that comes less than 10 ms
        after the previous one, so the event is sent again until napari has seen it."""
        from qtpy.QtGui import QMouseEvent

        point = self.pixel(yx)
        held = Qt.MouseButton.LeftButton if buttons else Qt.MouseButton.NoButton
        tolerance = 1.0 / self.camera.zoom

        def seen_there() -> bool:
            return np.allclose(np.asarray(self.viewer.cursor.position)[-2:], yx, atol=tolerance)

        for attempt in range(150):
            if attempt % 3 == 0:
                event = QMouseEvent(QMouseEvent.Type.MouseMove, point.toPointF(),
                                    self.canvas.mapToGlobal(point).toPointF(), Qt.MouseButton.NoButton, held,
                                    self._modifiers)
                QApplication.sendEvent(self.canvas, event)
            QTest.qWait(10)
            if seen_there():
                return
        assert seen_there(), (self.viewer.cursor.position, yx)

    def press(self, yx: Sequence[float], modifiers: Sequence[str] = ()) -> None:
        self._modifiers = self._flags(modifiers)
        self.move(yx)
        QTest.mousePress(self.canvas, Qt.MouseButton.LeftButton, self._modifiers, self.pixel(yx))
        QApplication.processEvents()

    def release(self, yx: Sequence[float]) -> None:
        QTest.mouseRelease(self.canvas, Qt.MouseButton.LeftButton, self._modifiers, self.pixel(yx))
        QApplication.processEvents()

    def click(self, yx: Sequence[float], modifiers: Sequence[str] = ()) -> None:
        """Press and release at world (y, x)."""
        self.press(yx, modifiers)
        self.release(yx)

    def drag(self, path: Sequence[Sequence[float]], modifiers: Sequence[str] = ()) -> None:
        """Press at the first point, move through the others with the button held, release at the last."""
        self.press(path[0], modifiers)
        for yx in path[1:]:
            self.move(yx, buttons=True)
        self.release(path[-1])

    _modifiers = Qt.KeyboardModifier.NoModifier

    @staticmethod
    def _flags(modifiers: Sequence[str]) -> Qt.KeyboardModifier:
        flags = Qt.KeyboardModifier.NoModifier
        for name in modifiers:
            flags |= MODIFIERS[name]
        return flags
