"""The one IoU of laneloop: per-frame scores, dataset accumulators, multi-class mIoU.

Pure numpy (torch tensors are converted), so the live loop, training evaluation and the
reports all count pixels the same way, fast enough to run on every frame.

Rules (the same everywhere):

- A binary mask is a bool (or integer 0/1) array; float arrays are refused, so logits or
  probabilities must be thresholded by the caller, explicitly.
- Per frame: ``iou = TP / (TP + FP + FN)``, ``precision = TP / (TP + FP)``,
  ``recall = TP / (TP + FN)``, ``f1 = 2TP / (2TP + FP + FN)``.
- A ratio whose denominator is zero is NaN, never 0 or 1. In particular a frame where
  truth and prediction are both empty (no lane pixels, none predicted) has
  ``iou = f1 = NaN`` and ``empty = True``: it is counted apart (``empty_frames``) and left
  out of the mean per-frame IoU. A frame with no true lane pixels but some predicted has
  ``iou = 0`` (and NaN recall); one with true pixels but none predicted has ``iou = 0``
  (and NaN precision).
- Dataset IoU pools pixels: ``ΣTP / (ΣTP + ΣFP + ΣFN)``. Mean per-frame IoU averages the
  IoU of the non-empty frames. The two differ: report both.
- Multi-class: confusion matrix with truth on rows and prediction on columns; per-class
  IoU is NaN for a class absent from both truth and prediction; mIoU is the mean over
  classes whose IoU is not NaN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

NAN = float("nan")


def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like; torch tensors are detached and moved to the CPU."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_mask(x: Any) -> np.ndarray:
    """Bool mask from a bool or integer array/tensor (nonzero = lane); floats are refused."""
    a = _to_numpy(x)
    if a.dtype == np.bool_:
        return a
    if np.issubdtype(a.dtype, np.integer):
        return a != 0
    raise TypeError(
        f"expected a bool or integer mask, got dtype {a.dtype} "
        "(threshold logits or probabilities first, e.g. logits > 0)"
    )


def _ratio(num: float, den: float) -> float:
    return num / den if den else NAN


@dataclass(frozen=True)
class FrameScores:
    """Scores of one frame; ratios are NaN when their denominator is zero (see module doc)."""

    iou: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    lane_px_true: int
    lane_px_pred: int
    empty: bool

    def as_dict(self) -> dict[str, Any]:
        """Plain dict, e.g. for one row of frames.parquet."""
        return asdict(self)


def _scores(tp: int, fp: int, fn: int) -> FrameScores:
    return FrameScores(
        iou=_ratio(tp, tp + fp + fn),
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        tp=tp,
        fp=fp,
        fn=fn,
        lane_px_true=tp + fn,
        lane_px_pred=tp + fp,
        empty=tp + fp + fn == 0,
    )


def _counts(pred: Any, truth: Any) -> tuple[int, int, int, int]:
    p = as_mask(pred)
    t = as_mask(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
    n_pred = int(np.count_nonzero(p))
    n_true = int(np.count_nonzero(t))
    tp = int(np.count_nonzero(np.logical_and(p, t)))
    return tp, n_pred - tp, n_true - tp, p.size


def frame_scores(pred: Any, truth: Any) -> FrameScores:
    """IoU, precision, recall, F1 and pixel counts of one predicted mask against the truth."""
    tp, fp, fn, _ = _counts(pred, truth)
    return _scores(tp, fp, fn)


class BinaryConfusion:
    """Accumulates TP/FP/FN/TN (int64) and per-frame IoU over many frames.

    ``update`` takes one frame (H x W) and returns its `FrameScores`, so the live loop
    scores each frame once; ``update_batch`` takes N x H x W (or N x 1 x H x W).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.tp = np.int64(0)
        self.fp = np.int64(0)
        self.fn = np.int64(0)
        self.tn = np.int64(0)
        self.frames = 0
        self.empty_frames = 0
        self._frame_iou_sum = 0.0

    def update(self, pred: Any, truth: Any) -> FrameScores:
        """Add one frame; return its scores."""
        tp, fp, fn, size = _counts(pred, truth)
        self.tp += tp
        self.fp += fp
        self.fn += fn
        self.tn += size - tp - fp - fn
        self.frames += 1
        scores = _scores(tp, fp, fn)
        if scores.empty:
            self.empty_frames += 1
        else:
            self._frame_iou_sum += scores.iou
        return scores

    def update_batch(self, pred: Any, truth: Any) -> list[FrameScores]:
        """Add each frame of an N x H x W (or N x 1 x H x W) batch; return their scores."""
        p, t = _to_numpy(pred), _to_numpy(truth)
        if p.shape[0] != t.shape[0]:
            raise ValueError(f"batch sizes differ: {p.shape[0]} vs {t.shape[0]}")
        return [self.update(p[i], t[i]) for i in range(p.shape[0])]

    def merge(self, other: BinaryConfusion) -> BinaryConfusion:
        """Add another accumulator's counts into this one (e.g. from parallel workers)."""
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.tn += other.tn
        self.frames += other.frames
        self.empty_frames += other.empty_frames
        self._frame_iou_sum += other._frame_iou_sum
        return self

    @property
    def iou(self) -> float:
        """Dataset IoU: ΣTP / (ΣTP + ΣFP + ΣFN); NaN if no frame had lane pixels."""
        return _ratio(float(self.tp), float(self.tp + self.fp + self.fn))

    @property
    def precision(self) -> float:
        return _ratio(float(self.tp), float(self.tp + self.fp))

    @property
    def recall(self) -> float:
        return _ratio(float(self.tp), float(self.tp + self.fn))

    @property
    def f1(self) -> float:
        return _ratio(2.0 * self.tp, float(2 * self.tp + self.fp + self.fn))

    @property
    def mean_frame_iou(self) -> float:
        """Mean IoU over the frames that are not empty (see module doc); NaN if none."""
        return _ratio(self._frame_iou_sum, self.frames - self.empty_frames)

    def compute(self) -> dict[str, float | int]:
        """All summary numbers as a plain dict (JSON- and checkpoint-safe)."""
        return {
            "iou": self.iou,
            "mean_frame_iou": self.mean_frame_iou,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": int(self.tp),
            "fp": int(self.fp),
            "fn": int(self.fn),
            "tn": int(self.tn),
            "frames": self.frames,
            "empty_frames": self.empty_frames,
        }


