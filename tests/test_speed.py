"""Machine tuning: OpenMP spins and threads, the switches that turn tuning off, the CPU callback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tutorial_lib import runtime, speed


@pytest.mark.subprocess
def test_share_cpu_fairly_sets_short_spins_before_torch():
    code = (
        "import os, sys; from tutorial_lib.speed import share_cpu_fairly; n = share_cpu_fairly();"
        "import torch; print(os.environ['GOMP_SPINCOUNT'], os.environ['KMP_BLOCKTIME'], n, "
        "torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY', '-'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()  # fmt: skip
    cpus = str(runtime.usable_cpus())
    assert out == ["1000", "0", cpus, cpus, "-"]  # no wait policy forced on the user
    env["GOMP_SPINCOUNT"], env["OMP_NUM_THREADS"] = "300000", "1"  # the user's choice is kept
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()  # fmt: skip
    assert out == ["300000", "0", "1", "1", "-"]


def test_switches_can_be_turned_off_one_by_one_or_all(monkeypatch):
    monkeypatch.delenv("TUTORIAL_SPEED_OFF", raising=False)
    assert all(speed.enabled(name) for name in speed.SWITCHES)
    monkeypatch.setenv("TUTORIAL_SPEED_OFF", "channels_last, spin")
    assert [speed.enabled(name) for name in speed.SWITCHES] == [False, False]
    monkeypatch.setenv("TUTORIAL_SPEED_OFF", "all")
    assert not any(speed.enabled(name) for name in speed.SWITCHES)
    assert speed.fair_share_environment(3) == {"OMP_NUM_THREADS": "3"}  # no spin settings
    with pytest.raises(ValueError, match="unknown speed switch 'turbo'"):
        speed.enabled("turbo")


@pytest.mark.parametrize("off", ["", "channels_last"])
def test_the_cpu_callback_makes_weights_channels_last_unless_switched_off(monkeypatch, off):
    import torch

    from tutorial_lib.models import LeNet

    monkeypatch.setenv("TUTORIAL_SPEED_OFF", off)
    callback = speed.cpu_tuning_callback()

    class Trainer:  # what the callback reads of a Lightning trainer
        class strategy:  # noqa: N801
            root_device = torch.device("cpu")

    model = LeNet()
    callback.on_fit_start(Trainer(), model)
    channels_last = model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert channels_last == (off == "")
    with torch.no_grad():  # the same predictions either way, up to the last bits
        x = torch.randn(4, 1, 28, 28)
        torch.testing.assert_close(model(x), model.to(memory_format=torch.contiguous_format)(x))
