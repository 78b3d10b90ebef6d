"""The frame strip: the few frames where models disagree most, kept bounded, saved as PNGs."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.outputs import write_json


class FrameStrip:
    """The frames where models disagree most (or, with one model, where it does worst): bounded."""

    def __init__(self, size: int, min_gap: int = 20) -> None:
        self.size = size
        self.min_gap = min_gap
        self.items: list[dict[str, Any]] = []

    def offer(self, score: float, frame: int, group: str, payload: Callable[[], dict[str, Any]]) -> None:
        if self.size <= 0 or not math.isfinite(score) or score <= 0:
            return
        near = [it for it in self.items if it["group"] == group and abs(it["frame"] - frame) < self.min_gap]
        if near:
            if all(score <= it["score"] for it in near):
                return
            self.items = [it for it in self.items if it not in near]
        elif len(self.items) >= self.size:
            worst = min(self.items, key=lambda it: it["score"])
            if score <= worst["score"]:
                return
            self.items.remove(worst)
        self.items.append({"score": score, "frame": frame, "group": group, **payload()})

    def save(self, folder: Path) -> list[dict[str, Any]]:
        """PNG files (RGB, truth, one mask per model) and their index, strip/strip.json."""
        import cv2

        folder.mkdir(parents=True, exist_ok=True)
        index = []
        for it in sorted(self.items, key=lambda it: (it["group"], it["frame"])):
            stem = f"{it['group']}_{it['frame']:06d}" if it["group"] else f"{it['frame']:06d}"
            files = {"rgb": f"{stem}_rgb.png", "truth": f"{stem}_truth.png"}
            cv2.imwrite(str(folder / files["rgb"]), cv2.cvtColor(it["rgb"], cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(folder / files["truth"]), it["truth"].astype(np.uint8) * 255)
            masks = {}
            for name, mask in it["masks"].items():
                masks[name] = f"{stem}_mask_{name}.png"
                cv2.imwrite(str(folder / masks[name]), mask.astype(np.uint8) * 255)
            index.append(
                {
                    "frame": it["frame"],
                    "group": it["group"],
                    "score": it["score"],
                    "iou": it["iou"],
                    **files,
                    "masks": masks,
                }
            )
        write_json(folder / "strip.json", {"frames": index})
        return index


def strip_score(masks: list[np.ndarray], ious: list[float], truth: np.ndarray, pair_scorer: Any) -> float:
    """How much a frame deserves the strip: with several models their disagreement, the mean over
    model pairs of 1 - IoU(mask a, mask b) (by `pair_scorer`, the run's one IoU); with one model
    its miss, 1 - IoU against the truth, on frames with lane pixels only. NaN: not a candidate."""
    if len(masks) > 1:
        pair = []
        for i, a in enumerate(masks):
            for b in masks[i + 1 :]:
                v = float(pair_scorer.update(a, b).iou)
                if math.isfinite(v):
                    pair.append(1.0 - v)
        return float(np.mean(pair)) if pair else math.nan
    return 1.0 - ious[0] if truth.any() else math.nan


__all__ = ["FrameStrip", "strip_score"]
