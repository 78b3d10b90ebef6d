"""Small training helpers shared by the low-bit study and the tests.

The colleague's ``train/train.py`` is the real trainer; these helpers only quickly fit a
model in-process (study budgets, tiny test models), with the loss of `train.losses` (BCE
with logits on the lane mask, lane pixels up-weighted). Scoring is
`perception.evaluation.evaluate`'s, as everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dataset.reader import LaneDataset
from train.losses import BCELoss


def lane_loader(
    root: str | Path | list[str],
    split: str,
    size: tuple[int, int],
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    limit: int | None = None,
    tags: list[int] | None = None,
) -> DataLoader:
    """DataLoader over one split of a recorded dataset (binary task: lane markings unless
    `tags` says otherwise), in this process."""
    ds = (
        LaneDataset(root, split=split, size=size)
        if tags is None
        else LaneDataset(root, split=split, size=size, tags=tags)
    )
    if limit is not None and limit < len(ds):
        idx = np.linspace(0, len(ds) - 1, limit).round().astype(int).tolist()
        ds = torch.utils.data.Subset(ds, idx)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=0)


def train_steps(
    model: Callable[[torch.Tensor], torch.Tensor],
    params: Iterable[nn.Parameter],
    loader: DataLoader,
    steps: int,
    lr: float,
    on_step: Callable[[int, float], None] | None = None,
    pos_weight: float = 4.0,
) -> float:
    """Adam for `steps` batches (cycling the loader); returns the mean loss of the last 20."""
    opt = torch.optim.Adam(list(params), lr=lr)
    loss_fn = BCELoss(pos_weight)
    losses: list[float] = []
    step = 0
    while step < steps:
        for x, y in loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(step, losses[-1])
            step += 1
            if step >= steps:
                break
    return float(np.mean(losses[-20:]))
