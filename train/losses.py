"""Segmentation losses by name: BCE, soft Dice, BCE+Dice for the binary lane task, CE (and
CE+Dice) for the multi-class one.

Every loss maps ``(logits, target)`` to a scalar:

- binary: logits N x 1 x H x W, target float N x 1 x H x W of {0, 1} (`dataset.reader`);
- multi-class: logits N x C x H x W, target int64 N x H x W of class indices, where
  ``ignore_index`` (255, `dataset.reader.IGNORE_INDEX`) marks pixels that count nowhere.

Why several: lane markings are ~3 % of the pixels. Plain BCE is dominated by the easy
background and under-predicts thin, distant markings; ``pos_weight`` (BCE) re-weights
the positives; Dice optimises an overlap ratio directly, so the class balance does not
matter, but its gradient is noisy early on; BCE+Dice combines the stable start of BCE
with the overlap objective of Dice.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = 255  # same value as dataset.reader.IGNORE_INDEX (kept here: losses do not import data code)


def _check_binary(logits: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(
            f"{name}: expects one logit channel (binary task), got logits of shape {tuple(logits.shape)} "
            "(use --loss ce for a multi-class task)"
        )
    if target.shape != logits.shape:
        raise ValueError(f"{name}: target shape {tuple(target.shape)} differs from logits {tuple(logits.shape)}")


def _check_multiclass(logits: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if logits.dim() != 4 or logits.shape[1] < 2:
        raise ValueError(
            f"{name}: expects N x C x H x W logits with C >= 2 (multi-class task), got {tuple(logits.shape)} "
            "(use --loss bce, dice or bce+dice for the binary task)"
        )
    if target.dim() != 3 or target.shape[0] != logits.shape[0] or target.shape[1:] != logits.shape[2:]:
        raise ValueError(f"{name}: target must be N x H x W class indices, got {tuple(target.shape)}")


class BCELoss(nn.Module):
    """Binary cross-entropy on logits; ``pos_weight`` > 1 weighs lane pixels up."""

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_binary(logits, target, "bce")
        pw = None if self.pos_weight is None else logits.new_tensor([self.pos_weight])
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)


class DiceLoss(nn.Module):
    """Soft Dice loss, ``1 - (2 Σ p·t + s) / (Σ p + Σ t + s)``, pooled over the whole batch.

    Pooling over the batch (not per image) keeps frames with few lane pixels from
    dominating, and makes a batch without any lane pixel harmless (loss ~0 when nothing
    is predicted). Binary: p = sigmoid(logits). Multi-class: p = softmax, one Dice per class
    (classes present in neither truth nor prediction contribute ~0), averaged; pixels equal
    to ``ignore_index`` are left out.
    """

    def __init__(self, smooth: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:
            _check_binary(logits, target, "dice")
            prob = torch.sigmoid(logits)
            inter = (prob * target).sum()
            return 1 - (2 * inter + self.smooth) / (prob.sum() + target.sum() + self.smooth)
        _check_multiclass(logits, target, "dice")
        valid = (target != self.ignore_index).unsqueeze(1)
        prob = torch.softmax(logits, dim=1) * valid
        onehot = F.one_hot(torch.where(valid.squeeze(1), target, 0), logits.shape[1]).permute(0, 3, 1, 2)
        onehot = onehot.to(prob.dtype) * valid
        dims = (0, 2, 3)
        inter = (prob * onehot).sum(dims)
        dice = (2 * inter + self.smooth) / (prob.sum(dims) + onehot.sum(dims) + self.smooth)
        return 1 - dice.mean()


class CELoss(nn.Module):
    """Cross-entropy over class indices for the multi-class task; ``ignore_index`` skipped."""

    def __init__(self, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_multiclass(logits, target, "ce")
        return F.cross_entropy(logits, target, ignore_index=self.ignore_index)


class SumLoss(nn.Module):
    """Sum of losses (e.g. BCE + Dice), each weighted by 1."""

    def __init__(self, *losses: nn.Module) -> None:
        super().__init__()
        self.losses = nn.ModuleList(losses)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum((loss(logits, target) for loss in self.losses), start=logits.new_zeros(()))


#: name -> (task the loss serves, constructor taking pos_weight).
LOSSES: dict[str, tuple[str, Callable[[float | None], nn.Module]]] = {
    "bce": ("binary", lambda pw: BCELoss(pw)),
    "dice": ("binary", lambda pw: DiceLoss()),
    "bce+dice": ("binary", lambda pw: SumLoss(BCELoss(pw), DiceLoss())),
    "ce": ("multiclass", lambda pw: CELoss()),
    "ce+dice": ("multiclass", lambda pw: SumLoss(CELoss(), DiceLoss())),
}


def build_loss(name: str, task: str = "binary", pos_weight: float | None = None) -> nn.Module:
    """The loss called `name` for `task` ("binary" | "multiclass").

    Raises KeyError listing the valid names for an unknown name, ValueError for a loss
    that does not serve the task or a pos_weight given to a loss without BCE.
    """
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; available: {', '.join(LOSSES)}")
    kind, make = LOSSES[name]
    if kind != task:
        fits = [n for n, (k, _) in LOSSES.items() if k == task]
        raise ValueError(f"loss {name!r} is for the {kind} task, not {task} (use one of: {', '.join(fits)})")
    if pos_weight is not None and "bce" not in name:
        raise ValueError(f"--pos-weight applies to BCE only, not to loss {name!r} (drop it or use bce / bce+dice)")
    if pos_weight is not None and pos_weight <= 0:
        raise ValueError(f"--pos-weight must be > 0, got {pos_weight}")
    return make(pos_weight)


__all__ = ["LOSSES", "BCELoss", "CELoss", "DiceLoss", "SumLoss", "build_loss"]
