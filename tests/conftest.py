"""Shared fixtures: the real data (from the offline mirror in CI) in a per-session data root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture(scope="session")
def real_root(tmp_path_factory):
    """A data root holding the real MNIST / FashionMNIST files, prepared once per session.

    The files come from ``$TUTORIAL_DATA_MIRROR`` (CI sets it) or are downloaded; without either
    the data layer raises its own error, which then fails these tests with its remedy.
    """
    from tutorial_lib import data

    root = tmp_path_factory.mktemp("data")
    for name in ("MNIST", "FashionMNIST"):
        data.prepare(name, root, os.environ.get("TUTORIAL_DATA_MIRROR"))
    return root


@contextmanager
def lock_held_elsewhere(lock, what: str) -> Iterator[int]:
    """Another process holds ``files.folder_lock(lock, what)`` while the block runs; yields its
    process id. It is killed afterwards (which frees the lock)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from tutorial_lib import files\n"
         f"with files.folder_lock({str(lock)!r}, {what!r}):\n"
         "    print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def copy_course(root: Path) -> Path:
    """The course's book.toml and chapters (without their run outputs) copied into ``root``."""
    repo = Path(__file__).resolve().parent.parent
    shutil.copy(repo / "book.toml", root / "book.toml")
    shutil.copytree(repo / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns("outputs", "lightning_logs", "data"))  # fmt: skip
    return root
