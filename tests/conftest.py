"""Shared fixtures: the real data (from the offline mirror in CI) in a per-session data root."""

from __future__ import annotations

import os

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