def confusion_matrix(pred: Any, truth: Any, num_classes: int, ignore_index: int | None = 255) -> np.ndarray:
    """num_classes x num_classes int64 counts, truth on rows, prediction on columns.

    Truth pixels equal to `ignore_index` are skipped; any other label outside
    [0, num_classes) raises ValueError.
    """
    p = _to_numpy(pred)
    t = _to_numpy(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
    for name, a in (("prediction", p), ("truth", t)):
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"{name} must hold integer class ids, got dtype {a.dtype}")
    p = p.ravel().astype(np.int64, copy=False)
    t = t.ravel().astype(np.int64, copy=False)
    if ignore_index is not None:
        keep = t != ignore_index
        if not keep.all():
            p, t = p[keep], t[keep]
    for name, a in (("prediction", p), ("truth", t)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} has class ids outside 0..{num_classes - 1} (found {a.min()}..{a.max()})")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(matrix: np.ndarray) -> np.ndarray:
    """IoU of each class from a confusion matrix; NaN for a class absent from both sides."""
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    union = m.sum(axis=0) + m.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(per_class: np.ndarray) -> float:
    """Mean over classes with a defined IoU; NaN if none is defined."""
    valid = per_class[~np.isnan(per_class)]
    return float(valid.mean()) if valid.size else NAN


class ConfusionMatrix:
    """Multi-class accumulator: ``update(pred, truth)`` with integer class-id maps."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred: Any, truth: Any) -> None:
        """Add the pixels of one frame or a batch (any matching shapes)."""
        self.matrix += confusion_matrix(pred, truth, self.num_classes, self.ignore_index)

    def per_class_iou(self) -> np.ndarray:
        return iou_per_class(self.matrix)

    @property
    def miou(self) -> float:
        return mean_iou(self.per_class_iou())

    @property
    def pixel_accuracy(self) -> float:
        return _ratio(float(np.trace(self.matrix)), float(self.matrix.sum()))

    def compute(self) -> dict[str, Any]:
        """Plain dict: per-class IoU (NaN kept), mIoU, pixel accuracy."""
        per_class = self.per_class_iou()
        return {
            "per_class_iou": [float(v) for v in per_class],
            "miou": mean_iou(per_class),
            "pixel_accuracy": self.pixel_accuracy,
        }


__all__ = [
    "BinaryConfusion",
    "ConfusionMatrix",
    "FrameScores",
    "as_mask",
    "confusion_matrix",
    "frame_scores",
    "iou_per_class",
    "mean_iou",
]
