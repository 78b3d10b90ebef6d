"""One model drives one route: the lane keeper on the model's masks, scored by the referee.

Latency-aware as `harness.loop --realtime`, but on a stated latency per model (measured once
before the sweep, or given), so an episode is a pure function of (route, seed, model,
latency): the model starts a frame only when idle, its mask becomes usable `latency` later,
and the controller acts on the mask of the last frame the model finished (`ModelTrack`).
Junctions go to the simulator's navigator along the route's plan, as `--junctions autopilot`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.contracts import LoopTimes, ModelSlot, Scorer
from harness.drive.navigate import RoutedBackend
from harness.drive.plan import RouteTracker
from harness.drive.route import Route
from harness.drive.score import Referee, Rules, Sample
from harness.drivers.lane_keeper import ControllerConfig, LaneKeepingController
from harness.meter import off_road
from harness.oracle import StatedTiming
from harness.track import ModelTrack
from sim import tags


class StatedLatency:
    """A predictor whose masks are the model's and whose latency is stated (repeatable runs)."""

    def __init__(self, predictor: Any, latency_ms: float) -> None:
        self.predictor = predictor
        self.latency_ms = float(latency_ms)
        self.name = getattr(predictor, "name", "model")
        self.scheme = getattr(predictor, "scheme", "float")
        self.input_size = getattr(predictor, "input_size", (0, 0))

    def warmup(self) -> None:
        pass

    def predict_timed(self, rgb: np.ndarray) -> tuple[np.ndarray, StatedTiming]:
        mask, _ = self.predictor.predict_timed(rgb)
        return mask, StatedTiming(0.0, self.latency_ms, 0.0)


@dataclass(frozen=True)
class EpisodeSettings:
    """How episodes are driven and judged (the same for every model and route of a sweep)."""

    rules: Rules = field(default_factory=Rules)
    realtime: bool = True
    handover_exit_m: float = 12.0  # metres past a junction still driven by the navigator
    off_road_m: float = 8.0
    # Curves at speed: 3 m/s^2 lets the car take the highway loop's bends at 100 km/h (the default 2.0 caps it at 82).
    controller: ControllerConfig = field(default_factory=lambda: ControllerConfig(lateral_accel=3.0))


def drive_route(
    route: Route,
    predictor: Any,
    latency_ms: float,
    backend: RoutedBackend,
    scorer: Scorer,
    seed: int | None = None,
    settings: EpisodeSettings | None = None,
) -> dict[str, Any]:
    """Drive `route` once on `predictor`'s masks; the route's verdict and the episode's figures."""
    cfg = settings or EpisodeSettings()
    scenario = route.scenario()
    seed_value = route.seed if seed is None else int(seed)
    obs = backend.reset(scenario, seed=seed_value)
    assert backend.plan is not None
    plan = backend.plan
    tracker = RouteTracker(plan)
    ref = Referee(plan.length_m, cfg.rules)
    slot = ModelSlot(getattr(predictor, "name", "model"), StatedLatency(predictor, latency_ms))
    track = ModelTrack(slot, scorer, obs.camera.rgb.shape[:2])
    ctl = LaneKeepingController(obs.camera.spec, route.speed_limit, cfg.controller)
    times = LoopTimes()
    dt = scenario.dt
    handover_until = -1.0
    handed_over = False
    frames = misses = 0
    speed_sum = speed_max = 0.0
    iou_sum, iou_frames = 0.0, 0
    offsets: list[float] = []  # |lateral offset| on roads [m]: how well the lane is kept, short of departing
    end = None
    while end is None:
        fresh, _, missed = track.perceive(obs.camera.rgb, obs.sim_time, dt, cfg.realtime, times)
        ego = obs.ego
        if ego.in_junction:
            handover_until = ego.distance + cfg.handover_exit_m
        if ego.distance < handover_until:
            control, handed_over = None, True
        else:
            if handed_over:
                ctl.reset(after_junction=True)
                handed_over = False
            control = ctl.step(track.mask, ego.speed, dt, fresh, ego.lead_distance, ego.lead_speed)
        truth = obs.camera.labels == tags.ROAD_LINE
        s = scorer.update(track.mask, truth)
        if int(s.lane_px_true) > 0:
            iou_sum += float(s.iou)
            iou_frames += 1
        if not ego.in_junction and ego.lateral_offset is not None:
            offsets.append(abs(float(ego.lateral_offset)))
        progress, off_route = tracker.update(ego.x, ego.y)
        sample = Sample(
            t=float(obs.sim_time),
            progress_m=progress,
            route_dist_m=off_route,
            speed=float(ego.speed),
            lateral_offset=ego.lateral_offset,
            lane_width=ego.lane_width,
            in_junction=bool(ego.in_junction),
            off_road=off_road(obs, cfg.off_road_m),
            collision=backend.collision_kind() if ego.collision else None,
            navigator=control is None,
        )
        end = ref.update(sample)
        frames += 1
        misses += int(missed)
        speed_sum += float(ego.speed)
        speed_max = max(speed_max, float(ego.speed))
        if end is None:
            obs = backend.step(control)
    verdict = ref.verdict(end)
    return {
        "route": route.name,
        "model": slot.name,
        "scheme": slot.scheme,
        "seed": seed_value,
        "road": route.road,
        "speed_limit_kmh": route.speed_limit_kmh,
        "latency_ms": float(latency_ms),
        "frames": frames,
        "deadline_misses": misses,
        "inferred_frames": len(track.latency),
        "mean_speed_kmh": 3.6 * speed_sum / max(frames, 1),
        "max_speed_kmh": 3.6 * speed_max,
        "miou": iou_sum / iou_frames if iou_frames else math.nan,
        "mean_abs_offset_m": float(np.mean(offsets)) if offsets else math.nan,
        "p95_abs_offset_m": float(np.percentile(offsets, 95)) if offsets else math.nan,
        **verdict.as_dict(),
    }


__all__ = ["EpisodeSettings", "StatedLatency", "drive_route"]
