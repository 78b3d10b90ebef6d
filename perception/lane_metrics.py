"""The real lane datasets' own scores, written from their definitions: TuSimple accuracy / FP /
FN, CULane F1, and a tolerant pixel precision / recall / F1.

Why these and not pixel IoU alone: TuSimple and CULane label lane *boundaries* as thin
constant-width lines that run through dash gaps and behind cars, while our models mark painted
pixels. Pixel IoU against such labels mostly measures the drawing width; the datasets score
lane *instances* instead, and the tolerant pixel scores forgive a few pixels of offset.

A lane is an Nx2 float array of (x, y) points in the pixels of one image (x = column, y = row,
pixel centres at integers), ordered or not; its x at a row is interpolated linearly between
its points and undefined (NaN) above or below them.

- **Tolerant pixels** (`tolerant_counts`, `TolerantScore`): a predicted pixel is right when a
  label pixel lies within `tolerance` px of it (Euclidean, by distance transform), a label
  pixel is found when a predicted pixel lies within `tolerance` px of it. Precision = right /
  predicted, recall = found / label, F1 their harmonic mean, pixels pooled over frames.
- **TuSimple** (`tusimple_frame`, `TuSimpleScore`): lanes are x values at fixed rows
  (`h_samples`). A predicted x is right within 20 px at 1280 px image width (scaled with the
  width) divided by cos of the label lane's angle to the vertical (a slanted lane tolerates
  more horizontal error). A label lane's accuracy is its best predicted lane's share of right
  points; it is found when that share is >= 0.85, and a predicted lane that reaches 0.85 on no
  label lane is a false positive. Per frame: accuracy = mean of the label lanes' accuracies,
  FP = false positives / predicted lanes, FN = lanes not found / label lanes; the dataset
  figures are means over frames (accuracy over the frames that have label lanes).
- **CULane** (`culane_frame`, `CULaneScore`): every lane is drawn as a 30 px wide line at
  1640 px width (scaled with the width); a predicted lane matches a label lane when the IoU of
  their drawings exceeds 0.5, one to one (the most matches possible); TP, FP, FN are counted
  over all frames and F1 = 2TP / (2TP + FP + FN).

Where we differ from the official scripts (which we did not copy): TuSimple points count only
at rows where the label has a point (the official script also counts rows where neither lane
has one as right) and the accuracy is not capped at four lanes; CULane lanes are drawn as
polylines through their points (the official tool first fits a spline), and matches maximise
their number rather than the summed IoU. Ratios with a zero denominator are NaN, as in
`perception.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

NAN = float("nan")

TUSIMPLE_WIDTH = 1280
TUSIMPLE_HEIGHT = 720
TUSIMPLE_PIXEL_THRESH = 20.0
TUSIMPLE_MATCH = 0.85
#: TuSimple's test-set rows at 1280x720: 160, 170, ..., 710.
TUSIMPLE_ROWS = tuple(range(160, 711, 10))

CULANE_WIDTH = 1640
CULANE_LINE_WIDTH = 30.0
CULANE_IOU = 0.5

TOLERANCE_PX = 3.0


def _ratio(num: float, den: float) -> float:
    return num / den if den else NAN


def _f1(precision: float, recall: float) -> float:
    if math.isnan(precision) or math.isnan(recall):
        return NAN
    return _ratio(2 * precision * recall, precision + recall) if precision + recall else 0.0


def as_lane(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """An Nx2 float64 (x, y) array sorted by y, without non-finite points."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    p = p[np.isfinite(p).all(axis=1)]
    return p[np.argsort(p[:, 1], kind="stable")]


