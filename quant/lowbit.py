"""Weight-only low-bit (2-8 bit) fake quantization of convolutions, for QAT studies.

Why our own: torchao's low-bit QAT targets Linear/embedding layers of language models; a
U-Net is all Conv2d. This is a small, tested piece: each Conv2d weight is replaced, through
``torch.nn.utils.parametrize``, by its symmetric per-output-channel quantized value
``clamp(round(w / s), -qmax, qmax) * s`` (``qmax = 2**(bits-1) - 1``), with the
straight-through estimator for gradients. The scale ``s`` of each channel is chosen among
clipping ratios of max|w| to minimise the squared error, which matters at 2-3 bits, where
max-abs scaling wastes most levels on rare large weights.

Activations stay float (weight-only), so this measures what storing the weights in
``bits`` costs in accuracy. BatchNorm after a conv folds exactly into the per-channel scale
at deployment, so quantizing the unfolded conv weight is what deployment would store.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def quantize_weight(w: torch.Tensor, bits: int, ratios: tuple[float, ...] = CLIP_RATIOS) -> torch.Tensor:
    """Symmetric per-output-channel fake quantization (values on the grid, float dtype)."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in 2..8, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    flat = w.detach().reshape(w.shape[0], -1)
    amax = flat.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
    best_err = torch.full_like(amax, float("inf"))
    best_scale = amax / qmax
    for r in ratios:
        scale = amax * r / qmax
        err = ((torch.clamp(torch.round(flat / scale), -qmax, qmax) * scale - flat) ** 2).sum(dim=1, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
    scale = best_scale.reshape(-1, *([1] * (w.dim() - 1)))
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale


class WeightFakeQuant(nn.Module):
    """Parametrization: the forward weight is quantized, gradients pass straight through."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + (quantize_weight(w, self.bits) - w).detach()


def apply_weight_fake_quant(model: nn.Module, bits: int) -> nn.Module:
    """Fake-quantize every Conv2d/ConvTranspose2d weight of `model` in place; returns it."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            parametrize.register_parametrization(module, "weight", WeightFakeQuant(bits))
    return model


def packed_size_bytes(model: nn.Module, bits: int) -> int:
    """Bytes to store `model` with `bits`-bit conv weights, BN folded into the convolutions.

    Conv weights at `bits` per value, plus per output channel a float32 scale and a float32
    bias (BN folded); any other parameter (none in the zoo's U-Net) as float32.
    """
    total_bits = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            w = module.weight
            out_ch = w.shape[1] if isinstance(module, nn.ConvTranspose2d) else w.shape[0]
            total_bits += w.numel() * bits + out_ch * 2 * 32
        elif isinstance(module, nn.Linear):
            total_bits += sum(p.numel() for p in module.parameters()) * 32
    return (total_bits + 7) // 8


__all__ = ["WeightFakeQuant", "apply_weight_fake_quant", "packed_size_bytes", "quantize_weight"]
