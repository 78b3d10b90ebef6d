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
from typing import Any

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


def world_to_optical(spec: Any, x: float, y: float, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """(R world->optical, camera centre in the world [m]) of camera `spec` (a `CameraSpec`:
    mounting x, y, z, pitch_deg, yaw_deg) on an ego at (x, y, yaw) [m, rad] on the ground.
    The same pose as the embedded renderer's (tested), for the lane labels of a frame."""
    cz, sz = math.cos(yaw), math.sin(yaw)
    centre = np.array([x + cz * spec.x - sz * spec.y, y + sz * spec.x + cz * spec.y, spec.z])
    yaw_c = yaw + math.radians(spec.yaw_deg)
    c2, s2 = math.cos(yaw_c), math.sin(yaw_c)
    rz = np.array([[c2, -s2, 0.0], [s2, c2, 0.0], [0.0, 0.0, 1.0]])
    return (rz @ optical_to_vehicle(spec.pitch_deg)).T, centre


__all__ = ["optical_to_vehicle", "pixel_rays", "world_to_optical"]