def lane_x_at_rows(lane: np.ndarray, rows: np.ndarray | Sequence[float]) -> np.ndarray:
    """x of `lane` at each row: linear between its points, NaN outside its rows (no extrapolation)."""
    rows = np.asarray(rows, dtype=np.float64)
    p = as_lane(lane)
    out = np.full(rows.shape, NAN)
    if len(p) == 0:
        return out
    inside = (rows >= p[0, 1]) & (rows <= p[-1, 1])
    out[inside] = np.interp(rows[inside], p[:, 1], p[:, 0])
    return out


# ----------------------------------------------------------------------------- tolerant pixels


@dataclass(frozen=True)
class TolerantCounts:
    """Pixel counts of one frame (or summed over frames) for the tolerant scores."""

    pred_right: int  # predicted pixels within the tolerance of a label pixel
    pred: int
    label_found: int  # label pixels within the tolerance of a predicted pixel
    label: int

    def __add__(self, other: TolerantCounts) -> TolerantCounts:
        return TolerantCounts(
            self.pred_right + other.pred_right,
            self.pred + other.pred,
            self.label_found + other.label_found,
            self.label + other.label,
        )

    @property
    def precision(self) -> float:
        return _ratio(self.pred_right, self.pred)

    @property
    def recall(self) -> float:
        return _ratio(self.label_found, self.label)

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall)


def _within(mask: np.ndarray, of: np.ndarray, tolerance: float) -> int:
    """How many pixels of `mask` lie within `tolerance` px of a pixel of `of`."""
    if not of.any() or not mask.any():
        return 0
    # distanceTransform gives every nonzero pixel its distance to the nearest zero pixel.
    dist = cv2.distanceTransform(np.where(of, 0, 1).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return int(np.count_nonzero(dist[mask] <= tolerance + 1e-6))


def tolerant_counts(pred: np.ndarray, label: np.ndarray, tolerance: float = TOLERANCE_PX) -> TolerantCounts:
    """Counts of one frame: bool (or 0/1) HxW masks of the same size."""
    p, t = np.asarray(pred) != 0, np.asarray(label) != 0
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"masks must be HxW of one size, got {p.shape} and {t.shape}")
    return TolerantCounts(
        _within(p, t, tolerance), int(np.count_nonzero(p)), _within(t, p, tolerance), int(np.count_nonzero(t))
    )


class TolerantScore:
    """Tolerant pixel precision / recall / F1, pixels pooled over frames."""

    def __init__(self, tolerance: float = TOLERANCE_PX) -> None:
        self.tolerance = tolerance
        self.counts = TolerantCounts(0, 0, 0, 0)

    def update(self, pred: np.ndarray, label: np.ndarray) -> TolerantCounts:
        """Add one frame; return its counts."""
        c = tolerant_counts(pred, label, self.tolerance)
        self.counts = self.counts + c
        return c

    def compute(self) -> dict[str, float]:
        c = self.counts
        return {"precision": c.precision, "recall": c.recall, "f1": c.f1, "tolerance_px": self.tolerance}


# ----------------------------------------------------------------------------- TuSimple


def tusimple_rows(height: int) -> np.ndarray:
    """TuSimple's rows (160..710 every 10 at 720 px) scaled to an image `height` (for other datasets)."""
    return np.asarray(TUSIMPLE_ROWS, dtype=np.float64) * (height / TUSIMPLE_HEIGHT)


def lane_angle(xs: np.ndarray, rows: np.ndarray) -> float:
    """Angle (radians) of a lane to the vertical, from a least-squares line x = k * y + c."""
    ok = np.isfinite(xs)
    if np.count_nonzero(ok) < 2 or np.ptp(rows[ok]) == 0:
        return 0.0
    k = np.polyfit(rows[ok], xs[ok], 1)[0]
    return math.atan(k)


def point_accuracy(pred_xs: np.ndarray, gt_xs: np.ndarray, thresh: float) -> float:
    """Share of the label's points (finite x) that the prediction has within `thresh` px."""
    gt_ok = np.isfinite(gt_xs)
    n = int(np.count_nonzero(gt_ok))
    if n == 0:
        return NAN
    with np.errstate(invalid="ignore"):
        right = np.isfinite(pred_xs) & gt_ok & (np.abs(pred_xs - gt_xs) < thresh)
    return int(np.count_nonzero(right)) / n


