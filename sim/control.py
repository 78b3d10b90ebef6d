"""Lane keeping on a predicted lane mask: ground-plane geometry, lane estimate, pure pursuit.

The one home of the lane geometry (mask pixels -> ground points). It is pure numpy on a
mask and a camera's intrinsics and mounting given as plain numbers (any object with the
fields of `sim.types.CameraSpec`), so it lives next to the controller that is its only
user, and `sim` stays free of perception and torch.

Frames: the vehicle frame has its origin at the ego's reference point on the ground
(the point the backend reports as x, y), x forward, y left, z up [m]. The camera's
optical frame is x right, y down, z forward. CARLA conventions for the mounting: pitch
positive looks up, yaw positive turns left in our right-handed frame (the CARLA adapter
converts); steering out of the controller is CARLA's: + is right.

What the controller may use: the mask, its own commands and the speedometer. It never
reads ground-truth lane state (lateral offset, `in_junction`): those are for scoring only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim.types import Control

WHEELBASE_M = 2.8
MAX_STEER_RAD = math.radians(35.0)


# ----------------------------------------------------------------------------- geometry


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
        rays = np.stack([(uu - width / 2.0) / f, (vv - height / 2.0) / f, np.ones_like(uu)], -1)
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


def optical_to_vehicle(pitch_deg: float, yaw_deg: float = 0.0) -> np.ndarray:
    """3x3 rotation: optical (x right, y down, z forward) -> vehicle (x fwd, y left, z up).

    Pitch follows CARLA (positive looks up), yaw turns the camera left.
    """
    p, q = math.radians(pitch_deg), math.radians(yaw_deg)
    cp, sp = math.cos(p), math.sin(p)
    fwd = np.array([cp, 0.0, sp])
    down = np.array([sp, 0.0, -cp])
    right = np.array([0.0, -1.0, 0.0])
    pitch_only = np.stack([right, down, fwd], axis=1)
    cq, sq = math.cos(q), math.sin(q)
    rz = np.array([[cq, -sq, 0.0], [sq, cq, 0.0], [0.0, 0.0, 1.0]])
    return rz @ pitch_only


# ----------------------------------------------------------------------------- lane estimate


@dataclass
class LaneEstimate:
    """The lane centre ahead as y(x) = c0 + c1 x + c2 x^2 in the vehicle frame [m], and its width."""

    coeffs: np.ndarray = field(default_factory=lambda: np.zeros(3))
    width: float = 3.5
    seen_left: bool = False
    seen_right: bool = False
    lost_s: float = 1e9  # seconds since the last frame with a usable boundary

    def centre_y(self, x: float | np.ndarray) -> float | np.ndarray:
        c0, c1, c2 = self.coeffs
        return c0 + c1 * x + c2 * x * x

    @property
    def curvature(self) -> float:
        """Signed curvature of the centre line near the car [1/m] (+ = bends left)."""
        return float(2.0 * self.coeffs[2])


@dataclass(frozen=True)
class LaneEstimatorConfig:
    """Tuning of the boundary search (metres unless named)."""

    bins: tuple[tuple[float, float], ...] = ((3.0, 6.0), (6.0, 9.0), (9.0, 12.5), (12.5, 16.5), (16.5, 22.0))
    split_gap: float = 0.35  # lateral gap that separates two markings
    max_extent: float = 0.9  # wider clusters are stop lines or smeared blobs, not boundaries
    min_points: int = 3
    gate: float = 0.9  # how far a boundary may be from where the lane model expects it
    gate_lost: float = 1.6
    width_min: float = 2.4
    width_max: float = 5.0
    width_default: float = 3.5
    smooth: float = 0.55  # weight of a new measurement against the propagated model
    max_abs_c2: float = 0.04  # radius >= 12.5 m
    straighten_s: float = 2.0  # time constant of the curvature decay with no markings


class LaneEstimator:
    """Lane centre from boundary markings, tracked over time with dead reckoning.

    Each frame: propagate the last lane model by the ego's own motion (speed and steer),
    then, at a few look-ahead distances, cluster the markings' lateral positions and take
    the clusters nearest to where the left and right boundaries should be; the centre is
    their middle (or one boundary minus half the remembered lane width) and a weighted
    quadratic fit through those centres updates the model. With no markings (junctions,
    worn paint, a blind model) the model is only propagated and its curvature decays: the
    car holds its last curve, then goes straight.
    """

    def __init__(self, config: LaneEstimatorConfig | None = None) -> None:
        self.config = config or LaneEstimatorConfig()
        self.reset()

    def reset(self) -> None:
        self.estimate = LaneEstimate(width=self.config.width_default)
        self.measurements: list[tuple[float, float | None, float | None]] = []

    def propagate(self, speed: float, yaw_rate: float, dt: float) -> None:
        """Move the lane model into the vehicle frame of the next tick (ego motion only)."""
        est = self.estimate
        ds, dpsi = speed * dt, yaw_rate * dt
        if ds == 0.0 and dpsi == 0.0:
            return
        xs = np.linspace(0.0, 30.0, 16)
        ys = est.centre_y(xs)
        dx, dy = ds * math.cos(dpsi / 2.0), ds * math.sin(dpsi / 2.0)
        c, s = math.cos(dpsi), math.sin(dpsi)
        px, py = xs - dx, ys - dy
        nx, ny = c * px + s * py, -s * px + c * py
        est.coeffs = np.polyfit(nx, ny, 2)[::-1].copy()

    def update(self, points: np.ndarray, dt: float) -> LaneEstimate:
        """Measure the boundaries in `points` ((N, 2) ground points, vehicle frame) and update."""
        cfg, est = self.config, self.estimate
        gate = cfg.gate if est.lost_s < 1.0 else cfg.gate_lost
        xs, cs, ws, widths = [], [], [], []
        self.measurements = []
        seen_l = seen_r = False
        for x0, x1 in cfg.bins:
            sel = (points[:, 0] >= x0) & (points[:, 0] < x1)
            if np.count_nonzero(sel) < cfg.min_points:
                continue
            px, py = points[sel, 0], points[sel, 1]
            xm = 0.5 * (x0 + x1)
            r = py - est.centre_y(px)  # lateral position relative to the predicted centre
            lines = _cluster_1d(r, cfg.split_gap, cfg.max_extent, cfg.min_points)
            half = est.width / 2.0
            left = _nearest(lines, half, gate, positive=True)
            right = _nearest(lines, -half, gate, positive=False)
            self.measurements.append((xm, left, right))
            if left is not None and right is not None:
                w = left - right
                if cfg.width_min <= w <= cfg.width_max:
                    xs.append(xm)
                    cs.append(est.centre_y(xm) + 0.5 * (left + right))
                    ws.append(1.0)
                    widths.append(w)
                    seen_l = seen_r = True
                    continue
                # Inconsistent pair: trust the one nearer its expected place.
                if abs(left - half) <= abs(right + half):
                    right = None
                else:
                    left = None
            if left is not None:
                xs.append(xm)
                cs.append(est.centre_y(xm) + left - half)
                ws.append(0.5)
                seen_l = True
            elif right is not None:
                xs.append(xm)
                cs.append(est.centre_y(xm) + right + half)
                ws.append(0.5)
                seen_r = True
        est.seen_left, est.seen_right = seen_l, seen_r
        if widths:
            est.width = float(np.clip(0.85 * est.width + 0.15 * float(np.median(widths)), cfg.width_min, cfg.width_max))
        if not xs:
            est.lost_s += dt
            est.coeffs[2] *= math.exp(-dt / cfg.straighten_s)
            return est
        est.lost_s = 0.0
        new = self._fit(np.array(xs), np.array(cs), np.array(ws))
        a = cfg.smooth
        est.coeffs = (1.0 - a) * est.coeffs + a * new
        est.coeffs[2] = float(np.clip(est.coeffs[2], -cfg.max_abs_c2, cfg.max_abs_c2))
        return est

    def _fit(self, xs: np.ndarray, cs: np.ndarray, ws: np.ndarray) -> np.ndarray:
        """Weighted fit of the centre samples; fewer samples fit fewer terms, the rest predicted."""
        pred = self.estimate.coeffs.copy()
        if len(xs) >= 3 and np.ptp(xs) >= 5.0:
            out = np.polyfit(xs, cs, 2, w=ws)[::-1]
        elif len(xs) >= 2:
            # Keep the predicted curvature, fit offset and slope.
            c01 = np.polyfit(xs, cs - pred[2] * xs * xs, 1, w=ws)[::-1]
            out = np.array([c01[0], c01[1], pred[2]])
        else:
            x0 = xs[0]
            out = pred.copy()
            out[0] += cs[0] - float(self.estimate.centre_y(x0))
        return out


def _cluster_1d(r: np.ndarray, gap: float, max_extent: float, min_points: int) -> list[float]:
    """Lateral positions (medians) of the marking-like clusters in r: narrow groups of points."""
    r = np.sort(r)
    cuts = np.flatnonzero(np.diff(r) > gap) + 1
    out = []
    for part in np.split(r, cuts):
        if len(part) >= min_points and part[-1] - part[0] <= max_extent:
            out.append(float(np.median(part)))
    return out


def _nearest(lines: list[float], expected: float, gate: float, positive: bool) -> float | None:
    """The line nearest to `expected` on the given side of the centre, within the gate."""
    best, best_d = None, gate
    for y in lines:
        if (positive and y <= 0.2) or (not positive and y >= -0.2):
            continue
        d = abs(y - expected)
        if d <= best_d:
            best, best_d = y, d
    return best


# ----------------------------------------------------------------------------- controller


@dataclass(frozen=True)
class ControllerConfig:
    """Pure pursuit and speed-keeping gains; distances [m], speeds [m/s], times [s]."""

    wheelbase_m: float = WHEELBASE_M
    max_steer_rad: float = MAX_STEER_RAD
    lookahead_s: float = 0.7  # look-ahead time: Ld = clip(lookahead_min + lookahead_s * v)
    lookahead_min: float = 4.5
    lookahead_max: float = 14.0
    lateral_accel: float = 2.0  # curve speed limit: v <= sqrt(a / |curvature|)
    kp: float = 0.35
    ki: float = 0.08
    integral_max: float = 3.0
    lost_slowdown: float = 0.7  # speed factor while no markings have been seen for a while
    lost_after_s: float = 1.0
    steer_smooth: float = 0.6  # weight of the new steer command (first-order filter)


class LaneKeepingController:
    """Mask in, `Control` out: ground projection, lane estimate, pure pursuit, PI speed.

    `step(mask, speed, dt, fresh)`: when `fresh` is False the mask is the same old
    perception (a slow model has not finished a new frame), so the lane model is only
    carried along by the car's own motion and not measured again.
    """

    def __init__(
        self,
        camera: object,
        target_speed: float,
        config: ControllerConfig | None = None,
        estimator: LaneEstimatorConfig | None = None,
    ) -> None:
        self.camera = camera
        self.target_speed = float(target_speed)
        self.config = config or ControllerConfig()
        self.estimator = LaneEstimator(estimator)
        self._projector: GroundProjector | None = None
        self.reset()

    def reset(self) -> None:
        self.estimator.reset()
        self._integral = 0.0
        self._steer = 0.0
        self._last_speed = 0.0
        self.target_point: tuple[float, float] = (0.0, 0.0)
        self.speed_target = 0.0

    def projector(self, mask_hw: tuple[int, int]) -> GroundProjector:
        if self._projector is None or self._projector.mask_hw != tuple(mask_hw):
            self._projector = GroundProjector.from_camera(self.camera, mask_hw=tuple(mask_hw))
        return self._projector

    @property
    def estimate(self) -> LaneEstimate:
        return self.estimator.estimate

    def step(self, mask: np.ndarray | None, speed: float, dt: float, fresh: bool = True) -> Control:
        """One control tick; `speed` is the speedometer [m/s], `dt` the tick [s]."""
        cfg = self.config
        yaw_rate = speed / cfg.wheelbase_m * math.tan(-self._steer * cfg.max_steer_rad)
        self.estimator.propagate(speed, yaw_rate, dt)
        if fresh and mask is not None:
            est = self.estimator.update(self.projector(mask.shape).points(mask), dt)
        else:
            est = self.estimator.estimate
            est.lost_s += dt
        # Pure pursuit towards the lane centre at the look-ahead distance.
        ld = min(max(cfg.lookahead_min + cfg.lookahead_s * speed, cfg.lookahead_min), cfg.lookahead_max)
        tx = ld
        ty = float(est.centre_y(tx))
        alpha = math.atan2(ty, tx)
        dist = math.hypot(tx, ty)
        delta = math.atan2(2.0 * cfg.wheelbase_m * math.sin(alpha), dist)
        steer = float(np.clip(-delta / cfg.max_steer_rad, -1.0, 1.0))
        self._steer = cfg.steer_smooth * steer + (1.0 - cfg.steer_smooth) * self._steer
        self.target_point = (tx, ty)
        # Speed: target, slower in curves and when blind, kept by a PI controller.
        kappa = max(abs(est.curvature), abs(2.0 * math.sin(alpha) / max(dist, 1e-3)))
        v_ref = min(self.target_speed, math.sqrt(cfg.lateral_accel / max(kappa, 1e-4)))
        if est.lost_s > cfg.lost_after_s:
            v_ref *= cfg.lost_slowdown
        self.speed_target = v_ref
        err = v_ref - speed
        self._integral = float(np.clip(self._integral + err * dt, -cfg.integral_max, cfg.integral_max))
        u = cfg.kp * err + cfg.ki * self._integral
        if u >= 0.0:
            return Control(throttle=min(u + 0.006 * speed, 1.0), steer=self._steer)
        return Control(brake=min(-u * 0.5, 1.0), steer=self._steer)


__all__ = [
    "ControllerConfig",
    "GroundProjector",
    "LaneEstimate",
    "LaneEstimator",
    "LaneEstimatorConfig",
    "LaneKeepingController",
    "optical_to_vehicle",
]
