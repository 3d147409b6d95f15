"""Model cost: parameter count and FLOPs, as ``torch.utils.flop_counter`` counts them, and the
inference throughput measured on this machine.

FLOPs are 2 x the multiply-adds of convolutions and matrix products (activations, pooling and
additions are not counted), the convention of the reference tutorial's tables.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def complexity(
    model: nn.Module, input_size: tuple[int, ...] = (1, 1, 28, 28), batch_size: int = 2048
) -> dict[str, int]:
    """Parameters and FLOPs of one forward pass.

    Args:
        model: any module taking a tensor of ``input_size``.
        input_size: shape of the probe batch ``(B, C, H, W)``; FLOPs are divided by ``B``.
        batch_size: also report the FLOPs of a batch of this size (2048 in the reference).

    Returns:
        ``{"params", "flops_per_image", "flops_batch", "batch_size"}`` as integers.
    """
    params = sum(p.numel() for p in model.parameters())
    device = next(model.parameters(), torch.zeros(())).device  # a parameter-free module: CPU
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(input_size, device=device))
    finally:
        model.train(was_training)
    per_image = counter.get_total_flops() // input_size[0]
    return {
        "params": params,
        "flops_per_image": per_image,
        "flops_batch": per_image * batch_size,
        "batch_size": batch_size,
    }


@torch.no_grad()
def throughput(
    model: nn.Module, images: torch.Tensor, batch_size: int = 2048, repeats: int = 3
) -> float:
    """Inference images per second of ``model`` on ``images`` (N, C, H, W), in eval mode, in
    batches of ``batch_size``: the median of ``repeats`` timed passes after one warm-up pass.

    Raises:
        ValueError: no images, or ``repeats`` < 1.
    """
    if images.shape[0] == 0 or repeats < 1:
        raise ValueError(f"throughput needs images and repeats >= 1, got {images.shape[0]} images "
                         f"and repeats={repeats}.")  # fmt: skip
    device = next(model.parameters(), torch.zeros(())).device
    was_training = model.training
    model.eval()
    batches = [b.to(device) for b in images.split(batch_size)]
    times = []
    try:
        for _ in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for batch in batches:
                model(batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return images.shape[0] / statistics.median(times[1:])
