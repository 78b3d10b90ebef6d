"""ENet (Paszke et al. 2016, arXiv 1606.02147), written from the paper.

A small encoder (initial block + bottleneck stages 1-3 at 1/8 resolution) and a smaller
decoder (stages 4-5) that undoes the downsampling with max-unpooling, using the indices
saved by the encoder's max-pools. PReLU in the encoder, ReLU in the decoder.

``upsample="transpose"`` (default, as in the paper) uses transposed convolutions in the
upsampling bottlenecks and the final full convolution; ``"bilinear"``/``"nearest"`` use a
resize followed by a 3x3 convolution instead (friendlier to eager int8, see QUANT.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import SegmentationModel, check_divisible, check_input

UPSAMPLE_MODES = ("transpose", "bilinear", "nearest")


def _act(channels: int, relu: bool) -> nn.Module:
    return nn.ReLU(inplace=True) if relu else nn.PReLU(channels)


def _conv_bn_act(
    in_c: int, out_c: int, kernel: tuple[int, int], relu: bool, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    padding = (dilation * (kernel[0] - 1) // 2, dilation * (kernel[1] - 1) // 2)
    return nn.Sequential(
        nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_c),
        _act(out_c, relu),
    )


def _up2(in_c: int, out_c: int, mode: str, bias: bool = False) -> nn.Module:
    """x2 upsampling that changes channels: transposed conv 3x3 or resize + conv 3x3."""
    if mode == "transpose":
        return nn.ConvTranspose2d(in_c, out_c, 3, stride=2, padding=1, output_padding=1, bias=bias)
    resize = (
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        if mode == "bilinear"
        else nn.Upsample(scale_factor=2, mode="nearest")
    )
    return nn.Sequential(resize, nn.Conv2d(in_c, out_c, 3, padding=1, bias=bias))


class InitialBlock(nn.Module):
    """3x3 stride-2 conv (16 - in channels filters) beside a 2x2 max-pool, concatenated."""

    def __init__(self, in_channels: int, out_channels: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class Bottleneck(nn.Module):
    """Residual bottleneck: 1x1 reduce, main conv (regular, dilated or 5x1+1x5), 1x1 expand.

    ``kind`` is "regular", "dilated" or "asymmetric"; channels are kept.
    """

    def __init__(
        self,
        channels: int,
        kind: str = "regular",
        dilation: int = 1,
        dropout: float = 0.1,
        relu: bool = False,
        ratio: int = 4,
    ) -> None:
        super().__init__()
        inner = channels // ratio
        if kind == "asymmetric":
            middle: nn.Module = nn.Sequential(
                nn.Conv2d(inner, inner, (5, 1), padding=(2, 0), bias=False),
                _conv_bn_act(inner, inner, (1, 5), relu),
            )
        elif kind in ("regular", "dilated"):
            middle = _conv_bn_act(inner, inner, (3, 3), relu, dilation=dilation)
        else:
            raise ValueError(f"enet: unknown bottleneck kind {kind!r}")
        self.ext = nn.Sequential(
            _conv_bn_act(channels, inner, (1, 1), relu),
            middle,
            nn.Conv2d(inner, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.Dropout2d(dropout),
        )
        self.act = _act(channels, relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.ext(x))


class DownBottleneck(nn.Module):
    """Halves H and W: max-pool (indices kept) + zero channel padding beside a conv branch."""

    def __init__(self, in_c: int, out_c: int, dropout: float, ratio: int = 4) -> None:
        super().__init__()
        inner = in_c // ratio
        self.extra_channels = out_c - in_c
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.ext = nn.Sequential(
            _conv_bn_act(in_c, inner, (2, 2), relu=False, stride=2),
            _conv_bn_act(inner, inner, (3, 3), relu=False),
            nn.Conv2d(inner, out_c, 1, bias=False),
            nn.BatchNorm2d(out_c),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU(out_c)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        main, indices = self.pool(x)
        main = F.pad(main, (0, 0, 0, 0, 0, self.extra_channels))
        return self.act(main + self.ext(x)), indices


class UpBottleneck(nn.Module):
    """Doubles H and W: 1x1 conv + max-unpool (encoder indices) beside an upsampling branch."""

    def __init__(self, in_c: int, out_c: int, dropout: float, mode: str, ratio: int = 4) -> None:
        super().__init__()
        inner = in_c // ratio
        self.main = nn.Sequential(nn.Conv2d(in_c, out_c, 1, bias=False), nn.BatchNorm2d(out_c))
        self.unpool = nn.MaxUnpool2d(2)
        self.ext = nn.Sequential(
            _conv_bn_act(in_c, inner, (1, 1), relu=True),
            _up2(inner, inner, mode),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, out_c, 1, bias=False),
            nn.BatchNorm2d(out_c),
            nn.Dropout2d(dropout),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, indices: torch.Tensor, size: torch.Size) -> torch.Tensor:
        main = self.unpool(self.main(x), indices, output_size=size)
        return self.act(main + self.ext(x))


class ENet(SegmentationModel):
    """ENet returning N x num_classes x H x W logits; H and W must divide by 8."""

    arch = "enet"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        upsample: str = "transpose",
        dropout: float = 0.1,
    ) -> None:
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"enet: unknown upsample {upsample!r}; choose one of {list(UPSAMPLE_MODES)}")
        if not 0 < in_channels < 16:
            raise ValueError(f"enet: in_channels must be 1..15, got {in_channels}")
        super().__init__(in_channels=in_channels, num_classes=num_classes, upsample=upsample, dropout=dropout)
        p1 = dropout / 10  # the paper: 0.01 in stage 1, 0.1 afterwards
        self.initial = InitialBlock(in_channels, 16)
        self.down1 = DownBottleneck(16, 64, p1)
        self.stage1 = nn.Sequential(*(Bottleneck(64, dropout=p1) for _ in range(4)))
        self.down2 = DownBottleneck(64, 128, dropout)
        # Stage 2 and stage 3 share a shape; stage 2 starts with the downsampling bottleneck.
        self.stage2 = self._stage(128, dropout)
        self.stage3 = self._stage(128, dropout)
        self.up4 = UpBottleneck(128, 64, dropout, upsample)
        self.stage4 = nn.Sequential(*(Bottleneck(64, dropout=dropout, relu=True) for _ in range(2)))
        self.up5 = UpBottleneck(64, 16, dropout, upsample)
        self.stage5 = Bottleneck(16, dropout=dropout, relu=True)
        self.full_conv = _up2(16, num_classes, upsample, bias=True)

    @staticmethod
    def _stage(channels: int, dropout: float) -> nn.Sequential:
        spec = [
            ("regular", 1),
            ("dilated", 2),
            ("asymmetric", 1),
            ("dilated", 4),
            ("regular", 1),
            ("dilated", 8),
            ("asymmetric", 1),
            ("dilated", 16),
        ]
        return nn.Sequential(*(Bottleneck(channels, kind, d, dropout) for kind, d in spec))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.config["in_channels"], self.arch)
        check_divisible(x, 8, self.arch)
        x0 = self.initial(x)
        x1, idx1 = self.down1(x0)
        x1 = self.stage1(x1)
        x2, idx2 = self.down2(x1)
        x2 = self.stage3(self.stage2(x2))
        y = self.stage4(self.up4(x2, idx2, x1.shape[-2:]))
        y = self.stage5(self.up5(y, idx1, x0.shape[-2:]))
        return self.full_conv(y)
