"""The `tutorial-lib` command."""

import subprocess
import sys

from tutorial_lib import __version__, cli


def test_help_and_version(capsys):
    assert cli.main([]) == 0
    assert "tutorial-lib" in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "tutorial_lib", "--version"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.strip() == f"tutorial-lib {__version__}"


def test_compare_quick_profile_end_to_end(real_root, tmp_path, capsys):
    import json

    out = tmp_path / "out"
    code = cli.main(["compare", "--profile", "quick", "--data-dir", str(real_root),
                     "--mirror", str(tmp_path / "no-mirror"), "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "Deep Ensemble (M=2)" in printed and "Packed-Ensemble (alpha=2, M=4)" in printed
    assert "Total:" in printed and "results.json" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {
        "LeNet",
        "Deep Ensemble (M=2)",
        "Packed-Ensemble (alpha=2, M=4)",
    }
    assert results["config"]["epochs"] == 1
    for r in results["models"].values():
        assert 0.1 < r["metrics"]["cls/Acc"] <= 1 and "ood/AUROC" in r["metrics"]
    assert (out / "plots" / "risk_coverage.png").stat().st_size > 5_000
    assert len(list((out / "plots").glob("*_reliability.png"))) == 3
    assert (out / "lightning_logs" / "lenet" / "version_0").is_dir()
    assert "| Metric |" in (out / "comparison.md").read_text()


def test_compare_bad_options_exit_with_usage(capsys):
    import pytest

    for argv in (["compare", "--epochs", "0"], ["compare", "--models", "resnet"],
                 ["compare", "--alpha", "-1"], ["frobnicate"]):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err
    assert cli.main(["compare", "--alpha", "1.3", "--num-estimators", "4", "--models", "packed",
                     "--profile", "quick", "--out", "/tmp/unused"]) == 2  # fmt: skip
    assert "Try alpha=" in capsys.readouterr().err


def test_compare_without_data_says_what_to_do(tmp_path, capsys, monkeypatch):
    import urllib.error

    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", offline)
    argv = ["compare", "--profile", "quick", "--data-dir", str(tmp_path / "empty"),
            "--mirror", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "o")]  # fmt: skip
    code = cli.main(argv)
    assert code == 1
    err = capsys.readouterr().err
    assert "data problem" in err and "TUTORIAL_DATA_MIRROR" in err


def test_compare_shift_option(real_root, tmp_path, capsys):
    import json

    out = tmp_path / "shift"
    argv = ["compare", "--models", "lenet", "--profile", "quick", "--shift", "--data-dir",
            str(real_root), "--mirror", str(tmp_path / "none"), "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Under shift" in printed and "cal/ECE" in printed
    assert (out / "plots" / "shift.png").exists()
    assert len(json.loads((out / "results.json").read_text())["shift"]) == 1 + 7 * 5
