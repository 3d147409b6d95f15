"""Time of ``evaluate_predictions`` on 10,000 ID + 10,000 OOD samples, M = 8 members, 10 classes.

python benchmarks/metrics.py
"""

from __future__ import annotations

import torch
from common import machine, timed

from tutorial_lib.metrics import evaluate_predictions


def main() -> None:
    print(f"machine: {machine()}")
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 10, (10_000,), generator=g)
    logits = torch.randn(10_000, 8, 10, generator=g) * 2
    logits[torch.arange(10_000), :, targets] += 3
    probs, ood = logits.softmax(-1), torch.randn(10_000, 8, 10, generator=g).softmax(-1)
    evaluate_predictions(probs, targets, ood)  # warm-up
    times = sorted(timed(lambda: evaluate_predictions(probs, targets, ood)) for _ in range(5))
    print(f"evaluate_predictions, 10k ID + 10k OOD, M=8: median {times[2]:.3f} s, "
          f"max {times[-1]:.3f} s (target < 1 s)")  # fmt: skip


if __name__ == "__main__":
    main()
