"""The one evaluation of laneloop: a `Predictor` scored on a recorded dataset split.

Training (val after every epoch), QAT (val of the fake-quantized graph), quant/compare.py
and train/evaluate.py all call `evaluate`, so a reported IoU means the same everywhere:
pixels are counted by `perception.metrics` (see its rules), predictions are ``logit > 0``
for one channel and the argmax otherwise.

Two ways to feed a model, chosen by `frame_size`:

- ``False`` (default): the dataset's frames as the model sees them in training, resized
  to the model's input size and normalised by the dataset (`dataset_for`), run in batches
  (`Predictor.logits_batch`), scored at the model's size; multi-class models get the
  mean IoU over classes. The optional `loss_fn` is averaged over frames here.
- ``True``: each recorded RGB frame through `Predictor.predict`, the lane mask scored at
  the recorded size against the lane tags, as the closed loop scores it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from dataset.reader import IGNORE_INDEX, LaneDataset, dataset_for
from perception.metrics import BinaryConfusion, ConfusionMatrix
from perception.predictor import Predictor

#: (dataset indices, inputs, truth, predictions) of a batch -> None; e.g. writes PNGs.
#: Binary truth and predictions are bool N x 1 x H x W (N x H x W with `frame_size`),
#: multi-class ones class indices N x H x W.
OnBatch = Callable[[range, Any, Any, Any], None]


def predictions(logits: torch.Tensor) -> torch.Tensor:
    """Hard predictions: bool N x 1 x H x W (logit > 0) for one channel, else class indices."""
    return logits > 0 if logits.shape[1] == 1 else logits.argmax(dim=1)


#: One step of an evaluation: (inputs, truth, predictions, summed loss of the batch or None).
Step = tuple[Any, Any, Any, float | None]


def _model_batches(
    predictor: Predictor, dataset: Dataset, batch_size: int, workers: int, loss_fn: nn.Module | None
) -> Iterator[Step]:
    binary = predictor.meta.task.kind == "binary"
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    for images, targets in loader:
        logits = torch.from_numpy(predictor.logits_batch(images.numpy()))
        loss = float(loss_fn(logits, targets)) * len(images) if loss_fn is not None else None
        yield images, (targets > 0.5 if binary else targets), predictions(logits), loss


def _recorded_frames(predictor: Predictor, dataset: LaneDataset, n: int) -> Iterator[Step]:
    tags = np.asarray(predictor.meta.task.lane_tags)
    for i in range(n):
        rgb, labels = dataset.load(i)
        yield rgb[None], np.isin(labels, tags)[None], predictor.predict(rgb)[None], None


def evaluate(
    predictor: Predictor,
    dataset: LaneDataset | Subset,
    *,
    batch_size: int = 8,
    frames: int | None = None,
    frame_size: bool = False,
    loss_fn: nn.Module | None = None,
    on_batch: OnBatch | None = None,
    workers: int = 0,
    progress: bool = False,
    desc: str = "evaluate",
) -> dict[str, Any]:
    """Metrics of `predictor` on `dataset` (its first `frames` frames if given).

    Binary results carry every field of `BinaryConfusion.compute`; multi-class ones the
    mean IoU as ``iou`` plus ``per_class_iou`` and ``pixel_accuracy`` (precision/recall
    NaN). With `loss_fn` (model-size batches only) the mean loss per frame is ``loss``.
    """
    if frame_size and loss_fn is not None:
        raise ValueError("a loss needs the model's logits: leave frame_size off to get one")
    n = len(dataset) if frames is None else min(frames, len(dataset))
    if frame_size:
        steps = _recorded_frames(predictor, dataset, n)
    else:
        subset = dataset if n == len(dataset) else Subset(dataset, range(n))
        steps = _model_batches(predictor, subset, batch_size, workers, loss_fn)
    binary = frame_size or predictor.meta.task.kind == "binary"
    confusion: BinaryConfusion | ConfusionMatrix = (
        BinaryConfusion() if binary else ConfusionMatrix(predictor.meta.num_classes, ignore_index=IGNORE_INDEX)
    )
    loss_sum, seen = 0.0, 0
    with torch.no_grad():
        for inputs, truth, pred, loss in tqdm(steps, desc=desc, disable=not progress, leave=False):
            if binary:
                confusion.update_batch(pred, truth)
            else:
                confusion.update(pred, truth)
            if on_batch is not None:
                on_batch(range(seen, seen + len(inputs)), inputs, truth, pred)
            loss_sum += loss or 0.0
            seen += len(inputs)
    out = _result(confusion, seen)
    if loss_fn is not None:
        out["loss"] = loss_sum / seen if seen else math.nan
    return out


def _result(confusion: BinaryConfusion | ConfusionMatrix, seen: int) -> dict[str, Any]:
    if isinstance(confusion, BinaryConfusion):
        return confusion.compute()
    mc = confusion.compute()
    return {
        "iou": mc["miou"],
        "per_class_iou": mc["per_class_iou"],
        "pixel_accuracy": mc["pixel_accuracy"],
        "precision": math.nan,
        "recall": math.nan,
        "frames": seen,
    }


__all__ = ["OnBatch", "dataset_for", "evaluate", "predictions"]
