"""Model cost: parameter count and FLOPs, as ``torch.utils.flop_counter`` counts them.

FLOPs are 2 x the multiply-adds of convolutions and matrix products (activations, pooling and
additions are not counted), the convention of the reference tutorial's tables.
"""

from __future__ import annotations

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
