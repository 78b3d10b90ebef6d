"""Mask pixels to points on the flat ground in the vehicle frame: the lane estimator's eyes.

Pure numpy on a mask and a camera's intrinsics and mounting given as plain numbers (any
object with the fields of `sim.types.CameraSpec`); the geometry itself is `sim.camera`'s,
the same the embedded renderer draws with.
"""

from __future__ import annotations

import math

import numpy as np

from sim.camera import optical_to_vehicle, pixel_rays


class GroundProjector:
    """Maps mask pixels to points on the flat ground in the vehicle frame [m].

    Built once per (camera mounting, mask size): every pixel's ground point is computed
    up front, so `points` is one boolean gather per frame. A mask of another size than the
    camera image is the same view scaled (the predictor's resize), so the intrinsics scale.
    """

    def __init__(
        self,
        width: int,
        height: int,
        fov_deg: float,
        x: float,
        y: float,
        z: float,
        pitch_deg: float,
        yaw_deg: float = 0.0,
        mask_hw: tuple[int, int] | None = None,
        max_range_m: float = 40.0,
    ) -> None:
        mh, mw = mask_hw if mask_hw is not None else (height, width)
        self.mask_hw = (int(mh), int(mw))
        f = width / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
        # Pixel centres of the mask, expressed in camera-image pixels.
        u = (np.arange(mw) + 0.5) * (width / mw)
        v = (np.arange(mh) + 0.5) * (height / mh)
        uu, vv = np.meshgrid(u, v)
        rays = pixel_rays(uu, vv, width, height, f)
        rot = optical_to_vehicle(pitch_deg, yaw_deg)
        self._rot, self._cam, self._f, self._size = rot, (x, y, z), f, (width, height)
        rb = rays.reshape(-1, 3) @ rot.T  # (N, 3) in the vehicle frame
        down = rb[:, 2] < -1e-6
        t = np.where(down, z / np.where(down, -rb[:, 2], 1.0), np.nan)
        gx = x + rb[:, 0] * t
        gy = y + rb[:, 1] * t
        ok = down & (np.hypot(gx - x, gy - y) <= max_range_m)
        self.ground_x = np.where(ok, gx, np.nan).reshape(mh, mw).astype(np.float32)
        self.ground_y = np.where(ok, gy, np.nan).reshape(mh, mw).astype(np.float32)
        self.valid = ok.reshape(mh, mw)

    @classmethod
    def from_camera(cls, cam: object, mask_hw: tuple[int, int] | None = None, **kw: float) -> GroundProjector:
        """From any object with CameraSpec's fields (width, height, fov_deg, x, y, z, pitch_deg, yaw_deg)."""
        return cls(
            cam.width,
            cam.height,
            cam.fov_deg,
            cam.x,
            cam.y,
            cam.z,
            cam.pitch_deg,
            getattr(cam, "yaw_deg", 0.0),
            mask_hw=mask_hw,
            **kw,
        )

    def points(self, mask: np.ndarray) -> np.ndarray:
        """(N, 2) ground points (x forward, y left) [m] of the mask's True pixels within range."""
        if mask.shape != self.mask_hw:
            raise ValueError(f"mask shape {mask.shape} differs from the projector's {self.mask_hw}")
        sel = mask & self.valid
        return np.stack([self.ground_x[sel], self.ground_y[sel]], axis=1).astype(np.float64)

    def points_and_components(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`points` plus each point's connected-component id in the mask (8-connected blobs)."""
        import cv2

        if mask.shape != self.mask_hw:
            raise ValueError(f"mask shape {mask.shape} differs from the projector's {self.mask_hw}")
        _, comp = cv2.connectedComponents(mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8), 8)
        sel = mask & self.valid
        pts = np.stack([self.ground_x[sel], self.ground_y[sel]], axis=1).astype(np.float64)
        return pts, comp[sel]

    def to_pixels(self, gx: np.ndarray, gy: np.ndarray, image_scale: bool = False) -> np.ndarray:
        """(N, 2) pixel (u, v) of ground points in the mask (or, with `image_scale`, the camera image);
        NaN for points behind the camera. For drawing the lane estimate over the image."""
        pts = np.stack(
            [
                np.asarray(gx, float) - self._cam[0],
                np.asarray(gy, float) - self._cam[1],
                np.full(np.shape(gx), -self._cam[2]),
            ],
            axis=-1,
        )
        opt = pts @ self._rot  # vehicle -> optical (rows: points)
        z = opt[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(z > 1e-3, self._f * opt[:, 0] / z + self._size[0] / 2.0, np.nan)
            v = np.where(z > 1e-3, self._f * opt[:, 1] / z + self._size[1] / 2.0, np.nan)
        if not image_scale:
            u = u * self.mask_hw[1] / self._size[0]
            v = v * self.mask_hw[0] / self._size[1]
        return np.stack([u, v], axis=1)


__all__ = ["GroundProjector"]
