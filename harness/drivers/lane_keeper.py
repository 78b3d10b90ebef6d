"""Lane keeping on a predicted lane mask: ground projection, lane estimate, pure pursuit, cruise control.

Steering out is CARLA's (+ right). What the controller may use: the mask, its own commands,
the speedometer and the radar (`EgoState.lead_distance`); never the ground-truth lane state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.drivers.ground import GroundProjector
from harness.drivers.lane_estimator import LaneEstimate, LaneEstimator, LaneEstimatorConfig
from sim.types import Control
from sim.vehicle import MAX_STEER_RAD, WHEELBASE_M, pure_pursuit_steer


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

    def reset(self, after_junction: bool = False) -> None:
        """Forget the lane; `after_junction`: the car has just left a junction (its exit's crosswalk
        and the other direction's stop line are not a stop line ahead)."""
        self.estimator.reset()
        if after_junction:
            self.estimator.quiet_m = self.estimator.config.axis_quiet_m
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

    def step(
        self,
        mask: np.ndarray | None,
        speed: float,
        dt: float,
        fresh: bool = True,
        lead_distance: float | None = None,
        lead_speed: float | None = None,
    ) -> Control:
        """One control tick; `speed` is the speedometer [m/s], `dt` the tick [s].

        `lead_distance` / `lead_speed` come from the radar (`EgoState`): the speed is then also
        kept behind the car ahead (adaptive cruise control). Steering only ever uses the mask.
        """
        cfg = self.config
        yaw_rate = speed / cfg.wheelbase_m * math.tan(-self._steer * cfg.max_steer_rad)
        self.estimator.propagate(speed, yaw_rate, dt)
        if fresh and mask is not None:
            pts, comp = self.projector(mask.shape).points_and_components(mask)
            est = self.estimator.update(pts, dt, comp)
        else:
            est = self.estimator.estimate
            est.lost_s += dt
        # Pure pursuit towards the lane centre at the look-ahead distance.
        ld = min(max(cfg.lookahead_min + cfg.lookahead_s * speed, cfg.lookahead_min), cfg.lookahead_max)
        tx = ld
        ty = float(est.centre_y(tx))
        alpha = math.atan2(ty, tx)
        dist = math.hypot(tx, ty)
        steer = pure_pursuit_steer(alpha, dist, cfg.wheelbase_m, cfg.max_steer_rad)
        self._steer = cfg.steer_smooth * steer + (1.0 - cfg.steer_smooth) * self._steer
        self.target_point = (tx, ty)
        # Speed: target, slower in curves and when blind, kept by a PI controller.
        kappa = max(abs(est.curvature), abs(2.0 * math.sin(alpha) / max(dist, 1e-3)))
        v_ref = min(self.target_speed, math.sqrt(cfg.lateral_accel / max(kappa, 1e-4)))
        if est.lost_s > cfg.lost_after_s:
            v_ref *= cfg.lost_slowdown
        if lead_distance is not None:
            a = acc_accel(speed, v_ref, lead_distance, speed - (lead_speed or 0.0))
            if a < -0.3:  # the car ahead (or a held junction) sets the pace: brake for it
                self.speed_target = min(v_ref, speed)
                self._integral = 0.0
                return Control(brake=min(-a / 8.0, 1.0), steer=self._steer)
            v_ref = min(v_ref, speed + max(a, 0.0))
        self.speed_target = v_ref
        err = v_ref - speed
        self._integral = float(np.clip(self._integral + err * dt, -cfg.integral_max, cfg.integral_max))
        u = cfg.kp * err + cfg.ki * self._integral
        if u >= 0.0:
            return Control(throttle=min(u + 0.006 * speed, 1.0), steer=self._steer)
        return Control(brake=min(-u * 0.5, 1.0), steer=self._steer)


def acc_accel(v: float, v_ref: float, gap: float, dv: float) -> float:
    """Adaptive cruise: intelligent-driver-model acceleration [m/s^2] behind a lead at `gap` m."""
    a_max, b = 2.0, 3.0
    s_star = 2.5 + 1.3 * v + v * dv / (2.0 * math.sqrt(a_max * b))
    return a_max * (1.0 - (v / max(v_ref, 0.1)) ** 4 - (max(s_star, 0.0) / max(gap, 0.1)) ** 2)


__all__ = ["ControllerConfig", "LaneKeepingController", "acc_accel"]
