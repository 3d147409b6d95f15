"""Images per second over one augmented MNIST training epoch: fast tensor path vs reference.

Reference pipeline: torchvision's MNIST class with PIL transforms
(RandomCrop(28, padding=4), ToTensor, Normalize) in a DataLoader at num_workers 0 and 2.
Fast path: :class:`tutorial_lib.data.TensorBatchLoader` (batched crop on tensors, no workers).
Both at batch 512, shuffled; the epoch is consumed without a model, so this is the cost of
feeding the model only.

    python benchmarks/data_pipeline.py [--device cuda]
"""

from __future__ import annotations

import argparse

import torch
import torchvision.transforms as T
from common import machine, timed
from torch.utils.data import DataLoader

from tutorial_lib import data


def consume(loader, device: torch.device) -> int:
    n = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        n += y.numel()
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = device.type == "cuda"
    print(f"machine: {machine()}")

    images, labels = data.load_split("MNIST", True)
    images, labels = images.to(device), labels.to(device)
    fast = data.TensorBatchLoader(images, labels, 512, shuffle=True, augment=True)
    consume(fast, device)  # warm-up
    seconds = min(timed(lambda: consume(fast, device), sync) for _ in range(3))
    fast_rate = 60_000 / seconds
    print(f"fast path ({device.type}): {seconds:6.2f} s/epoch  {fast_rate:12,.0f} images/s")

    transform = T.Compose(
        [
            T.RandomCrop(28, padding=4),
            T.ToTensor(),
            T.Normalize((data.MNIST_MEAN,), (data.MNIST_STD,)),
        ]
    )
    dataset = data.torchvision_dataset("MNIST", True, transform=transform)
    best = 0.0
    for workers in args.workers:
        loader = DataLoader(dataset, 512, shuffle=True, num_workers=workers,
                            pin_memory=sync, persistent_workers=False)  # fmt: skip
        seconds = timed(lambda loader=loader: consume(loader, device), sync)
        rate = 60_000 / seconds
        best = max(best, rate)
        print(f"reference, num_workers={workers}: {seconds:6.2f} s/epoch  {rate:12,.0f} images/s")
    print(f"speed-up of the fast path over the reference's best: {fast_rate / best:.1f}x")


if __name__ == "__main__":
    main()
