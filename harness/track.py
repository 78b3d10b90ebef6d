"""One model's state through an episode: its real-time clock, the mask in use, scores, latencies."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from harness.contracts import LoopTimes, ModelSlot, Scorer, TimingLike
from harness.meter import LaneKeepingMeter


class ModelTrack:
    """One model's state through an episode: realtime clock, mask in use, scores, latencies."""

    def __init__(self, slot: ModelSlot, scorer: Scorer, frame_shape: tuple[int, int]) -> None:
        self.slot = slot
        self.scorer = scorer
        self.mask = np.zeros(frame_shape, bool)  # the mask in use (all False before the first one)
        self.busy_until = -math.inf
        self.pending: tuple[np.ndarray, float] | None = None
        self.latency: list[float] = []
        self.split: list[tuple[float, float, float]] = []
        self.recent: deque[float] = deque(maxlen=120)
        self.misses = 0
        self.frames = 0
        self.lane_iou_sum = 0.0
        self.lane_iou_frames = 0
        self.meter = LaneKeepingMeter()
        self.end_reason = "not_run"
        self.sim_time = 0.0
        self.last_iou = float("nan")

    def perceive(
        self, rgb: np.ndarray, t: float, dt: float, realtime: bool, times: LoopTimes
    ) -> tuple[bool, TimingLike | None, bool]:
        """Run (or skip, when busy in real time) the model on this frame.

        Returns (a new mask is in use for this frame's control, timing if it ran, missed).
        """
        fresh = False
        if realtime and self.pending is not None and self.pending[1] <= t + dt + 1e-9:
            self.mask, self.pending, fresh = self.pending[0], None, True
        if realtime and self.busy_until > t + 1e-9:
            return fresh, None, True
        mask, timing = self.slot.predictor.predict_timed(rgb)
        times.preprocess_s += timing.preprocess_ms / 1000.0
        times.inference_s += timing.inference_ms / 1000.0
        times.postprocess_s += timing.postprocess_ms / 1000.0
        total_ms = timing.preprocess_ms + timing.inference_ms + timing.postprocess_ms
        self.latency.append(total_ms)
        self.split.append((timing.preprocess_ms, timing.inference_ms, timing.postprocess_ms))
        self.recent.append(total_ms)
        late = total_ms > dt * 1000.0
        if not realtime:
            self.mask = mask
            return True, timing, late
        ready = t + total_ms / 1000.0
        self.busy_until = ready
        if not late:
            self.mask = mask
            return True, timing, False
        self.pending = (mask, ready)
        return fresh, timing, True

    def p90(self) -> float:
        return float(np.percentile(self.recent, 90)) if self.recent else float("nan")


__all__ = ["ModelTrack"]
