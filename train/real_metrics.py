"""Real-frame lane metrics for `train/evaluate.py`: the datasets' own scores on imported
TuSimple / CULane folders (`perception.lane_metrics`), from the model's binary mask; simulator
recordings with lane instances (`collect/record.py --lane-labels`) are scored the same way.

Per frame, at the model's input size: pixel IoU and the tolerant pixel scores against the
imported mask; then the mask's lanes (`perception.mask_lanes`), mapped to source-image pixels,
against the label lanes read back from the source (`collect.real_lanes`) for TuSimple
accuracy / FP / FN and CULane F1. Both lane metrics run on both datasets (TuSimple's rows and
20 px, CULane's 30 px, scaled to each image's size), so sets can be compared in one table.

`--metrics auto` (the default) adds them when every folder is an imported TuSimple or CULane
dataset or a recording with lane instances and the task is binary; `real` requires them; `pixel` leaves them out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from collect.real_lanes import LabelLanes, LaneLabelError, has_label_lanes
from perception.lane_metrics import CULaneScore, TolerantScore, TuSimpleScore, draw_lane, lane_x_at_rows
from perception.mask_lanes import LaneFitParams, mask_to_lanes, scale_lanes
from perception.metrics import BinaryConfusion
from sim.tags import ROAD_LINE

METRICS = ("auto", "pixel", "real")


class RealLaneScorer:
    """Accumulates the real-frame metrics of one `LaneDataset` (its `items` give the frame ids)."""

    def __init__(self, dataset: Any, params: LaneFitParams | None = None, tolerance: float = 3.0) -> None:
        self.dataset = dataset
        self.params = params or LaneFitParams()
        self.labels = {root: LabelLanes(m, root) for root, m in zip(dataset.roots, dataset.manifests, strict=True)}
        self.pixels = BinaryConfusion()
        self.tolerant = TolerantScore(tolerance)
        self.tusimple = TuSimpleScore()
        self.culane = CULaneScore()

    def update(self, index: int, pred: np.ndarray, target: np.ndarray) -> list[np.ndarray]:
        """Score frame `index` of the dataset: bool HxW prediction and label masks at one size.
        Returns the predicted lanes in source pixels (for overlays)."""
        root, row = self.dataset.items[index]
        frame = self.labels[root][row["id"]]
        pred, target = np.asarray(pred) != 0, np.asarray(target) != 0
        self.pixels.update(pred, target)
        self.tolerant.update(pred, target)
        lanes = scale_lanes(mask_to_lanes(pred, self.params), pred.shape, frame.size)
        self.tusimple.update([lane_x_at_rows(lane, frame.rows) for lane in lanes], frame.xs, frame.rows, frame.size[1])
        self.culane.update(lanes, frame.lanes, frame.size)
        return lanes

    def on_batch(self, indices: range, images: Any, targets: Any, pred: Any) -> None:
        """`train.evaluate.OnBatch`: binary N x 1 x H x W predictions and targets."""
        p, t = np.asarray(pred), np.asarray(targets)
        for k, i in enumerate(indices):
            self.update(i, p[k, 0], t[k, 0] > 0.5)

    def compute(self) -> dict[str, Any]:
        return {
            "pixel": self.pixels.compute(),
            "tolerant": self.tolerant.compute(),
            "tusimple": self.tusimple.compute(),
            "culane": self.culane.compute(),
            "post_processing": asdict(self.params),
        }


#: (scorer, frame index, rgb, label mask) -> predicted bool mask at the label's size
Predict = Callable[[RealLaneScorer, int, np.ndarray, np.ndarray], np.ndarray]


def score_set(dataset: Any, predict: Predict) -> dict[str, Any]:
    """Every frame of a `LaneDataset` through `predict`, scored by a `RealLaneScorer`."""
    scorer = RealLaneScorer(dataset)
    for i in range(len(dataset)):
        rgb, labels = dataset.load(i)
        label = labels == ROAD_LINE
        scorer.update(i, predict(scorer, i, rgb, label), label)
    return scorer.compute()


def thin_labels(scorer: RealLaneScorer, i: int, rgb: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The frame's label lanes drawn 2 px wide at the mask size: what a perfect model of painted
    lines would mark (a `Predict` that checks the decoder, not a model)."""
    root, row = scorer.dataset.items[i]
    frame = scorer.labels[root][row["id"]]
    mask = np.zeros(label.shape, bool)
    for lane in scale_lanes(list(frame.lanes), frame.size, label.shape):
        mask |= draw_lane(lane, label.shape, 2)
    return mask


def real_scorer(dataset: Any, task_kind: str, mode: str = "auto") -> tuple[RealLaneScorer | None, str]:
    """The scorer `mode` asks for on `dataset`, or None and why not (ValueError when `real` cannot be)."""
    if mode not in METRICS:
        raise ValueError(f"unknown metrics {mode!r} (choose one of: {', '.join(METRICS)})")
    if mode == "pixel":
        return None, ""
    why = ""
    if task_kind != "binary":
        why = "the real lane metrics need a binary lane checkpoint"
    elif not all(has_label_lanes(m) for m in dataset.manifests):
        why = (
            "the real lane metrics need imported TuSimple or CULane folders (collect.importers tusimple|culane) "
            "or recordings with lane instances (collect/record.py --lane-labels)"
        )
    if not why:
        try:
            return RealLaneScorer(dataset), ""
        except LaneLabelError as e:
            why = str(e)
    if mode == "real":
        raise ValueError(why)
    return None, why if all(has_label_lanes(m) for m in dataset.manifests) else ""


def chain(*callbacks: Any) -> Any:
    """One `OnBatch` calling each of `callbacks` that is not None (None when none is)."""
    calls = [c for c in callbacks if c is not None]
    if not calls:
        return None

    def call(*args: Any) -> None:
        for c in calls:
            c(*args)

    return call


def format_real(r: dict[str, Any]) -> list[str]:
    """Summary lines of `RealLaneScorer.compute`'s result."""
    tol, ts, cu = r["tolerant"], r["tusimple"], r["culane"]
    return [
        f"F1 @{tol['tolerance_px']:g}px           {tol['f1']:.4f}   (precision {tol['precision']:.4f}, "
        f"recall {tol['recall']:.4f}; a pixel counts within {tol['tolerance_px']:g} px)",
        f"TuSimple accuracy  {ts['accuracy']:.4f}   (FP {ts['fp']:.4f}, FN {ts['fn']:.4f}; "
        f"{ts['pred_lanes']} predicted lanes, {ts['found']} of {ts['label_lanes']} label lanes found)",
        f"CULane F1          {cu['f1']:.4f}   (TP {cu['tp']}, FP {cu['fp']}, FN {cu['fn']}; "
        "lanes from the mask by perception.mask_lanes)",
    ]


__all__ = ["METRICS", "Predict", "RealLaneScorer", "chain", "format_real", "real_scorer", "score_set", "thin_labels"]
