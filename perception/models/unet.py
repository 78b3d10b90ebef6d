"""U-Net (Ronneberger et al. 2015) with batch norm and same padding: the main lane model.

Shape: ``depth`` max-pool downsamplings, each stage a double 3x3 conv-bn-relu; the decoder
upsamples, concatenates the skip and applies a double conv; a 1x1 head gives the logits.

Decoder upsampling (``upsample``):

- ``"bilinear"`` (default) or ``"nearest"``: resize x2, then a 3x3 conv-bn-relu halving the
  channels. Only Conv2d/BN/ReLU/resize ops, so every int8 path quantizes it.
- ``"transpose"``: the classic 2x2 stride-2 ConvTranspose2d (w16 depth 4 = 1.94M params).
  torch.ao eager int8 ConvTranspose2d is silently wrong on this torch (see QUANT.md):
  use it only in float or through PT2E.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import ConvBNReLU, SegmentationModel, check_divisible, check_input

UPSAMPLE_MODES = ("bilinear", "nearest", "transpose")


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv-bn-relu blocks (children "0" and "1", each fusable)."""
    return nn.Sequential(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


class Up(nn.Module):
    """One decoder stage: upsample x2 halving channels, concat the skip, double conv."""

    def __init__(self, in_channels: int, out_channels: int, mode: str) -> None:
        super().__init__()
        if mode == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        else:
            resize = (
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
                if mode == "bilinear"
                else nn.Upsample(scale_factor=2, mode="nearest")
            )
            self.up = nn.Sequential(resize, ConvBNReLU(in_channels, out_channels))
        self.conv = double_conv(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(SegmentationModel):
    """U-Net returning N x num_classes x H x W logits; H and W must divide by 2**depth."""

    arch = "unet"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        depth: int = 4,
        base_width: int = 16,
        upsample: str = "bilinear",
    ) -> None:
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"unet: unknown upsample {upsample!r}; choose one of {list(UPSAMPLE_MODES)}")
        if depth < 1:
            raise ValueError(f"unet: depth must be >= 1, got {depth}")
        if base_width < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError("unet: base_width, num_classes and in_channels must be >= 1")
        super().__init__(
            in_channels=in_channels,
            num_classes=num_classes,
            depth=depth,
            base_width=base_width,
            upsample=upsample,
        )
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.stem = double_conv(in_channels, widths[0])
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(Up(widths[i + 1], widths[i], upsample) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.config["in_channels"], self.arch)
        check_divisible(x, 2 ** self.config["depth"], self.arch)
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(self.pool(skips[-1])))
        y = skips.pop()
        for block in self.up:
            y = block(y, skips.pop())
        return self.head(y)
