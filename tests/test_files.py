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


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "results.json"
    with pytest.raises(OSError, match=r"could not write .*results.json: No space left on device: "
                                      "free some space") as err:  # fmt: skip
        files.write_json(target, {"a": 1})
    assert err.value.errno == 28
    assert not target.exists() and not list(tmp_path.iterdir())  # no half file, no .part


def test_a_failed_torch_save_is_an_oserror_naming_the_file(tmp_path, monkeypatch):
    def failing_save(obj, handle):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0: "
                           "file write failed")  # fmt: skip

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match=r"could not write .*cache.pt .*is the disk full"):
        files.save_tensors({"x": torch.zeros(2)}, tmp_path / "cache.pt")
    assert not list(tmp_path.iterdir())


def test_a_locked_folder_refuses_a_second_writer_at_once(tmp_path):
    from conftest import lock_held_elsewhere

    with (
        lock_held_elsewhere(tmp_path / ".lock", "tutorial-lib compare") as pid,
        pytest.raises(files.FolderBusy, match=rf"in use by process {pid} \(tutorial-lib compare\)"),
        files.folder_lock(tmp_path / ".lock", "second"),
    ):
        pass
    with files.folder_lock(tmp_path / ".lock", "third"):  # a killed holder frees it
        assert (tmp_path / ".lock").read_text().startswith(f"{os.getpid()} (third)")


def test_set_aside_keeps_the_last_complete_experiment(tmp_path):
    names = ("results.json", "plots")
    assert files.set_aside(tmp_path, names, complete=True) is None  # nothing there
    (tmp_path / "plots").mkdir()  # made by the checks before a first experiment: not one
    assert files.set_aside(tmp_path, names, complete=False) is None
    assert not (tmp_path / "interrupted").exists()
    (tmp_path / "results.json").write_text("complete one")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "reliability.png").write_bytes(b"png")
    assert files.set_aside(tmp_path, names, complete=True) == tmp_path / "previous"
    assert (tmp_path / "previous" / "results.json").read_text() == "complete one"
    assert (tmp_path / "previous" / "plots").is_dir() and not (tmp_path / "plots").exists()
    (tmp_path / "results.json").write_text("interrupted one")
    files.set_aside(tmp_path, names, complete=False)
    assert (tmp_path / "interrupted" / "results.json").read_text() == "interrupted one"
    assert (tmp_path / "previous" / "results.json").read_text() == "complete one"
