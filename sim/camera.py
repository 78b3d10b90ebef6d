"""Camera geometry, the one home: the optical frame in the vehicle frame and pixel rays to the ground.

Used by the embedded renderer (which ground point does each pixel see) and by the lane
estimator of the harness (where on the ground is each lane pixel): both must agree, or the
car would steer on a different road than the one drawn.

Frames: the vehicle frame has its origin at the ego's reference point on the ground, x
forward, y left, z up [m]; the optical frame is x right, y down, z forward. CARLA's mounting
conventions: pitch positive looks up, yaw positive turns the camera left.
"""

from __future__ import annotations

import math

import numpy as np


def optical_to_vehicle(pitch_deg: float, yaw_deg: float = 0.0) -> np.ndarray:
    """3x3 rotation whose columns are the optical x (right), y (down), z (forward) axes in the vehicle frame."""
    p = math.radians(pitch_deg)
    cp, sp = math.cos(p), math.sin(p)
    fwd = np.array([cp, 0.0, sp])
    down = np.array([sp, 0.0, -cp])
    right = np.array([0.0, -1.0, 0.0])
    pitch_only = np.stack([right, down, fwd], axis=1)
    if yaw_deg == 0.0:
        return pitch_only
    q = math.radians(yaw_deg)
    cq, sq = math.cos(q), math.sin(q)
    rz = np.array([[cq, -sq, 0.0], [sq, cq, 0.0], [0.0, 0.0, 1.0]])
    return rz @ pitch_only


def pixel_rays(u: np.ndarray, v: np.ndarray, width: float, height: float, focal: float) -> np.ndarray:
    """(..., 3) optical-frame rays (z = 1) through pixel coordinates (u, v) of a pinhole camera."""
    return np.stack([(u - width / 2.0) / focal, (v - height / 2.0) / focal, np.ones_like(u)], -1)


__all__ = ["optical_to_vehicle", "pixel_rays"]
