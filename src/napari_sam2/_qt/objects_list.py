"""The objects list: one row per object (colour, name, review status, frames with prompts), check box to show or
hide, double-click to rename, a Delete button, a menu of the frames that carry the object's prompts to jump to, and
a filter by review status (e.g. only the rejected objects, to correct)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QBrush, QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_sam2._qt.review import FILTERS, STATUS_COLOURS, keeps, status_text

ID_ROLE = Qt.ItemDataRole.UserRole


@dataclass(frozen=True)
class ObjectRow:
    """What the list shows of one object."""

    obj_id: int
    name: str
    colour: str
    prompted_frames: tuple[int, ...]
    visible: bool
    status: str | None = None  # review status (see napari_sam2._qt.review)


def _swatch(colour: str) -> QIcon:
    pixmap = QPixmap(14, 14)
    pixmap.fill(QColor(colour))
    return QIcon(pixmap)


class ObjectsList(QWidget):
    """Signals carry object ids; the owner applies the change and calls :meth:`set_rows` again."""

    selected = Signal(int)
    visibility_changed = Signal(int, bool)
    renamed = Signal(int, str)
    delete_requested = Signal(int)
    jump_requested = Signal(int)
    filter_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._filling = False
        self.list = QListWidget()
        self.list.setToolTip("Tick to show, untick to hide; double-click a name to rename; select to make it current")
        self.frames = QComboBox()
        self.frames.setToolTip("Frames where the selected object has prompts: choose one to go there")
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the selected object: its labels on every frame and its prompts")
        self.filter_combo = QComboBox()
        self.filter_combo.addItems(list(FILTERS))
        self.filter_combo.setToolTip("Which objects the list shows and review mode steps through: all, those not "
                                     "reviewed yet, or the rejected ones (to correct)")
        show_row = QHBoxLayout()
        show_row.addWidget(QLabel("Show:"))
        show_row.addWidget(self.filter_combo, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Prompts on:"))
        row.addWidget(self.frames, 1)
        row.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(show_row)
        layout.addWidget(self.list)
        layout.addLayout(row)
        self.list.itemChanged.connect(self._item_changed)
        self.list.currentItemChanged.connect(self._current_changed)
        self.frames.activated.connect(self._frame_chosen)
        self.delete_button.clicked.connect(self._delete_clicked)
        self.filter_combo.currentTextChanged.connect(self._filter_chosen)
        self._rows: dict[int, ObjectRow] = {}

    # ------------------------------------------------------------------ filling
    def set_rows(self, rows: Sequence[ObjectRow], current: int | None = None) -> None:
        """Show ``rows``; select ``current``."""
        self._filling = True
        try:
            self._rows = {r.obj_id: r for r in rows}
            self.list.clear()
            for r in rows:
                item = QListWidgetItem(_swatch(r.colour), self._text(r))
                item.setData(ID_ROLE, r.obj_id)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEditable)
                item.setCheckState(Qt.CheckState.Checked if r.visible else Qt.CheckState.Unchecked)
                if r.status in STATUS_COLOURS:
                    item.setForeground(QBrush(QColor(STATUS_COLOURS[r.status])))
                    item.setToolTip(f"review status: {r.status}")
                self.list.addItem(item)
                item.setHidden(not keeps(self.filter_name, r.status))
                if r.obj_id == current:
                    self.list.setCurrentItem(item)
        finally:
            self._filling = False
        self._fill_frames()

    @staticmethod
    def _text(row: ObjectRow) -> str:
        status = status_text(row.status)
        return f"{row.name}   {status}" if status else row.name

    @property
    def filter_name(self) -> str:
        """The review filter chosen (a key of ``review.FILTERS``)."""
        return self.filter_combo.currentText()

    def shown_ids(self) -> list[int]:
        """Ids of the rows the filter shows, in list order."""
        items = (self.list.item(i) for i in range(self.list.count()))
        return [int(item.data(ID_ROLE)) for item in items if not item.isHidden()]

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return int(item.data(ID_ROLE)) if item is not None else None

    def item_for(self, obj_id: int) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            if int(self.list.item(i).data(ID_ROLE)) == obj_id:
                return self.list.item(i)
        return None

    def _fill_frames(self) -> None:
        self.frames.clear()
        obj_id = self.current_id()
        row = self._rows.get(obj_id) if obj_id is not None else None
        if row is None or not row.prompted_frames:
            self.frames.addItem("(none)")
            self.frames.setEnabled(False)
        else:
            self.frames.setEnabled(True)
            for frame in row.prompted_frames:
                self.frames.addItem(f"frame {frame}", frame)
        self.delete_button.setEnabled(row is not None)

    # ------------------------------------------------------------------ user actions
    def _item_changed(self, item: QListWidgetItem) -> None:
        if self._filling:
            return
        obj_id = int(item.data(ID_ROLE))
        row = self._rows.get(obj_id)
        visible = item.checkState() == Qt.CheckState.Checked
        if row is not None and visible != row.visible:
            self._rows[obj_id] = row = replace(row, visible=visible)
            self.visibility_changed.emit(obj_id, visible)
        name = item.text().strip()
        status = status_text(row.status) if row is not None else ""
        if status and name.endswith(status):  # the status shown after the name is not part of it
            name = name[: -len(status)].strip()
        if row is not None and name and name != row.name:
            self._rows[obj_id] = replace(row, name=name)
            self.renamed.emit(obj_id, name)

    def _current_changed(self, current: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if self._filling:
            return
        self._fill_frames()
        if current is not None:
            self.selected.emit(int(current.data(ID_ROLE)))

    def _filter_chosen(self, name: str) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            row = self._rows.get(int(item.data(ID_ROLE)))
            item.setHidden(row is not None and not keeps(name, row.status))
        self.filter_changed.emit(name)

    def _frame_chosen(self, index: int) -> None:
        frame = self.frames.itemData(index)
        if frame is not None:
            self.jump_requested.emit(int(frame))

    def _delete_clicked(self) -> None:
        obj_id = self.current_id()
        if obj_id is not None:
            self.delete_requested.emit(obj_id)
