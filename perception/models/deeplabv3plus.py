"""DeepLabV3+ (Chen et al. 2018) on a light MobileNetV2-style encoder, output stride 16.

Encoder: inverted residual blocks (Sandler et al. 2018: 1x1 expand, 3x3 depthwise, 1x1
linear project, residual when shapes match). The last stride-2 stage is replaced by
dilation 2, so the deepest features are at 1/16 of the input. ReLU is used instead of
ReLU6 so conv-bn-relu patterns fuse in every quantizer.

Head: ASPP (1x1, 3x3 at rates 6/12/18, image pooling), a decoder that merges the 1/4
low-level features, a 1x1 classifier and a bilinear resize to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import ConvBNReLU, SegmentationModel, check_input

# MobileNetV2 stages: (expansion t, output channels c, repeats n, stride s).
_MBV2_STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),  # 1/4: low-level features for the decoder
    (6, 32, 3, 2),
    (6, 64, 4, 2),  # 1/16
    (6, 96, 3, 1),
    (6, 160, 3, 2),  # stride replaced by dilation 2 (output stride 16)
    (6, 320, 1, 1),
]


def _scaled(channels: float, multiple: int = 8) -> int:
    """Round channels to a multiple of 8, never below 90% of the request."""
    out = max(multiple, int(channels + multiple / 2) // multiple * multiple)
    if out < 0.9 * channels:
        out += multiple
    return out


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1, depthwise 3x3 (stride or dilation), project 1x1."""

    def __init__(self, in_c: int, out_c: int, stride: int, expand: int, dilation: int) -> None:
        super().__init__()
        hidden = in_c * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU(in_c, hidden, kernel_size=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, dilation=dilation, groups=hidden),
            ConvBNReLU(hidden, out_c, kernel_size=1, relu=False),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_c == out_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2Encoder(nn.Module):
    """Returns (low-level features at 1/4, deep features at 1/16)."""

    def __init__(self, in_channels: int, width_mult: float) -> None:
        super().__init__()
        c_in = _scaled(32 * width_mult)
        self.stem = ConvBNReLU(in_channels, c_in, stride=2)
        low: list[nn.Module] = []
        high: list[nn.Module] = []
        stride_so_far = 2
        dilation = 1
        for t, c, n, s in _MBV2_STAGES:
            c_out = _scaled(c * width_mult)
            if s == 2 and stride_so_far == 16:
                stride, dilation = 1, dilation * 2
            else:
                stride_so_far *= s
                stride = s
            for i in range(n):
                block = InvertedResidual(c_in, c_out, stride if i == 0 else 1, t, dilation)
                (low if stride_so_far <= 4 else high).append(block)
                c_in = c_out
        self.low = nn.Sequential(*low)
        self.high = nn.Sequential(*high)
        self.low_channels = _scaled(24 * width_mult)
        self.out_channels = c_in

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.low(self.stem(x))
        return low, self.high(low)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3 and image pooling, fused 1x1.

    The pooling branch has no batch norm: at 1x1 spatial size and batch 1 BN cannot train.
    """

    def __init__(self, in_c: int, out_c: int, rates: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_c, out_c, kernel_size=1)] + [ConvBNReLU(in_c, out_c, dilation=r) for r in rates]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_c, out_c, 1), nn.ReLU(inplace=True))
        self.project = ConvBNReLU(out_c * (len(rates) + 2), out_c, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [b(x) for b in self.branches]
        feats.append(self.pool(x).expand(-1, -1, x.shape[-2], x.shape[-1]))
        return self.project(torch.cat(feats, dim=1))


class DeepLabV3Plus(SegmentationModel):
    """DeepLabV3+ returning N x num_classes x H x W logits (any H, W >= 32)."""

    arch = "deeplabv3plus"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        width_mult: float = 0.5,
        aspp_channels: int = 128,
        decoder_channels: int = 128,
        low_level_channels: int = 48,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            num_classes=num_classes,
            width_mult=width_mult,
            aspp_channels=aspp_channels,
            decoder_channels=decoder_channels,
            low_level_channels=low_level_channels,
        )
        self.encoder = MobileNetV2Encoder(in_channels, width_mult)
        self.aspp = ASPP(self.encoder.out_channels, aspp_channels)
        self.low_proj = ConvBNReLU(self.encoder.low_channels, low_level_channels, kernel_size=1)
        self.decoder = nn.Sequential(
            ConvBNReLU(aspp_channels + low_level_channels, decoder_channels),
            ConvBNReLU(decoder_channels, decoder_channels),
        )
        self.head = nn.Conv2d(decoder_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.config["in_channels"], self.arch)
        low, high = self.encoder(x)
        y = self.aspp(high)
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.decoder(torch.cat([self.low_proj(low), y], dim=1))
        y = self.head(y)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
