"""U-Net (Ronneberger et al. 2015) with batch norm and same padding: the main lane model.

Shape: ``depth`` max-pool downsamplings, each stage a double 3x3 conv-bn-relu; the decoder
upsamples, concatenates the skip and applies a double conv; a 1x1 head gives the logits.

Decoder upsampling (``upsample``):

- ``"bilinear"`` (default) or ``"nearest"``: resize x2, then a 3x3 conv-bn-relu halving the
  channels. Only Conv2d/BN/ReLU/resize ops, so every int8 path quantizes it.
- ``"transpose"``: the classic 2x2 stride-2 ConvTranspose2d (w16 depth 4 = 1.94M params).
  torch.ao eager int8 ConvTranspose2d is silently wrong on this torch (see QUANT.md):
  use it only in float or through PT2E.

``channels`` (optional) gives every conv's output width explicitly, in module order
(`conv_names`): what a structurally pruned U-Net (quant/prune.py) needs so that its
checkpoint rebuilds with ``build_model("unet", **arch_kwargs)`` like any other.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import ConvBNReLU, SegmentationModel, check_divisible, check_input

UPSAMPLE_MODES = ("bilinear", "nearest", "transpose")


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv-bn-relu blocks (children "0" and "1", each fusable)."""
    return nn.Sequential(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


def double_conv_widths(in_channels: int, mid: int, out: int) -> nn.Sequential:
    """`double_conv` whose two convs have their own widths (a pruned block)."""
    return nn.Sequential(ConvBNReLU(in_channels, mid), ConvBNReLU(mid, out))


class Up(nn.Module):
    """One decoder stage: upsample x2 to `up_channels`, concat the skip, double conv.

    Unpruned: ``up_channels = mid = out = skip_channels = in_channels // 2``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mode: str,
        skip_channels: int | None = None,
        up_channels: int | None = None,
        mid_channels: int | None = None,
    ) -> None:
        super().__init__()
        skip = out_channels if skip_channels is None else skip_channels
        up = out_channels if up_channels is None else up_channels
        mid = out_channels if mid_channels is None else mid_channels
        if mode == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, up, kernel_size=2, stride=2)
        else:
            resize = (
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
                if mode == "bilinear"
                else nn.Upsample(scale_factor=2, mode="nearest")
            )
            self.up = nn.Sequential(resize, ConvBNReLU(in_channels, up))
        self.conv = double_conv_widths(skip + up, mid, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


def conv_names(depth: int) -> list[str]:
    """Names of the width-bearing convs in module order (the order of ``channels``)."""
    names = ["stem.0", "stem.1"]
    names += [f"down.{i}.{j}" for i in range(depth) for j in (0, 1)]
    names += [f"up.{i}.{part}" for i in range(depth) for part in ("up", "conv.0", "conv.1")]
    return names


def default_channels(depth: int, base_width: int) -> list[int]:
    """The unpruned widths, in `conv_names` order."""
    widths = [base_width * 2**i for i in range(depth + 1)]
    out = [widths[0], widths[0]] + [w for i in range(depth) for w in (widths[i + 1],) * 2]
    out += [w for i in reversed(range(depth)) for w in (widths[i],) * 3]
    return out


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
        channels: list[int] | None = None,
    ) -> None:
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"unet: unknown upsample {upsample!r}; choose one of {list(UPSAMPLE_MODES)}")
        if depth < 1:
            raise ValueError(f"unet: depth must be >= 1, got {depth}")
        if base_width < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError("unet: base_width, num_classes and in_channels must be >= 1")
        config = dict(
            in_channels=in_channels, num_classes=num_classes, depth=depth, base_width=base_width, upsample=upsample
        )
        if channels is not None:  # only pruned models carry it: older checkpoints' kwargs stay as they were
            channels = [int(c) for c in channels]
            want = len(conv_names(depth))
            if len(channels) != want or min(channels) < 1:
                raise ValueError(f"unet: channels must list {want} positive widths (one per conv), got {channels}")
            config["channels"] = channels
        super().__init__(**config)
        c = iter(channels or default_channels(depth, base_width))
        self.stem = double_conv_widths(in_channels, next(c), next(c))
        stage_out = [self.stem[1][0].out_channels]
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList()
        for _ in range(depth):
            self.down.append(double_conv_widths(stage_out[-1], next(c), next(c)))
            stage_out.append(self.down[-1][1][0].out_channels)
        self.up = nn.ModuleList()
        y = stage_out[-1]
        for i in reversed(range(depth)):
            up, mid, out = next(c), next(c), next(c)
            self.up.append(Up(y, out, upsample, skip_channels=stage_out[i], up_channels=up, mid_channels=mid))
            y = out
        self.head = nn.Conv2d(y, num_classes, kernel_size=1)

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
