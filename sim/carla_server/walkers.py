"""Pedestrians of the served world: `walker.pedestrian.*` actors moved by `WalkerControl`.

A walker goes at `speed` along the horizontal part of `direction` (CARLA's frame on the wire,
ours here) and turns to face where it goes, as CARLA's walkers do without their AI controller.
The renderer draws it as two boxes, body and head, tagged Pedestrian (12), among the vehicles'
boxes; with no walker spawned the boxes, and so the frames, are the vehicles' alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim import tags
from sim.embedded.props import Boxes

CLOTHES = ((70, 90, 140), (150, 60, 50), (60, 110, 70), (90, 80, 70), (180, 160, 120), (40, 40, 45))
SKIN = (200, 160, 130)


@dataclass
class Walker:
    """One pedestrian on the ground (our frame: x, y [m], yaw [rad]) and its last control."""

    x: float
    y: float
    yaw: float
    size: tuple[float, float, float]  # depth, width, height [m]
    color: tuple[int, int, int]
    direction: tuple[float, float] = (0.0, 0.0)  # unit vector in our frame, (0, 0): standing
    speed: float = 0.0  # [m/s]
    jump: bool = False
    control: tuple = ((0.0, 0.0, 0.0), 0.0, False)  # as received: CARLA direction, speed, jump

    def apply(self, control: list) -> None:
        """A WalkerControl off the wire: [[x, y, z] (CARLA frame), speed, jump]."""
        (dx, dy, dz), speed, jump = control[0], control[1], control[2] if len(control) > 2 else False
        dx, dy, speed = float(dx), -float(dy), float(speed)  # CARLA's y is our -y
        n = math.hypot(dx, dy)
        if not (math.isfinite(speed) and math.isfinite(n)) or speed < 0:
            raise ValueError(f"WalkerControl speed {speed} / direction must be finite, speed >= 0")
        self.direction = (dx / n, dy / n) if n > 1e-9 else (0.0, 0.0)
        self.speed = speed if n > 1e-9 else 0.0
        self.jump = bool(jump)
        self.control = ((float(control[0][0]), float(control[0][1]), float(dz)), speed, self.jump)

    def step(self, dt: float) -> None:
        if self.speed <= 0.0:
            return
        ux, uy = self.direction
        self.x += ux * self.speed * dt
        self.y += uy * self.speed * dt
        self.yaw = math.atan2(uy, ux)

    @property
    def velocity(self) -> tuple[float, float]:
        """Our frame [m/s]."""
        return self.direction[0] * self.speed, self.direction[1] * self.speed


def walker_boxes(walkers: list[Walker]) -> Boxes:
    """Body (legs and torso) and head of every walker, tagged Pedestrian, for the renderer."""
    rows = []
    for w in walkers:
        depth, width, height = w.size
        head = min(0.24, height * 0.14)
        rows.append(((w.x, w.y), w.yaw, (depth, width, height - head), 0.0, w.color, tags.PEDESTRIAN))
        rows.append(((w.x, w.y), w.yaw, (head, head, head), height - head, SKIN, tags.PEDESTRIAN))
    return Boxes.from_rows(rows)


def concat_boxes(a: Boxes, b: Boxes) -> Boxes:
    """`a`'s boxes then `b`'s (the renderer sorts them far to near itself)."""
    return Boxes(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in ("xy", "yaw", "size", "z0", "color", "tag")))