@dataclass(frozen=True)
class TuSimpleFrame:
    """One frame's TuSimple figures (module doc); accuracy NaN when the frame has no label lane."""

    accuracy: float
    fp: float
    fn: float
    pred_lanes: int
    label_lanes: int
    found: int  # label lanes with accuracy >= 0.85
    false_positives: int  # predicted lanes matching no label lane


def tusimple_frame(
    pred_xs: Sequence[np.ndarray], gt_xs: Sequence[np.ndarray], rows: np.ndarray, width: int
) -> TuSimpleFrame:
    """Score one frame: lanes as x per row of `rows` (NaN = no point); `width` is the image's."""
    rows = np.asarray(rows, dtype=np.float64)
    preds = [np.asarray(x, np.float64) for x in pred_xs if np.isfinite(x).any()]
    gts = [np.asarray(x, np.float64) for x in gt_xs if np.isfinite(x).any()]
    for x in (*preds, *gts):
        if x.shape != rows.shape:
            raise ValueError(f"a lane has {x.shape} x values for {rows.shape} rows")
    base = TUSIMPLE_PIXEL_THRESH * width / TUSIMPLE_WIDTH
    acc = np.zeros((len(preds), len(gts)))
    for j, g in enumerate(gts):
        thresh = base / math.cos(lane_angle(g, rows))
        for i, p in enumerate(preds):
            acc[i, j] = point_accuracy(p, g, thresh)
    best = acc.max(axis=0) if preds else np.zeros(len(gts))
    found = int(np.count_nonzero(best >= TUSIMPLE_MATCH))
    false_pos = int(np.count_nonzero(~(acc >= TUSIMPLE_MATCH).any(axis=1)))
    return TuSimpleFrame(
        accuracy=float(best.mean()) if gts else NAN,
        fp=false_pos / len(preds) if preds else 0.0,
        fn=(len(gts) - found) / len(gts) if gts else 0.0,
        pred_lanes=len(preds),
        label_lanes=len(gts),
        found=found,
        false_positives=false_pos,
    )


class TuSimpleScore:
    """TuSimple accuracy / FP / FN averaged over frames, plus the lane counts behind them."""

    def __init__(self) -> None:
        self.frames: list[TuSimpleFrame] = []

    def update(
        self, pred_xs: Sequence[np.ndarray], gt_xs: Sequence[np.ndarray], rows: np.ndarray, width: int
    ) -> TuSimpleFrame:
        """Add one frame (`tusimple_frame`'s arguments); return its figures."""
        f = tusimple_frame(pred_xs, gt_xs, rows, width)
        self.frames.append(f)
        return f

    def compute(self) -> dict[str, float | int]:
        fs = self.frames
        accs = [f.accuracy for f in fs if not math.isnan(f.accuracy)]
        return {
            "accuracy": float(np.mean(accs)) if accs else NAN,
            "fp": float(np.mean([f.fp for f in fs])) if fs else NAN,
            "fn": float(np.mean([f.fn for f in fs])) if fs else NAN,
            "frames": len(fs),
            "pred_lanes": sum(f.pred_lanes for f in fs),
            "label_lanes": sum(f.label_lanes for f in fs),
            "found": sum(f.found for f in fs),
            "false_positives": sum(f.false_positives for f in fs),
        }


# ----------------------------------------------------------------------------- CULane


