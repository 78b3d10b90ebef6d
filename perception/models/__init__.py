"""The model zoo: one registry, one constructor.

Every model maps N x 3 x H x W normalised float images to N x C x H x W logits at the
input resolution (C = ``num_classes``, 1 for the binary lane task) and stores its
constructor arguments in ``model.config`` so a checkpoint can rebuild it with
``build_model(model.arch, **model.config)``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ._common import SegmentationModel
from .deeplabv3plus import DeepLabV3Plus
from .enet import ENet
from .lanefast import LaneFast
from .lanelite import LaneLite
from .segformer import SegFormer, transformers_available
from .unet import UNet
from .unet_ds import UNetDS


class UnknownArchError(KeyError):
    """An architecture name that is not in the registry (a KeyError with a readable message)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_MODELS = (UNet, UNetDS, ENet, LaneLite, LaneFast, DeepLabV3Plus, SegFormer)
_REGISTRY: dict[str, type[SegmentationModel]] = {cls.arch: cls for cls in _MODELS}


def available_archs() -> list[str]:
    """Names accepted by `build_model` (SegFormer is listed even without `transformers`)."""
    return sorted(_REGISTRY)


def build_model(arch: str, **kwargs: Any) -> nn.Module:
    """Build a randomly initialised model by name, e.g. ``build_model("unet", base_width=32)``.

    Raises KeyError listing the valid names for an unknown ``arch``, TypeError for an
    argument the architecture does not take.
    """
    try:
        cls = _REGISTRY[arch.lower()]
    except KeyError:
        raise UnknownArchError(f"unknown architecture {arch!r}; available: {', '.join(available_archs())}") from None
    return cls(**kwargs)


__all__ = [
    "DeepLabV3Plus",
    "ENet",
    "LaneFast",
    "LaneLite",
    "SegFormer",
    "SegmentationModel",
    "UNet",
    "UNetDS",
    "UnknownArchError",
    "available_archs",
    "build_model",
    "transformers_available",
]
