"""The vehicle model every driver shares: wheelbase, steering range and the pure-pursuit law.

CARLA's steering convention: + is right, -1..1 of the maximum wheel angle. The embedded
world's NPCs and the harness's lane keeper steer with the same law and the same car.
"""

from __future__ import annotations

import math

WHEELBASE_M = 2.8
MAX_STEER_RAD = math.radians(35.0)


def pure_pursuit_steer(
    alpha: float, distance: float, wheelbase_m: float = WHEELBASE_M, max_steer_rad: float = MAX_STEER_RAD
) -> float:
    """CARLA steer (-1..1, + right) of the arc through a target `distance` m away at bearing `alpha`
    (rad, + left of the heading): wheel angle atan(2 L sin(alpha) / d), normalised and clipped."""
    delta = math.atan2(2.0 * wheelbase_m * math.sin(alpha), max(distance, 1e-3))
    return max(-1.0, min(1.0, -delta / max_steer_rad))


__all__ = ["MAX_STEER_RAD", "WHEELBASE_M", "pure_pursuit_steer"]
