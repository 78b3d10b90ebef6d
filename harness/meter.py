"""Lane keeping judged on the ground-truth ego state: departures, offsets, collisions (scoring only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sim import tags
from sim.types import EgoState, Observation

ROAD_TAGS = (tags.ROAD, tags.ROAD_LINE)


@dataclass
class LaneKeepingMeter:
    """Lane-keeping metrics from the ground-truth ego state (scoring only, never control).

    A departure is |lateral offset| > lane width / 2 outside junctions, counted once per
    excursion (junction frames neither start nor end one). Collisions count contacts
    (rising edges of the collision flag).
    """

    departures: int = 0
    collisions: int = 0
    offset_sum: float = 0.0
    offset_max: float = 0.0
    offset_frames: int = 0
    distance: float = 0.0
    _out: bool = False
    _hit: bool = False

    def update(self, ego: EgoState) -> bool:
        """Add one frame; return whether the car is out of its lane now."""
        self.distance = ego.distance
        if ego.collision and not self._hit:
            self.collisions += 1
        self._hit = ego.collision
        if ego.in_junction or ego.lateral_offset is None or ego.lane_width is None:
            return False
        off = abs(ego.lateral_offset)
        self.offset_sum += off
        self.offset_frames += 1
        self.offset_max = max(self.offset_max, off)
        out = off > ego.lane_width / 2.0
        if out and not self._out:
            self.departures += 1
        self._out = out
        return out

    def summary(self, target_m: float) -> dict[str, Any]:
        km = self.distance / 1000.0
        return {
            "distance_m": self.distance,
            "lane_departures": self.departures,
            "departures_per_km": self.departures / km if km > 0 else float("nan"),
            "mean_abs_offset_m": self.offset_sum / self.offset_frames if self.offset_frames else float("nan"),
            "max_abs_offset_m": self.offset_max if self.offset_frames else float("nan"),
            "collisions": self.collisions,
            "target_m": target_m,
            "route_completion": self.distance / target_m if target_m > 0 else float("nan"),
        }


def off_road(obs: Observation, limit_m: float) -> bool:
    """|lateral offset| beyond `limit_m`, or no road under the front of the car (labels): ground truth."""
    ego = obs.ego
    if ego.lateral_offset is not None and abs(ego.lateral_offset) > limit_m:
        return True
    labels = obs.camera.labels
    h, w = labels.shape
    patch = labels[h - max(h // 20, 2) :, w // 2 - max(w // 40, 2) : w // 2 + max(w // 40, 2)]
    return bool(np.isin(patch, ROAD_TAGS).mean() < 0.5)


__all__ = ["LaneKeepingMeter", "off_road"]
