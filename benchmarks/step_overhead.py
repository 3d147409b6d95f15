"""Lightning's cost per training step, apart from the model's compute.

Trains a tiny linear classifier (16 inputs, 10 classes: almost no compute) for 2 epochs of 400
steps, once with a plain PyTorch loop and once through the course's trainer with the training loss
logged every 1, 10 (the trainer's default) and 50 steps, and prints the milliseconds per step.
The difference to the plain loop is what the Lightning loop, its hooks and the logging add to
every step of every model, whatever its size.

    python benchmarks/step_overhead.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

from tutorial_lib.speed import share_cpu_fairly

share_cpu_fairly()

import torch  # noqa: E402
from common import machine  # noqa: E402
from torch import nn  # noqa: E402

from tutorial_lib.data import TensorBatchLoader  # noqa: E402
from tutorial_lib.routine import ClassificationRoutine  # noqa: E402
from tutorial_lib.trainer import make_trainer  # noqa: E402

STEPS, EPOCHS, BATCH = 400, 2, 128


def tiny_model() -> nn.Module:
    """(B, 1, 4, 4) -> (B, 10): a linear layer, so that a step is nearly all overhead."""
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 10))


def plain_loop(loader: TensorBatchLoader) -> float:
    """Milliseconds per step of forward, loss, backward and an Adam step, nothing else."""
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters())
    start = time.perf_counter()
    for _ in range(EPOCHS):
        for inputs, targets in loader:
            loss = nn.functional.cross_entropy(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return 1000 * (time.perf_counter() - start) / (EPOCHS * len(loader))


def lightning_loop(loader: TensorBatchLoader, log_every: int) -> float:
    """Milliseconds per step through ``make_trainer`` (TensorBoard logs, divergence guard)."""
    routine = ClassificationRoutine(tiny_model(), 10)
    with tempfile.TemporaryDirectory() as logs:
        trainer = make_trainer(EPOCHS, log_dir=logs, enable_progress_bar=False,
                               log_every_n_steps=log_every)  # fmt: skip
        start = time.perf_counter()
        trainer.fit(routine, loader)
        return 1000 * (time.perf_counter() - start) / (EPOCHS * len(loader))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`")  # none here, on purpose
    print(f"machine: {machine()}")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (STEPS * BATCH, 4, 4), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (STEPS * BATCH,), generator=g)
    loader = TensorBatchLoader(images, labels, BATCH)
    for repeat in range(1, args.repeats + 1):
        figures = {"plain PyTorch loop": plain_loop(loader)}
        for every in (1, 10, 50):
            figures[f"trainer, loss logged every {every} steps"] = lightning_loop(loader, every)
        for name, ms in figures.items():
            print(f"repeat {repeat}: {name:38s} {ms:.2f} ms/step")


if __name__ == "__main__":
    main()
