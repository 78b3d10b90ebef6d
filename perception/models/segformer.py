"""SegFormer (Xie et al. 2021) through Hugging Face `transformers`, randomly initialised.

An optional model: `transformers` is the ``zoo`` extra and is imported only when a
SegFormer is built, so the rest of the zoo works without it. Nothing is downloaded: the
network is built from a SegformerConfig with the published B0/B1 sizes. The decode head
predicts at 1/4 resolution; logits are resized bilinearly to the input size.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._common import SegmentationModel, check_input

INSTALL_HINT = "pip install 'laneloop[zoo]'"

# Encoder sizes of the published variants (Xie et al. 2021, table 6).
VARIANTS: dict[str, dict[str, Any]] = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "decoder_hidden_size": 256},
}


def transformers_available() -> bool:
    """True when the optional `transformers` package can be imported."""
    return importlib.util.find_spec("transformers") is not None


class SegFormer(SegmentationModel):
    """SegFormer returning N x num_classes x H x W logits (needs `transformers`)."""

    arch = "segformer"

    def __init__(self, in_channels: int = 3, num_classes: int = 1, variant: str = "b0") -> None:
        if variant not in VARIANTS:
            raise ValueError(f"segformer: unknown variant {variant!r}; choose one of {list(VARIANTS)}")
        if not transformers_available():
            raise ImportError(f"segformer needs the optional `transformers` package ({INSTALL_HINT})")
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        super().__init__(in_channels=in_channels, num_classes=num_classes, variant=variant)
        config = SegformerConfig(
            num_channels=in_channels,
            num_labels=num_classes,
            num_encoder_blocks=4,
            depths=[2, 2, 2, 2],
            sr_ratios=[8, 4, 2, 1],
            num_attention_heads=[1, 2, 5, 8],
            patch_sizes=[7, 3, 3, 3],
            strides=[4, 2, 2, 2],
            mlp_ratios=[4, 4, 4, 4],
            **VARIANTS[variant],
        )
        self.net: nn.Module = SegformerForSemanticSegmentation(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.config["in_channels"], self.arch)
        logits = self.net(pixel_values=x, return_dict=True).logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
