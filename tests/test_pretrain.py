"""`tutorial-lib pretrain`: a tiny run end to end, staging, no overwrite, a loadable output."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tutorial_lib import cli, hub

TINY = ["--members", "2", "--epochs", "1", "--train-subset", "512", "--val-size", "300",
        "--batch-size", "128"]  # fmt: skip


def test_pretrain_writes_a_loadable_ensemble_and_refuses_to_overwrite(real_root, tmp_path, capsys):
    out = tmp_path / "pre"
    argv = ["pretrain", *TINY, "--out", str(out), "--data-dir", str(real_root),
            "--mirror", os.devnull]  # fmt: skip
    assert cli.main(argv) == 0
    assert "Wrote 2 checkpoints" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["seed"] for f in manifest["files"]] == [0, 1]
    assert manifest["epochs"] == 1 and manifest["data"]["train"] == 512
    assert manifest["data"]["val_size"] == 300  # trained without the validation split
    assert len(manifest["members"]) == 2 and "cls/Acc" in manifest["ensemble"]
    assert (out / "lightning_logs" / "pretrain" / "seed0").is_dir()
    ensemble = hub.load_pretrained_ensemble("local", 2, directory=out)
    members = [hub.load_member(out / f["file"]) for f in manifest["files"]]
    assert not torch.equal(members[0].conv1.weight, members[1].conv1.weight)  # two seeds
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(ensemble(x), torch.cat([m(x) for m in members]))
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".pre.lock", "pre"]  # no staging folder left (the lock file stays, free)

    before = (out / "manifest.json").read_bytes()
    assert cli.main(argv) == cli.EXIT_FAILED  # populated: refused without --force
    assert "pass --force" in capsys.readouterr().err
    assert (out / "manifest.json").read_bytes() == before
    assert cli.main([*argv, "--force", "--seed", "5"]) == 0
    assert [f["seed"] for f in json.loads((out / "manifest.json").read_text())["files"]] == [5, 6]


def test_pretrain_needs_two_members(tmp_path):
    from tutorial_lib.config import ExperimentConfig
    from tutorial_lib.pretrain import pretrain_ensemble

    with pytest.raises(ValueError, match="--members must be >= 2"):
        pretrain_ensemble(ExperimentConfig.create("full", out=str(tmp_path)), members=1)


def test_pretrain_cleans_only_dead_runs_staging_and_refuses_a_folder_in_use(
    real_root, tmp_path, capsys
):
    import subprocess
    import sys

    from tutorial_lib import files

    out = tmp_path / "pre"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (tmp_path / f".pre.staging-{dead.stdout.strip()}").mkdir()  # a killed run's leftovers
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f".pre.staging-{live.pid}").mkdir()  # a concurrent run's live folder
        argv = ["pretrain", *TINY, "--out", str(out), "--data-dir", str(real_root),
                "--mirror", os.devnull]  # fmt: skip
        assert cli.main(argv) == 0
        assert not (tmp_path / f".pre.staging-{dead.stdout.strip()}").exists()
        assert (tmp_path / f".pre.staging-{live.pid}").is_dir()  # left alone
        with files.folder_lock(tmp_path / ".pre.lock", "tutorial-lib pretrain (test)"):
            assert cli.main([*argv, "--force"]) == cli.EXIT_FAILED
        assert f"in use by process {os.getpid()}" in capsys.readouterr().err
    finally:
        live.kill()
        live.wait()


def test_a_full_disk_in_pretrain_is_one_line_naming_the_file(real_root, tmp_path, capsys,
                                                             monkeypatch):  # fmt: skip
    def disk_full(obj, handle):  # what torch.save raises when the write fails
        raise RuntimeError("[enforce fail at inline_container.cc:626] . file write failed")

    monkeypatch.setattr(torch, "save", disk_full)
    out = tmp_path / "pre"
    argv = ["pretrain", *TINY, "--out", str(out), "--data-dir", str(real_root),
            "--mirror", os.devnull]  # fmt: skip
    assert cli.main(argv) == cli.EXIT_FAILED
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "could not write" in err and "lenet_0.ckpt" in err
    assert not out.exists() and not list(tmp_path.glob(".pre.staging-*"))  # nothing half-made
