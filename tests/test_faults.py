"""Fault injection: processes killed or interrupted mid-way, concurrent repairs. Nothing is lost,
nothing half-written is trusted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tutorial_lib import data, hub

MIRROR = os.environ.get("TUTORIAL_DATA_MIRROR")
MIRROR = str(Path(MIRROR).resolve()) if MIRROR else None  # the tests change folder
pytestmark = pytest.mark.subprocess  # every test here kills or interrupts processes


def python(code: str) -> subprocess.Popen:
    command = [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def md5_ok(root: Path, name: str) -> bool:
    raw = root / name / "raw"
    return all(data.md5sum(raw / f) == md5 for f, md5 in data.DATASETS[name].resources)


def test_kill_9_during_preparation_leaves_nothing_trusted(tmp_path):
    root = tmp_path / "root"
    proc = python(f"""
        import sys, time
        from tutorial_lib import data, files
        def slow_copy(src, dst):
            with files.atomic_write(dst) as out, open(src, "rb") as inp:
                out.write(inp.read(1 << 20))  # a first MiB, then hang: killed here
                out.flush()
                print("writing", flush=True)
                time.sleep(60)
        data._copy = slow_copy
        data.prepare("MNIST", {str(root)!r}, {MIRROR!r})
    """)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    raw = root / "MNIST" / "raw"
    parts = list(raw.glob(".*.part"))
    assert parts and not list(raw.glob("*.gz"))  # only a temporary file: no .gz to trust
    for part in parts:
        os.utime(part, (1, 1))  # as if the crash was long ago
    data.prepare("MNIST", root, MIRROR)
    assert md5_ok(root, "MNIST") and not list(raw.glob(".*.part"))


def test_two_processes_repairing_the_same_corrupt_files_both_succeed(tmp_path):
    for trial in range(4):
        root = tmp_path / f"root{trial}"
        raw = data.prepare("FashionMNIST", root, MIRROR)
        for f in raw.glob("*.gz"):  # every file damaged: both processes repair all four
            f.write_bytes(f.read_bytes()[:-7])
        code = f"""
            import warnings; warnings.simplefilter("ignore")
            from tutorial_lib import data
            data.load_split("FashionMNIST", False, {str(root)!r}, {MIRROR!r})
            print("ok")
        """
        procs = [python(code) for _ in range(2)]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0 and out.strip() == "ok", err[-2000:]
        assert md5_ok(root, "FashionMNIST")


def test_kill_9_during_pretrain_keeps_the_previous_ensemble(real_root, tmp_path):
    out = tmp_path / "pre"
    args = ["--members", "2", "--epochs", "1", "--train-subset", "512", "--val-size", "300",
            "--batch-size", "128", "--data-dir", str(real_root), "--mirror", os.devnull,
            "--out", str(out)]  # fmt: skip
    first = subprocess.run([sys.executable, "-m", "tutorial_lib", "pretrain", *args],
                           capture_output=True, text=True)  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p.name: p.read_bytes() for p in out.glob("*") if p.is_file()}
    second = subprocess.Popen([sys.executable, "-m", "tutorial_lib", "pretrain", *args, "--force",
                               "--epochs", "200", "--seed", "9"])  # fmt: skip
    wait_for(lambda: any(tmp_path.glob(".pre.staging-*/lightning_logs/*/*/events.*")))
    second.send_signal(signal.SIGKILL)
    second.wait()
    assert {p.name: p.read_bytes() for p in out.glob("*") if p.is_file()} == before
    assert hub.load_pretrained_ensemble("local", 2, directory=out).num_estimators == 2


def test_ctrl_c_during_compare_exits_130_and_saves_what_finished(real_root, tmp_path):
    out = tmp_path / "out"
    (out).mkdir()
    stale = {"complete": True, "models": {"Old": {}}}
    (out / "results.json").write_text(json.dumps(stale))  # a previous run's results
    proc = subprocess.Popen(
        [sys.executable, "-m", "tutorial_lib", "compare", "--profile", "quick", "--models",
         "lenet", "deep-ensemble-4", "--epochs", "6", "--data-dir", str(real_root),
         "--mirror", os.devnull, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def lenet_saved():
        try:
            return "LeNet" in json.loads((out / "results.json").read_text())["models"]
        except (OSError, ValueError):
            return False

    wait_for(lenet_saved, timeout=300)
    time.sleep(1.0)  # well into the deep ensemble's fit
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted after" in err and "1 finished run(s) are in" in err
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is False and list(results["models"]) == ["LeNet"]
    # the previous complete experiment was moved aside, not destroyed
    assert json.loads((out / "previous" / "results.json").read_text()) == stale


@pytest.fixture(autouse=True)
def _needs_mirror_and_runs_in_an_empty_folder(tmp_path, monkeypatch):
    """The processes started here (they inherit the working folder) run in an empty folder under
    ``tmp_path``: they write only where they are told to, never into the working folder."""
    if not MIRROR:
        pytest.fail("Set TUTORIAL_DATA_MIRROR to the offline mirror (CI does).")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield
    assert sorted(p.name for p in cwd.iterdir()) == []  # e.g. no ./lightning_logs, no ./data
