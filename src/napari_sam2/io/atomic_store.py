"""Crash-safe files: every write goes to a temporary file in the same folder, is fsynced, then ``os.replace``\\ d.

A reader — or a process started after a ``kill -9`` or a power cut — sees either the old or the new content of a
file, never a mixture. :class:`AtomicLocalStore` applies the rule to every key of a zarr store (chunks and
metadata); :func:`atomic_write_json` to plain documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from zarr.abc.store import Store
from zarr.core.buffer import Buffer
from zarr.storage import LocalStore

TEMP_SUFFIX = ".sam2-tmp"


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (created, renamed, removed files) durable."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # folders cannot be opened on some platforms: nothing more to do there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """``mkdir -p`` that also makes each new folder's entry durable in its parent."""
    missing = []
    current = Path(path)
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        fsync_dir(folder.parent)


def atomic_write_bytes(path: Path | str, data: Any, *, exclusive: bool = False) -> None:
    """Write ``data`` (bytes or any buffer) to ``path`` atomically and durably.

    With ``exclusive`` an existing file is kept and ``FileExistsError`` raised. On any error the temporary file is
    removed and the previous content of ``path`` is untouched.
    """
    path = Path(path)
    make_dirs(path.parent)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)  # fails if path exists, never replaces it
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path | str, document: Any) -> None:
    """Write a JSON document atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, json.dumps(document, indent=2, allow_nan=False).encode())


def read_json(path: Path | str) -> Any | None:
    """The JSON document at ``path``, or None if there is none."""
    try:
        return json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        return None


def remove_tree(path: Path) -> None:
    """Remove a file or folder if present and make the removal durable."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    fsync_dir(path.parent)


def remove_temp_files(root: Path) -> int:
    """Delete temporary files left under ``root`` by writers that were killed; returns how many."""
    removed = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(TEMP_SUFFIX) or name.endswith(".partial"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed


class AtomicLocalStore(LocalStore):
    """A zarr ``LocalStore`` whose every key (chunk or metadata) is written by :func:`atomic_write_bytes`.

    zarr 3.1's ``LocalStore`` renames a temporary file too but never fsyncs, so a power cut can leave an empty or
    partial chunk; here data and folder entries are synced before the call returns.
    """

    def _write_key(self, key: str, value: Buffer, exclusive: bool) -> None:
        if not isinstance(value, Buffer):
            raise TypeError(f"AtomicLocalStore.set(): `value` must be a Buffer instance, got {type(value)}")
        atomic_write_bytes(self.root / key, value.as_buffer_like(), exclusive=exclusive)

    async def set(self, key: str, value: Buffer) -> None:
        if not self._is_open:
            await self._open()
        self._check_writable()
        await asyncio.to_thread(self._write_key, key, value, False)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        if not self._is_open:
            await self._open()
        self._check_writable()
        with contextlib.suppress(FileExistsError):
            await asyncio.to_thread(self._write_key, key, value, True)

    def set_sync(self, key: str, value: Buffer) -> None:
        self._ensure_open_sync()
        self._check_writable()
        self._write_key(key, value, False)

    async def delete(self, key: str) -> None:
        self._check_writable()
        await asyncio.to_thread(remove_tree, self.root / key)

    def delete_sync(self, key: str) -> None:
        self._ensure_open_sync()
        self._check_writable()
        remove_tree(self.root / key)


def open_atomic_store(root: Path | str, *, read_only: bool = False) -> Store:
    """An :class:`AtomicLocalStore` at ``root`` (a read-only plain ``LocalStore`` when ``read_only``)."""
    return LocalStore(root, read_only=True) if read_only else AtomicLocalStore(root)
