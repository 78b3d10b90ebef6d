"""Forward FLOPs of a model by module hooks: what the Pareto study ranks models by.

Why our own counter: the study needs one number per model that is easy to check by hand
(2 FLOPs per multiply-add of every Conv2d, ConvTranspose2d and Linear, nothing else), so that
"1/8 of U-Net w16" means the same thing for every candidate. Batch norm, activations, adds,
pools and resizes are left out (they are memory-bound and fold or fuse on every int8 path).

A Conv2d with input channels C_in, groups g, kernel kh x kw and an output of
N x C_out x H_out x W_out costs ``2 * N * C_out * H_out * W_out * (C_in / g) * kh * kw`` FLOPs
(plus ``N * C_out * H_out * W_out`` for a bias, not counted: it folds into the int8 requant).
"""

from __future__ import annotations

import torch
from torch import nn


def conv_flops(module: nn.Conv2d | nn.ConvTranspose2d, inp: torch.Tensor, out: torch.Tensor) -> int:
    """2 x multiply-adds of one (transposed) convolution call."""
    kh, kw = module.kernel_size
    if isinstance(module, nn.ConvTranspose2d):  # every input pixel scatters a C_out/g x kh x kw patch
        n, c_in, h, w = inp.shape
        return 2 * n * c_in * h * w * (module.out_channels // module.groups) * kh * kw
    n, c_out, h, w = out.shape
    return 2 * n * c_out * h * w * (module.in_channels // module.groups) * kh * kw


def count_flops(model: nn.Module, input_size: tuple[int, int], in_channels: int = 3) -> int:
    """FLOPs of one forward pass of a batch-1 ``in_channels x H x W`` input (model in eval)."""
    total = 0

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            total += conv_flops(module, args[0], out)
        elif isinstance(module, nn.Linear):
            total += 2 * out.numel() * module.in_features

    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, *input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def count_params(model: nn.Module) -> int:
    """Number of parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())
