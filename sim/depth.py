"""A depth image for the embedded world, from the camera geometry and the label image alone.

The embedded world's ground is the plane z = 0 and everything standing on it is upright
(boxes, poles, spheres on stems), so depth needs no change to the renderer:

- a ground pixel (road, sidewalk, marking, terrain, dirt) is the ray's hit with the ground:
  exact, the same ray-to-ground geometry the renderer samples the ground raster with;
- an object pixel takes the depth of a vertical surface standing where the object meets the
  ground: the nearest ground pixel below it in its column gives that point's horizontal
  range. Exact for an upright face seen from the front; a face seen at a slant, or an object
  whose foot is hidden behind a nearer one, gets the range of what is below it (nearer);
- sky is +inf (REP 118: no return), an object with no ground below it in the image is NaN.

Depth is the optical z [m] (REP 118, 32FC1), as a depth camera registered to the RGB gives.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from sim import tags
from sim.camera import optical_to_vehicle, pixel_rays
from sim.types import CameraSpec

GROUND_TAGS = (tags.ROAD, tags.SIDEWALK, tags.TERRAIN, tags.ROAD_LINE, tags.GROUND)
_IS_GROUND = np.zeros(256, bool)
_IS_GROUND[list(GROUND_TAGS)] = True


@lru_cache(maxsize=8)
def _rays(spec: CameraSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: depth of the ray's ground hit (inf above the horizon), that hit's horizontal
    range, 1 / the horizontal length of the pixel's z=1 ray, and whether the ray hits the ground."""
    vv, uu = np.mgrid[0 : spec.height, 0 : spec.width].astype(np.float64) + 0.5
    rays = pixel_rays(uu, vv, spec.width, spec.height, spec.focal)  # optical, z = 1
    rb = rays @ optical_to_vehicle(spec.pitch_deg, spec.yaw_deg).T  # vehicle frame, x fwd, z up
    down = rb[..., 2] < -1e-9
    ground = np.where(down, spec.z / np.where(down, -rb[..., 2], 1.0), np.inf)
    horiz = np.hypot(rb[..., 0], rb[..., 1])
    out = (
        ground.astype(np.float32),
        np.where(down, ground * horiz, 0.0).astype(np.float32),
        (1.0 / horiz).astype(np.float32),
        down,
    )
    for a in out:
        a.setflags(write=False)
    return out


def depth_image(spec: CameraSpec, labels: np.ndarray) -> np.ndarray:
    """HxW float32 depth [m] of a frame of the embedded world (see the module doc)."""
    ground_t, ground_range, inv_horiz, down = _rays(spec)
    if labels.shape != ground_t.shape:
        raise ValueError(f"labels {labels.shape} do not match camera {spec.name!r} ({spec.height}x{spec.width})")
    is_ground = _IS_GROUND[labels] & down
    h, w = labels.shape
    # Flat index of the nearest ground pixel at or below each pixel (h * w: none): a running min
    # from the bottom of row * w + column, which keeps the column (a running max would pick the
    # bottom row, the ground nearest the camera, for all); one gather instead of take_along_axis.
    flat = np.where(is_ground, _flat_index(h, w), np.int32(h * w))
    below = np.minimum.accumulate(flat[::-1], axis=0)[::-1]
    foot = _range_or_nan(spec)[below]  # index h * w is the appended NaN: no ground below
    depth = foot * inv_horiz
    np.copyto(depth, ground_t, where=is_ground)
    depth[labels == tags.SKY] = np.inf
    return depth


@lru_cache(maxsize=8)
def _flat_index(h: int, w: int) -> np.ndarray:
    return np.arange(h * w, dtype=np.int32).reshape(h, w)


@lru_cache(maxsize=8)
def _range_or_nan(spec: CameraSpec) -> np.ndarray:
    """The ground hits' horizontal ranges, flat, with a NaN appended (for "no ground below")."""
    return np.append(_rays(spec)[1].ravel(), np.float32(np.nan))


__all__ = ["GROUND_TAGS", "depth_image"]
