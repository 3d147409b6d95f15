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
import shutil
import sys
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
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PART_SUFFIX)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except OSError as err:
        raise _naming(err, path) from err
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def _naming(err: OSError, path: Path) -> OSError:
    """``err`` with the target's path in its message (a full disk's "[Errno 28] No space left on
    device" names no file), and what to do about the common cases."""
    if err.filename is not None and str(path) in str(err):
        return err
    hint = {28: ": free some space, or write elsewhere", 13: ": check the folder's permissions"}
    reason = err.strerror or str(err)
    return OSError(err.errno, f"could not write {path}: {reason}{hint.get(err.errno, '')}")


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
    """``torch.save`` ``obj`` to ``path`` atomically.

    Raises:
        OSError: the write failed (torch's RuntimeError, turned into one line naming ``path``).
    """
    import torch

    with atomic_write(path) as handle:
        try:
            torch.save(obj, handle)
        except RuntimeError as err:  # how torch.save reports a failed write (e.g. a full disk)
            raise OSError(f"could not write {path} ({err}): is the disk full?") from err


class FolderBusy(OSError):
    """Another process holds the folder's lock; the message names it."""


@contextmanager
def folder_lock(lock: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold the lock file ``lock`` while the block runs, so that two processes never write into
    one folder at once; the lock goes with the process (a killed holder frees it).

    Args:
        lock: the lock file (created if needed; kept afterwards, empty of meaning once free).
        what: the holder's description, shown to a process refused (e.g. its command line).

    Raises:
        FolderBusy: another live process holds it (at once, never waiting); the message names
            its process id and command.
    """
    lock = Path(lock)
    handle = open(lock, "a+", encoding="utf-8")  # noqa: SIM115 - held until the block ends
    try:
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise FolderBusy(f"{lock.parent} is in use by process {holder}: wait for it to "
                                 "end, or choose another folder.") from None  # fmt: skip
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} ({what})")
        handle.flush()
        yield
    finally:
        handle.close()


def set_aside(folder: str | os.PathLike, names: tuple[str, ...], complete: bool) -> Path | None:
    """Move the previous experiment's outputs ``names`` in ``folder`` together into
    ``folder/previous`` (``complete``: replacing an older one) or ``folder/interrupted`` (an
    experiment that never finished: never over a complete one). Returns where they went, or None
    if there was nothing."""
    present = [Path(folder) / n for n in names if (Path(folder) / n).exists()]
    for path in [p for p in present if p.is_dir() and not any(p.iterdir())]:
        path.rmdir()  # an empty folder (made by a check before training) is no experiment
        present.remove(path)
    if not present:
        return None
    target = Path(folder) / ("previous" if complete else "interrupted")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    for path in present:
        os.replace(path, target / path.name)
    return target


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
