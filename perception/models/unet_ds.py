"""U-Net with depthwise-separable blocks and a narrow decoder: the U-Net made light by design.

Why: in the default U-Net w16 almost all of the 6.4 GFLOPs (160x320) are dense 3x3
convolutions, and half of them sit in the decoder at high resolution. Here every 3x3
convolution after the first is depthwise-separable (a 3x3 depthwise conv-bn-relu, then a
1x1 pointwise conv-bn-relu, as in MobileNet, Howard et al. 2017, arXiv 1704.04861), which
costs about 1/9 + 1/C of the dense one, and decoder stage i has ``decoder_ratio`` times the
encoder's width at that scale (skips keep the encoder's width).

Only Conv2d / BatchNorm2d / ReLU / max-pool / bilinear resize / concat: every int8 path
(PT2E X86InductorQuantizer, ONNX Runtime QDQ, OpenVINO) takes it, like the default U-Net.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import ConvBNReLU, SegmentationModel
from .unet import UNet


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 conv-bn-relu ("dw") then pointwise 1x1 conv-bn-relu ("pw")."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.dw = ConvBNReLU(in_channels, in_channels, 3, groups=in_channels)
        self.pw = ConvBNReLU(in_channels, out_channels, 1)


def separable_pair(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two separable convs: the depthwise-separable double conv of a U-Net stage."""
    return nn.Sequential(SeparableConv(in_channels, out_channels), SeparableConv(out_channels, out_channels))


class UpDS(nn.Module):
    """Decoder stage: bilinear x2, 1x1 conv to the decoder width, concat the skip, two separable convs."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), ConvBNReLU(in_channels, out_channels, 1)
        )
        self.conv = separable_pair(skip_channels + out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNetDS(SegmentationModel):
    """Depthwise-separable U-Net: N x num_classes x H x W logits; H and W must divide by 2**depth."""

    arch = "unet_ds"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        depth: int = 4,
        base_width: int = 16,
        decoder_ratio: float = 0.5,
    ) -> None:
        if depth < 1:
            raise ValueError(f"unet_ds: depth must be >= 1, got {depth}")
        if base_width < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError("unet_ds: base_width, num_classes and in_channels must be >= 1")
        if not 0 < decoder_ratio <= 1:
            raise ValueError(f"unet_ds: decoder_ratio must be in (0, 1], got {decoder_ratio}")
        super().__init__(
            in_channels=in_channels,
            num_classes=num_classes,
            depth=depth,
            base_width=base_width,
            decoder_ratio=decoder_ratio,
        )
        widths = [base_width * 2**i for i in range(depth + 1)]
        dec = [max(4, round(w * decoder_ratio)) for w in widths]
        # The stem's first conv stays dense: a depthwise conv over 3 RGB channels learns little.
        self.stem = nn.Sequential(ConvBNReLU(in_channels, widths[0]), SeparableConv(widths[0], widths[0]))
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(separable_pair(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList()
        y = widths[depth]
        for i in reversed(range(depth)):
            self.up.append(UpDS(y, widths[i], dec[i]))
            y = dec[i]
        self.head = nn.Conv2d(y, num_classes, kernel_size=1)

    forward = UNet.forward  # the same encoder-decoder walk over stem, down, up and head