def draw_lane(lane: np.ndarray, size: tuple[int, int], line_width: float) -> np.ndarray:
    """HxW bool mask of `lane` drawn as a polyline `line_width` px wide (a single point: a disc)."""
    h, w = size
    canvas = np.zeros((h, w), np.uint8)
    p = as_lane(lane)
    thickness = max(1, round(line_width))
    shift = 2  # quarter-pixel endpoints
    pts = np.round(p * (1 << shift)).astype(np.int32)
    if len(pts) == 1:
        cv2.circle(canvas, tuple(int(v) for v in pts[0]), (thickness // 2) << shift, 1, -1, cv2.LINE_8, shift)
    elif len(pts) > 1:
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, 1, thickness, cv2.LINE_8, shift)
    return canvas.astype(bool)


def max_matching(edges: np.ndarray) -> int:
    """Size of a maximum one-to-one matching of a bool (rows x cols) compatibility matrix
    (augmenting paths; lane counts are small)."""
    n_rows, n_cols = edges.shape
    owner = [-1] * n_cols  # column -> row

    def augment(r: int, seen: list[bool]) -> bool:
        for c in range(n_cols):
            if edges[r, c] and not seen[c]:
                seen[c] = True
                if owner[c] < 0 or augment(owner[c], seen):
                    owner[c] = r
                    return True
        return False

    return sum(augment(r, [False] * n_cols) for r in range(n_rows))


def lane_ious(
    pred: Sequence[np.ndarray], gt: Sequence[np.ndarray], size: tuple[int, int], line_width: float
) -> np.ndarray:
    """IoU matrix (pred x gt) of the lanes drawn `line_width` px wide on an image of `size` (H, W)."""
    pm = [draw_lane(p, size, line_width) for p in pred]
    gm = [draw_lane(g, size, line_width) for g in gt]
    ious = np.zeros((len(pm), len(gm)))
    for i, a in enumerate(pm):
        for j, b in enumerate(gm):
            union = np.count_nonzero(a | b)
            ious[i, j] = np.count_nonzero(a & b) / union if union else 0.0
    return ious


class CULaneFrame(NamedTuple):
    """One frame's CULane lane counts."""

    tp: int
    fp: int
    fn: int


def culane_frame(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray], size: tuple[int, int]) -> CULaneFrame:
    """Match the lanes of one frame of `size` (H, W); the 30 px width scales with W / 1640."""
    pred = [p for p in (as_lane(x) for x in pred) if len(p)]
    gt = [g for g in (as_lane(x) for x in gt) if len(g)]
    width = CULANE_LINE_WIDTH * size[1] / CULANE_WIDTH
    tp = max_matching(lane_ious(pred, gt, size, width) > CULANE_IOU) if pred and gt else 0
    return CULaneFrame(tp, len(pred) - tp, len(gt) - tp)


class CULaneScore:
    """CULane precision / recall / F1, lane matches counted over all frames."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0
        self.frames = 0

    def update(self, pred: Sequence[np.ndarray], gt: Sequence[np.ndarray], size: tuple[int, int]) -> CULaneFrame:
        f = culane_frame(pred, gt, size)
        self.tp, self.fp, self.fn, self.frames = self.tp + f.tp, self.fp + f.fp, self.fn + f.fn, self.frames + 1
        return f

    def compute(self) -> dict[str, float | int]:
        precision, recall = _ratio(self.tp, self.tp + self.fp), _ratio(self.tp, self.tp + self.fn)
        return {
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "frames": self.frames,
        }


__all__ = [
    "CULANE_IOU",
    "CULANE_LINE_WIDTH",
    "CULaneFrame",
    "CULaneScore",
    "TOLERANCE_PX",
    "TUSIMPLE_MATCH",
    "TUSIMPLE_PIXEL_THRESH",
    "TUSIMPLE_ROWS",
    "TolerantCounts",
    "TolerantScore",
    "TuSimpleFrame",
    "TuSimpleScore",
    "as_lane",
    "culane_frame",
    "draw_lane",
    "lane_angle",
    "lane_ious",
    "lane_x_at_rows",
    "max_matching",
    "point_accuracy",
    "tolerant_counts",
    "tusimple_frame",
    "tusimple_rows",
]
