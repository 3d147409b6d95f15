"""Training throughput of the course's models.

Images per second of one training step (forward + backward + SGD step, batch 512, random
MNIST-shaped data already on the device) for LeNet, a deep ensemble of 4 LeNets run one after the
other, the same ensemble fused into one network (``PackedLeNet(alpha=4, M=4)``),
``PackedLeNet(alpha=2, M=4)``, MC-Dropout and BatchEnsemble (M=4).

On CPU the models run in channels-last memory format (:mod:`tutorial_lib.speed`), as the trainer
does; ``--plain`` measures without it.

    python benchmarks/models.py [--device cuda] [--steps 30] [--plain]
"""

from __future__ import annotations

import argparse

import torch
from common import machine, timed
from torch.nn import functional as F

from tutorial_lib.ensembles import RepeatTarget, deep_ensembles, fuse
from tutorial_lib.models import BatchEnsembleLeNet, LeNet, MCDropoutLeNet, PackedLeNet


def step_seconds(
    model: torch.nn.Module, members: int, device, steps: int, sync: bool, channels_last: bool
) -> float:
    """Median seconds of one SGD step at batch 512."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(512, 1, 28, 28, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (512,), device=device)
    target = RepeatTarget(members)((x, y))[1]

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), target).backward()
        opt.step()

    for _ in range(5):
        step()
    times = sorted(timed(step, sync) for _ in range(steps))
    return times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--plain", action="store_true", help="no channels-last")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = device.type == "cuda"
    channels_last = not args.plain
    print(f"machine: {machine()}")
    print(f"channels-last: {channels_last}")
    torch.manual_seed(0)
    models = {
        "LeNet": (LeNet(), 1),
        "deep ensemble of 4 (sequential)": (deep_ensembles(LeNet(), num_estimators=4), 4),
        "deep ensemble of 4 (fused)": (fuse(deep_ensembles(LeNet(), num_estimators=4)), 4),
        "PackedLeNet(alpha=2, M=4)": (PackedLeNet(1, 10, alpha=2, num_estimators=4), 4),
        "MC-Dropout (trains as one network)": (MCDropoutLeNet(), 1),
        "BatchEnsemble (M=4)": (BatchEnsembleLeNet(1, 10, 4), 4),
    }
    base = None
    print(f"{'model':34s} {'ms/step':>8s} {'images/s':>10s} {'x LeNet':>8s}")
    for name, (model, members) in models.items():
        seconds = step_seconds(model, members, device, args.steps, sync, channels_last)
        base = base or seconds
        print(f"{name:34s} {seconds * 1e3:8.2f} {512 / seconds:10,.0f} {seconds / base:8.2f}")


if __name__ == "__main__":
    main()
