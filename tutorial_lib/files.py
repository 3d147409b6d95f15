"""Writing files so that nothing half-written is ever read: one helper for every output.

:func:`atomic_write` writes to a temporary file beside the target, flushes it to disk, gives it the
usual permissions (``0666`` minus the umask: ``0644`` with the common umask, so a shared data root
stays readable by the group and others) and renames it over the target in one step. A crash or a
kill at any moment leaves either the old file or the new one, never a mixture; the temporary file
is removed on error. Temporary names are ``.<name>.<random>.part``; :func:`remove_stale_parts`
cleans those that a killed process left behind.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PART_SUFFIX = ".part"


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces ``path`` atomically.

    Args:
        path: the file to (re)place; its folder must exist.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).

    Yields:
        The open temporary file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PART_SUFFIX)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The course's folder: ``start`` (default: the current folder) or the nearest parent holding
    ``book.toml``, as ``git`` and ``mdbook`` find theirs.

    Raises:
        FileNotFoundError: no such folder; the message says to pass ``--root``.
    """
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "book.toml").is_file():
            return folder
    raise FileNotFoundError(f"No course folder (with book.toml) at or above {here}: run from the "
                            "course's repository or pass --root.")  # fmt: skip


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path) as handle:
        handle.write(data)


def _strict(value: Any) -> Any:
    """NaN and infinities become ``None`` (JSON has no such numbers); containers recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Write strict JSON (NaN/inf as ``null``), indented, atomically."""
    write_text(path, json.dumps(_strict(value), indent=2, allow_nan=False) + "\n")


def save_tensors(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    import torch

    with atomic_write(path) as handle:
        torch.save(obj, handle)


def remove_stale_parts(folder: str | os.PathLike, older_than_s: float = 3600.0) -> list[Path]:
    """Delete temporary ``*.part`` files untouched for ``older_than_s`` seconds (left by a killed
    process; a live writer touches its file continuously). Returns the removed paths."""
    removed = []
    now = time.time()
    for part in Path(folder).glob(f".*{PART_SUFFIX}"):
        try:
            if now - part.stat().st_mtime > older_than_s:
                part.unlink()
                removed.append(part)
        except FileNotFoundError:  # another process finished or removed it meanwhile
            continue
    return removed
