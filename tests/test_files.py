"""Atomic writes, strict JSON, stale temporary files."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from tutorial_lib import files


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out.txt"
    files.write_text(target, "old")
    with pytest.raises(RuntimeError), files.atomic_write(target, "w") as handle:
        handle.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left
    files.write_text(target, "new")
    assert target.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_strict_json_and_tensors(tmp_path):
    files.write_json(tmp_path / "r.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": 2})
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": 2}
    files.save_tensors({"x": torch.arange(3)}, tmp_path / "t.pt")
    assert torch.equal(torch.load(tmp_path / "t.pt", weights_only=True)["x"], torch.arange(3))


def test_remove_stale_parts(tmp_path):
    old, new = tmp_path / ".a.x.part", tmp_path / ".b.y.part"
    old.write_text("x")
    new.write_text("y")
    os.utime(old, (0, 0))
    assert files.remove_stale_parts(tmp_path, older_than_s=3600) == [old]
    assert new.exists() and not old.exists()
