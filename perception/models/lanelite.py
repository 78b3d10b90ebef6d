"""LaneLite: a light lane-marking segmenter in the ERFNet / TwinLiteNet line, written by us.

What it follows, and where it departs:

- ERFNet (Romera et al., "ERFNet: Efficient Residual Factorized ConvNet for Real-time
  Semantic Segmentation", IEEE T-ITS 19(1), 2018): downsampling blocks that concatenate a
  stride-2 3x3 conv with a 2x2 max-pool (from ENet), and "non-bottleneck-1D" residual
  blocks, each 3x3 conv factorised into 3x1 + 1x3, the second pair dilated (2, 4, 8, 16 at
  1/8 resolution) for context. ERFNet is a common backbone of lane detectors (ENet-SAD,
  Hou et al. ICCV 2019, arXiv 1908.00821, compares against it): 1D kernels suit long thin
  markings.
- TwinLiteNet (Che et al. 2023, arXiv 2307.10705: 0.4M parameters for drivable area and lane
  lines on BDD100K): a decoder far lighter than the encoder, a few cheap up-sampling stages
  back to full resolution with shallow features added in.
- Ours: BN + ReLU after every conv (conv-bn-relu, fusable; no PReLU; see `Downsampler`), skips added rather than
  concatenated (lanes are 1-3 px wide at 160x320: the 1/2 and 1/4 features carry where they
  are), bilinear resize + conv instead of transposed convs (every int8 path takes it), and
  the classifier a 3x3 conv at full resolution so mask edges stay sharp. One lane task only,
  not TwinLiteNet's two heads.

At width 16 it costs about 0.7 GFLOPs at 160x320, about 1/9 of U-Net w16.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import ConvBNReLU, SegmentationModel, check_divisible, check_input


def _resize() -> nn.Module:
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)


class Downsampler(nn.Module):
    """Halve H and W: [3x3 stride-2 conv-bn-relu (out - in channels) | 2x2 max-pool], concatenated.

    ERFNet puts one BN + ReLU after the concatenation; here the BN sits on the conv branch, so it
    folds into the conv: OpenVINO 2026.4's CPU plugin crashes (segfault) compiling the int8 QDQ
    graph of a BN after such a concat, and the pooled branch is already a ReLU output past the
    first block.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(f"lanelite: a downsampler must widen ({in_channels} -> {out_channels})")
        self.conv = ConvBNReLU(in_channels, out_channels - in_channels, 3, stride=2)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


class NonBottleneck1D(nn.Module):
    """Residual block of four 1D convs (3x1, 1x3, 3x1 dilated, 1x3 dilated); keeps the width."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        d = dilation
        self.body = nn.Sequential(
            conv_bn_1d(channels, (3, 1), 1),
            conv_bn_1d(channels, (1, 3), 1),
            conv_bn_1d(channels, (3, 1), d),
            conv_bn_1d(channels, (1, 3), d, relu=False),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


def conv_bn_1d(channels: int, kernel: tuple[int, int], dilation: int, relu: bool = True) -> nn.Sequential:
    """A k x 1 or 1 x k conv-bn(-relu) with same padding (children "0", "1", "2")."""
    pad = (dilation * (kernel[0] - 1) // 2, dilation * (kernel[1] - 1) // 2)
    dil = (dilation if kernel[0] > 1 else 1, dilation if kernel[1] > 1 else 1)
    layers: list[nn.Module] = [
        nn.Conv2d(channels, channels, kernel, padding=pad, dilation=dil, bias=False),
        nn.BatchNorm2d(channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UpAdd(nn.Module):
    """Bilinear x2, 1x1 conv-bn-relu to the skip's width, add the skip."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Sequential(_resize(), ConvBNReLU(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.up(x) + skip


class LaneLite(SegmentationModel):
    """N x num_classes x H x W logits; H and W must divide by 8."""

    arch = "lanelite"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        width: int = 16,
        mid_blocks: int = 2,
        dilations: list[int] | tuple[int, ...] = (2, 4, 8, 16),
    ) -> None:
        if num_classes < 1 or not 0 < in_channels < width:
            raise ValueError(f"lanelite: need num_classes >= 1 and 1 <= in_channels < width, got {in_channels}")
        if mid_blocks < 0 or not dilations or min(dilations) < 1:
            raise ValueError("lanelite: mid_blocks must be >= 0 and dilations a non-empty list of ints >= 1")
        dilations = [int(d) for d in dilations]
        super().__init__(
            in_channels=in_channels, num_classes=num_classes, width=width, mid_blocks=mid_blocks, dilations=dilations
        )
        w = width
        self.down1 = Downsampler(in_channels, w)  # 1/2
        self.down2 = Downsampler(w, 2 * w)  # 1/4
        self.stage2 = nn.Sequential(*(NonBottleneck1D(2 * w) for _ in range(mid_blocks)))
        self.down3 = Downsampler(2 * w, 4 * w)  # 1/8
        self.stage3 = nn.Sequential(*(NonBottleneck1D(4 * w, d) for d in dilations))
        self.up2 = UpAdd(4 * w, 2 * w)  # back to 1/4
        self.refine2 = NonBottleneck1D(2 * w)
        self.up1 = UpAdd(2 * w, w)  # back to 1/2
        self.refine1 = ConvBNReLU(w, w)
        self.head = nn.Sequential(_resize(), nn.Conv2d(w, num_classes, 3, padding=1))  # full resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.config["in_channels"], self.arch)
        check_divisible(x, 8, self.arch)
        x1 = self.down1(x)
        x2 = self.stage2(self.down2(x1))
        x3 = self.stage3(self.down3(x2))
        y = self.refine2(self.up2(x3, x2))
        y = self.refine1(self.up1(y, x1))
        return self.head(y)
