"""A read-only, selectable box that shows a command for the user to copy (hidden until there is one)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QPlainTextEdit


def command_view(max_height: int = 90) -> QPlainTextEdit:
    """A hidden, read-only text box whose text the mouse and keyboard can select."""
    view = QPlainTextEdit()
    view.setReadOnly(True)
    view.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                 | Qt.TextInteractionFlag.TextSelectableByKeyboard)
    view.setMaximumHeight(max_height)
    view.hide()
    return view
