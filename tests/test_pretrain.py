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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pre"]  # no staging folder left

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
