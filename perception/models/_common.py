"""Building blocks shared by the zoo models.

Blocks are plain ``Conv2d -> BatchNorm2d -> ReLU`` sequences so that eager fusion
(``torch.ao.quantization.fuse_modules``) and PT2E quantizers see the usual patterns.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    """3x3 (or k x k) convolution, batch norm, ReLU: children named "0", "1", "2"."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        relu: bool = True,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def check_divisible(x: torch.Tensor, multiple: int, arch: str) -> None:
    """Raise ValueError naming the padded size when H or W is not a multiple of `multiple`."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % multiple or w % multiple:
        ph = -(-h // multiple) * multiple
        pw = -(-w // multiple) * multiple
        raise ValueError(
            f"{arch}: input size {h}x{w} (HxW) is not divisible by {multiple}; pad or resize the input to {ph}x{pw}"
        )


def check_input(x: torch.Tensor, in_channels: int, arch: str) -> None:
    """Raise ValueError for an input that is not N x in_channels x H x W."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{arch}: expected input of shape N x {in_channels} x H x W, got {tuple(x.shape)}")


class SegmentationModel(nn.Module):
    """Base class: remembers its constructor arguments in ``config`` (plain data).

    A checkpoint stores ``arch`` and ``config`` so that ``build_model(arch, **config)``
    rebuilds the same network.
    """

    arch: str = ""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.config: dict[str, Any] = dict(config)

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits in eval mode without autograd (sets the model to eval)."""
        self.eval()
        return self(x)
