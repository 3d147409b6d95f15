"""The `tutorial-lib` command: flags from the one configuration, fast help, exit codes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.error

import nbformat
import pytest

from tutorial_lib import __version__, cli, data
from tutorial_lib.errors import WorkerDied


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.subprocess
def test_help_and_version_import_no_heavy_library(capsys):
    assert cli.main([]) == 0
    assert "tutorial-lib" in capsys.readouterr().out
    for argv in (["--help"], ["compare", "--help"], ["pretrain", "--help"]):
        code = (f"import sys; from tutorial_lib import cli\ntry: cli.main({argv!r})\n"
                "except SystemExit as e: print('exit', e.code, 'torch' in sys.modules, "
                "'lightning' in sys.modules)")  # fmt: skip
        done = run_python(code)
        assert done.stdout.strip().endswith("exit 0 False False"), (argv, done.stderr)
    out = subprocess.run([sys.executable, "-m", "tutorial_lib", "--version"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.strip() == f"tutorial-lib {__version__}"


@pytest.mark.subprocess
def test_the_command_exits_fast_with_its_code_and_every_line_flushed(real_root, tmp_path):
    (tmp_path / "file").write_text("")
    argv = ["compare", "--profile", "quick", "--models", "lenet", "--data-dir", str(real_root)]
    done = subprocess.run([sys.executable, "-m", "tutorial_lib", *argv, "--out",
                           str(tmp_path / "file")], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == cli.EXIT_FAILED, done.stderr
    assert done.stdout.startswith("tutorial-lib compare: LeNet;")  # printed before the failure
    assert "is a file, not a folder" in done.stderr.strip().splitlines()[-1]


def test_compare_help_shows_defaults_and_the_quick_preset(capsys):
    with pytest.raises(SystemExit):
        cli.main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 3; quick: 1)" in text  # --epochs
    assert "(default: lenet deep-ensemble-2 packed)" in text
    assert "(default: all 10)" in text and "(default: None)" not in text  # --classes, --lr...
    assert "(default: all) (quick: 4096)" in text  # --train-subset
    assert "--calibrate {none,temperature}" in text and "--seeds SEEDS" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "--seeds", "0"], "--seeds must be an integer >= 1, got 0"),
        (["compare", "--val-size", "60000"], "--val-size must be smaller"),
        (["compare", "--val-size", "-5"], "--val-size must be an integer >= 0"),
        (["compare", "--dataset", "cifar"], "invalid choice: 'cifar'"),
        (["compare", "--calibrate", "platt"], "invalid choice: 'platt'"),
        (["compare", "--models", "resnet"], "unknown model 'resnet'"),
        (["compare", "--epoch", "2"], "unrecognized arguments: --epoch"),  # no abbreviations
        (["compare", "--epochs", "two"], "invalid int value"),
        (["compare", "--classes", "0", "x"], "invalid int value: 'x'"),
        (["compare", "--classes", "4"], "--classes: give 2 to 9 distinct labels"),
        (["compare", "--ood-score", "odin"], "invalid choice: 'odin'"),
        (["pretrain", "--epochs", "0"], "--epochs must be an integer >= 1"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_options_are_usage_errors_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "usage:" in err


def test_explicit_flags_win_and_results_json_records_what_ran(real_root, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["compare", "--profile", "quick", "--models", "lenet", "--epochs", "2",
                     "--batch-size", "256", "--data-dir", str(real_root), "--mirror",
                     str(tmp_path / "no-mirror"), "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "profile quick" in printed and "Total:" in printed and "results.json" in printed
    results = json.loads((out / "results.json").read_text())
    config = results["config"]
    assert (config["epochs"], config["batch_size"], config["profile"]) == (2, 256, "quick")
    assert config["train_subset"] == 4096 and results["data"]["train"] == 4096
    assert results["models"]["LeNet"]["steps"] == [2 * 4096 // 256]  # what really ran
    assert results["complete"] is True


def test_a_missing_data_set_says_what_to_do(tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(data, "_fetch_url", offline)
    argv = ["compare", "--profile", "quick", "--data-dir", str(tmp_path / "empty"),
            "--mirror", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "o")]  # fmt: skip
    assert cli.main(argv) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "data problem" in err and "TUTORIAL_DATA_MIRROR" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "empty").exists()  # nothing left


def test_out_is_a_file_and_divergence_have_their_own_messages(real_root, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    common = ["--profile", "quick", "--models", "lenet", "--data-dir", str(real_root)]
    assert cli.main(["compare", *common, "--out", str(tmp_path / "file")]) == cli.EXIT_FAILED
    assert "is a file, not a folder" in capsys.readouterr().err
    code = cli.main(["compare", *common, "--lr", "1e6", "--out", str(tmp_path / "o")])
    assert code == cli.EXIT_DIVERGED
    err = capsys.readouterr().err
    assert "training diverged at epoch 0" in err and "lower the learning rate (--lr)." in err
    assert "use the default recipe" not in err  # it was the default recipe that diverged
    assert len(err.strip().splitlines()) == 1


def test_compare_shift_option(real_root, tmp_path, capsys):
    out = tmp_path / "shift"
    argv = ["compare", "--models", "lenet", "--profile", "quick", "--shift", "--data-dir",
            str(real_root), "--mirror", str(tmp_path / "none"), "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Under shift" in printed and "cal/ECE" in printed
    assert (out / "plots" / "shift.png").exists()
    rows = json.loads((out / "results.json").read_text())["shift"]
    assert len(rows) == 1 + 7 * 5 and {r["seed"] for r in rows} == {0}


def make_course(root, cells=("print(6 * 7)",)):
    """A tiny course folder: book.toml and one notebook."""
    (root / "notebooks").mkdir(parents=True)
    (root / "book.toml").write_text('[book]\ntitle = "T"\nsrc = "build/book-src"\n\n'
                                    '[build]\nbuild-dir = "build/book"\n')  # fmt: skip
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# 1. Tiny\n\nMath: $x^2$.")]
    notebook.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(notebook, root / "notebooks" / "01_tiny.ipynb")
    return root / "notebooks" / "01_tiny.ipynb"


def test_notebooks_and_book_find_the_course_from_the_current_folder(tmp_path, monkeypatch, capsys):
    path = make_course(tmp_path / "course")
    (tmp_path / "course" / "notebooks" / "deep").mkdir()
    monkeypatch.chdir(tmp_path / "course" / "notebooks" / "deep")  # below the root, as git
    assert cli.main(["notebooks", "--profile", "quick"]) == 0  # no --execute needed
    assert "01_tiny.ipynb" in capsys.readouterr().out
    outputs = nbformat.read(path, 4).cells[1].outputs
    assert outputs[0]["text"].strip() == "42"  # executed, stored in place
    assert cli.main(["book"]) == 0
    assert (tmp_path / "course" / "build" / "book" / "01_tiny.html").exists()
    monkeypatch.chdir(tmp_path)  # no course here
    assert cli.main(["book"]) == cli.EXIT_FAILED
    assert "pass --root" in capsys.readouterr().err
    assert cli.main(["book", "--root", str(tmp_path / "course")]) == 0
    assert cli.main(["notebooks", "--root", str(tmp_path / "course"), "missing.ipynb"]) == 1
    assert "No such notebook" in capsys.readouterr().err


def test_the_new_methods_run_from_the_command_line(real_root, tmp_path, capsys):
    out = tmp_path / "new"
    argv = ["compare", "--profile", "quick", "--models", "mc-dropout", "batch-ensemble",
            "--data-dir", str(real_root), "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    models = json.loads((out / "results.json").read_text())["models"]
    assert set(models) == {"MC-Dropout (T=8)", "BatchEnsemble (M=4)"}
    assert models["BatchEnsemble (M=4)"]["metrics"]["ens/MI"] > 0  # members that differ


def test_wide_backbones_and_gamma_2_from_the_command_line(real_root, tmp_path, capsys):
    out = tmp_path / "wide"
    argv = ["compare", "--profile", "quick", "--models", "deep-ensemble-4", "packed-2-4",
            "--width", "4", "--gamma", "2", "--train-subset", "256", "--eval-subset", "200",
            "--data-dir", str(real_root), "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["width"] == 4 and "--gamma 2 --width 4" in results["run"]["command"]
    models = results["models"]
    packed = models["Packed-Ensemble (alpha=2, M=4, gamma=2, width=4)"]["metrics"]
    deep = models["Deep Ensemble (M=4, width=4)"]["metrics"]
    assert packed["cplx/params"] < deep["cplx/params"] / 4  # what packing buys
    assert (out / "lightning_logs" / "packed-2-4-g2-w4" / "seed0").is_dir()


def test_a_subset_of_classes_and_another_ood_score_from_the_command_line(
    real_root, tmp_path, capsys
):  # fmt: skip
    out = tmp_path / "near"
    argv = ["compare", "--profile", "quick", "--models", "lenet", "--classes", "0", "1", "2",
            "--ood-score", "energy", "--train-subset", "256", "--eval-subset", "200",
            "--data-dir", str(real_root), "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["classes"] == [0, 1, 2] and results["config"]["ood_score"] == "energy"
    assert "--classes 0 1 2" in results["run"]["command"] and results["data"]["test_near"] == 200
    assert 0 <= results["models"]["LeNet"]["metrics"]["near/AUROC"] <= 1
    shown = capsys.readouterr().out
    assert "OOD score energy" in shown and "near-OOD AUROC" in shown


@pytest.mark.subprocess
def test_help_book_and_notebooks_do_not_import_torch(tmp_path):
    code = (
        "import sys; from tutorial_lib import cli\n"
        "for argv in (['--help'], ['compare', '--help'], ['book', '--root', sys.argv[1]],"
        " ['notebooks', '--root', sys.argv[1], 'missing.ipynb']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules, 'lightning' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "False False"


@pytest.mark.parametrize(
    ("error", "line", "code"),
    [
        (MemoryError(""), "out of memory (run one at a time: --workers 1)", 1),
        (
            WorkerDied(
                "a worker process ended before its run did: run one at a time with --workers 1."
            ),
            "a worker process ended",
            1,
        ),  # fmt: skip
        (ValueError("a library check failed"), "a library check failed", 1),  # not usage: 1
    ],
)
def test_a_worker_or_memory_failure_is_one_line(monkeypatch, capsys, error, line, code):
    import argparse

    def fails(args):
        raise error

    monkeypatch.setitem(cli.HANDLERS, "compare", fails)
    assert cli.run_command("compare", argparse.Namespace()) == code
    err = capsys.readouterr().err
    assert err.startswith(f"tutorial-lib compare: {line}") and err.count("\n") == 1


def test_a_folder_in_use_is_refused_at_once_naming_the_other_process(real_root, tmp_path, capsys):
    from conftest import lock_held_elsewhere

    out = tmp_path / "o"
    out.mkdir()
    with lock_held_elsewhere(out / ".lock", "tutorial-lib compare --out o") as pid:
        start = time.perf_counter()
        argv = ["compare", "--profile", "quick", "--models", "lenet", "--data-dir",
                str(real_root), "--out", str(out)]  # fmt: skip
        assert cli.main(argv) == cli.EXIT_FAILED
        assert time.perf_counter() - start < 10  # refused, not queued behind the holder
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"is in use by process {pid} (tutorial-lib compare --out o)" in err


def test_a_rerun_sets_the_previous_experiment_aside_and_a_failed_one_keeps_it(
    real_root, tmp_path, capsys
):
    out = tmp_path / "o"
    argv = ["compare", "--profile", "quick", "--models", "lenet", "--train-subset", "512",
            "--eval-subset", "300", "--data-dir", str(real_root), "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    first = json.loads((out / "results.json").read_text())
    assert cli.main(argv) == 0
    assert json.loads((out / "previous" / "results.json").read_text()) == first
    assert (out / "previous" / "plots").is_dir() and (out / "previous" / "comparison.md").exists()
    assert "previous experiment" in capsys.readouterr().out
    second = json.loads((out / "results.json").read_text())
    assert cli.main([*argv, "--lr", "1e6"]) == cli.EXIT_DIVERGED  # a rerun that fails
    assert json.loads((out / "previous" / "results.json").read_text()) == second
    failed = json.loads((out / "results.json").read_text())
    assert failed["complete"] is False and not (out / "comparison.md").exists()


def test_a_notebook_that_fails_or_is_not_json_is_one_line_and_left_as_it_was(tmp_path, capsys):
    path = make_course(tmp_path / "course", cells=("x = 1", "1 / 0"))
    before = path.read_bytes()
    root = ["notebooks", "--root", str(tmp_path / "course"), "--profile", "quick"]
    assert cli.main(root) == cli.EXIT_FAILED
    err = capsys.readouterr().err.strip()
    assert err == ("tutorial-lib notebooks: 01_tiny.ipynb, cell 2: ZeroDivisionError: division "
                   "by zero (the file is unchanged)")  # fmt: skip
    assert path.read_bytes() == before
    path.write_text('{"cells": [')  # a notebook cut short
    assert cli.main(root) == cli.EXIT_FAILED
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "01_tiny.ipynb is not a valid notebook" in err


def test_ctrl_c_in_notebooks_or_pretrain_exits_130_saying_what_happened(monkeypatch, capsys):
    from tutorial_lib import book, pretrain

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(book, "execute_notebooks", interrupted)
    assert cli.main(["notebooks"]) == cli.EXIT_INTERRUPTED
    assert "tutorial-lib notebooks: interrupted after" in capsys.readouterr().err
    monkeypatch.setattr(pretrain, "pretrain_ensemble", interrupted)
    assert cli.main(["pretrain", "--out", "somewhere"]) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "interrupted after" in err and "nothing was written to somewhere" in err
    assert "finished run" not in err


def test_the_student_edition_stubs_solutions_and_still_runs(tmp_path, capsys):
    from nbclient import NotebookClient

    cells = (
        "from tutorial_lib.exercises import check",
        "def energy(logits):\n    ### BEGIN SOLUTION\n    return logits.mean(1).logsumexp(-1)\n"
        "    ### END SOLUTION\n\nenergy = check('energy', energy)",
        "import torch\nprint(float(energy(torch.zeros(1, 2, 4))))",  # the chapter goes on
    )
    path = make_course(tmp_path / "course", cells=cells)
    assert cli.main(["student", "--root", str(tmp_path / "course")]) == 0
    assert "student edition of 1 chapter(s)" in capsys.readouterr().out
    student = tmp_path / "course" / "student" / path.name
    notebook = nbformat.read(student, 4)
    source = notebook.cells[2].source
    assert "logsumexp" not in source and "raise NotImplementedError" in source
    assert "### BEGIN SOLUTION" not in source and all(not c.get("outputs") for c in notebook.cells)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(student.parent)}}).execute()  # fmt: skip
    printed = [o.get("text", "") for c in notebook.cells for o in c.get("outputs", [])]
    assert any("energy: not done yet" in text for text in printed)
    assert any(text.strip() == str(math.log(4)) for text in printed)  # the library's version
    assert cli.main(["student", "--root", str(tmp_path / "course"), "--out",
                     str(tmp_path / "elsewhere")]) == cli.EXIT_FAILED  # fmt: skip
    assert "must be a folder inside the course" in capsys.readouterr().err
