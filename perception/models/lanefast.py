"""LaneFast: a light lane segmenter shaped for int8 CPU kernels rather than for FLOPs alone.

Why another light model: unet_ds (0.49 GFLOPs) and lanelite (0.69) cost 1/13 and 1/9 of
U-Net w16 but ran only 1.5-1.9x faster in int8 on OpenVINO (docs/lighter.md). OpenVINO's
per-layer counters (benchmarks/profile_int8.py) say where their time goes: bilinear
resizes run in f32 between a dequantize and a quantize (31-48% of the node time), depthwise
convs and 1x1s on few channels run far below the int8 conv's peak (memory-bound), and layers
at full resolution (65% of unet_ds) move the most bytes per FLOP. So, in this design:

- no layer at full resolution: a stride-2 3x3 stem, and the classifier at 1/2 predicting
  the 2x2 full-resolution logits of each pixel (4 x num_classes channels) that a pixel
  shuffle (ESPCN's sub-pixel layer, Shi et al. CVPR 2016) lays out at full resolution: a
  learned x2 up-sampling that moves bytes and computes nothing (a bilinear x2 of the
  1-channel logits, tried first, took half of the int8 node time in f32);
- dense 3x3 convs (conv-bn-relu, residual pairs) on widths that are multiples of 16, the
  shapes the AMX/VNNI int8 kernels run at their best; no depthwise, no 1D factorisation
  (more, smaller layers cost more per-layer overhead than they save in FLOPs here);
- decoder resizes are nearest (OpenVINO keeps them int8) followed by a 3x3 conv that
  smooths them; skips are added (1/2 and 1/4 features carry where the thin markings are);
- context from dilated residual pairs (1, 2, 4) at 1/8.

At width 16 it costs about 0.6 GFLOPs at 160x320 (1/11 of U-Net w16).
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import ConvBNReLU, SegmentationModel, check_divisible, check_input


class ResidualPair(nn.Module):
    """Two 3x3 conv-bn (the first with ReLU), plus the input, then ReLU; keeps the width."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBNReLU(channels, channels, 3, dilation=dilation),
            ConvBNReLU(channels, channels, 3, dilation=dilation, relu=False),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class UpNearestAdd(nn.Module):
    """Nearest x2, 1x1 conv-bn-relu to the skip's width, add the skip, 3x3 conv-bn-relu."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.proj = ConvBNReLU(in_channels, out_channels, 1)
        self.fuse = ConvBNReLU(out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.proj(self.up(x)) + skip)


class LaneFast(SegmentationModel):
    """N x num_classes x H x W logits; H and W must divide by 8."""

    arch = "lanefast"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        width: int = 16,
        mid_blocks: int = 1,
        dilations: list[int] | tuple[int, ...] = (1, 2, 4),
    ) -> None:
        if num_classes < 1 or in_channels < 1 or width < 1:
            raise ValueError(
                f"lanefast: need num_classes, in_channels, width >= 1, got {num_classes}, {in_channels}, {width}"
            )
        if mid_blocks < 0 or not dilations or min(dilations) < 1:
            raise ValueError("lanefast: mid_blocks must be >= 0 and dilations a non-empty list of ints >= 1")
        dilations = [int(d) for d in dilations]
        super().__init__(
            in_channels=in_channels, num_classes=num_classes, width=width, mid_blocks=mid_blocks, dilations=dilations
        )
        w = width
        self.stem = ConvBNReLU(in_channels, w, 3, stride=2)  # 1/2
        self.down2 = ConvBNReLU(w, 2 * w, 3, stride=2)  # 1/4
        self.stage2 = nn.Sequential(*(ResidualPair(2 * w) for _ in range(mid_blocks)))
        self.down3 = ConvBNReLU(2 * w, 4 * w, 3, stride=2)  # 1/8
        self.stage3 = nn.Sequential(*(ResidualPair(4 * w, d) for d in dilations))
        self.up2 = UpNearestAdd(4 * w, 2 * w)  # 1/4
        self.up1 = UpNearestAdd(2 * w, w)  # 1/2
        self.head = nn.Conv2d(w, 4 * num_classes, 3, padding=1)  # 2x2 logits per pixel at 1/2
        self.shuffle = nn.PixelShuffle(2)  # -> num_classes at full resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.config["in_channels"], self.arch)
        check_divisible(x, 8, self.arch)
        x1 = self.stem(x)
        x2 = self.stage2(self.down2(x1))
        x3 = self.stage3(self.down3(x2))
        y = self.up1(self.up2(x3, x2), x1)
        return self.shuffle(self.head(y))
