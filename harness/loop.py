"""The closed loop: a scenario and one or more lane models, frame by frame.

Per frame: observe -> each model predicts a lane mask (timed) -> the mask is scored against
the ground-truth labels -> (``drive="model"``) a lane-keeping controller steers on the mask
-> one row per model goes to ``frames.parquet``; at the end ``summary.json`` and a strip
of the frames where the models disagree most.

This module knows nothing of perception or torch: predictors and the scorer are injected
(duck-typed, see `PredictorLike` and `Scorer`), so ``run_sim.py`` passes
``perception.predictor`` objects and ``perception.metrics.BinaryConfusion`` in.

Drive modes:

- ``autopilot``: the backend's autopilot drives one episode and every model sees exactly
  the same frames (float, PTQ and QAT compared on identical images).
- ``model``: each model drives its own episode (same scenario and seed) with
  `harness.drivers.lane_keeper.LaneKeepingController` on its own masks; lane-keeping metrics per episode.
  Junctions have no lane markings to keep to. ``junctions="autopilot"`` (the default) hands
  them to the backend's autopilot, a navigator taking the turns, from the junction's entry
  until ``handover_exit_m`` past its exit (beyond the exit's crosswalk); the switch uses the
  backend's ground-truth junction flag, the lane keeper itself never does, and it takes over
  again on the next road. ``junctions="hold"``: the lane keeper drives on through junctions
  (it follows the stop line's axis straight across), so in grid towns an episode ends at
  the first junction without a straight exit. Lane keeping is judged on roads either way.
  Speed is kept behind the car ahead with the radar's gap (``EgoState.lead_distance``),
  like an adaptive cruise control; steering only ever uses the model's mask.

Real-time budget (``realtime=True``): each model has a clock in simulated time. A model
starts a frame only when it is idle; its measured latency is charged to simulated time,
so its mask becomes usable at ``t + latency``. The control of frame k is due at
``t_k + dt``: a frame whose own mask is not ready by then is a deadline miss, and the
frame is steered (and scored) on the last mask that was ready: stale perception. Without
``realtime`` every frame gets its own mask and ``deadline_missed`` only says whether the
latency exceeded the frame period. Real-time runs depend on measured wall-clock latency,
so unlike plain runs they are not bit-for-bit repeatable.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness.contracts import (
    DRIVES,
    JUNCTION_POLICIES,
    LoopConfig,
    LoopError,
    LoopTimes,
    ModelSlot,
    RunResult,
    Scorer,
    TimingLike,
    ViewFrame,
    ViewModel,
)
from harness.drivers.lane_keeper import LaneKeepingController
from harness.meter import off_road
from harness.outputs import write_json
from harness.runlog import FrameLog, FrameRow
from harness.strip import FrameStrip, strip_score
from harness.summary import model_summary, planned_frames, run_summary
from harness.track import ModelTrack
from plumbing import StopRequest, progress_bar
from sim.backend import Backend, make_backend
from sim.types import Control, Observation

log = logging.getLogger("harness.loop")
SIM_THREAD_NICE = 10  # the overlapped simulator step yields its core to the models (see _yield_to_models)


def _nan(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def _yield_to_models() -> None:
    """Run the overlapped simulator step at a lower CPU priority than the models' threads.

    On a 2-core machine the step thread would otherwise take a core from the runtime's
    intra-op threads and stretch every inference; niced, it fills the cores' idle gaps
    (pre/post-processing, scoring, logging) instead. Linux-only; elsewhere a no-op.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SIM_THREAD_NICE)
    except (AttributeError, OSError):
        pass


class Loop:
    """Runs one configured loop; `run()` returns when the episode(s) end, are interrupted or quit."""

    def __init__(
        self,
        config: LoopConfig,
        models: list[ModelSlot],
        scorer_factory: Callable[[], Scorer],
        backend_factory: Callable[..., Backend] = make_backend,
        view: Any | None = None,
        recorder: Any | None = None,
    ) -> None:
        if not models:
            raise LoopError("no models to run (pass at least one --model)")
        if config.junctions not in JUNCTION_POLICIES:
            raise LoopError(
                f"unknown junction policy {config.junctions!r} (choose one of: {', '.join(JUNCTION_POLICIES)})"
            )
        if config.drive not in DRIVES:
            raise LoopError(f"unknown drive mode {config.drive!r} (choose one of: {', '.join(DRIVES)})")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise LoopError(f"model names must be unique, got {names}")
        self.config = config
        self.models = models
        self.scorer_factory = scorer_factory
        self.backend_factory = backend_factory
        self.view = view
        self.recorder = recorder  # rosbag.recorder.BagRecorder (duck-typed): episode(name), record(obs, masks), close()
        self.times = LoopTimes()
        self.tracks: dict[str, ModelTrack] = {}
        self.strip = FrameStrip(config.strip_size)
        self._pair_scorer = scorer_factory()  # for model-vs-model disagreement (strip) only
        self.stop = StopRequest()
        self.run_name = config.run or Path(config.out).name
        self.started = ""
        self._bar: Any = None
        self._tick_times: deque[float] = deque(maxlen=30)

    # -- public ----------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg = self.config
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        frame_log = FrameLog(out / "frames.parquet", flush_every_s=cfg.flush_every_s)
        end = "completed"
        failed = False
        backend = None
        summary: dict[str, Any] = {}
        try:
            with self.stop.installed():
                backend = self.backend_factory(cfg.backend, **cfg.backend_kwargs)
                if cfg.drive == "autopilot":
                    end = self._run_autopilot(backend, frame_log)
                else:
                    for slot in self.models:
                        end = self._run_model_episode(backend, slot, frame_log)
                        if end in ("interrupted", "quit"):
                            break
        except KeyboardInterrupt:
            end = "interrupted"
        except BaseException:
            end, failed = "error", True
            raise
        finally:
            self.times.wall_s = time.perf_counter() - t0
            if self._bar is not None:
                self._bar.close()
            for tr in self.tracks.values():
                if tr.end_reason == "running":
                    tr.end_reason = end if end in ("interrupted", "quit", "error") else "completed"
            # A run that failed before its first frame (unknown town, no server) leaves nothing behind.
            keep = not (failed and frame_log.rows == 0)
            try:
                frame_log.close(discard=not keep)
            finally:
                if backend is not None:
                    backend.close()
                if self.view is not None and hasattr(self.view, "close"):
                    self.view.close()
                if self.recorder is not None:
                    self.recorder.close()
                if keep:
                    strip = self._save_strip(out)
                    summary = self.summary(end, strip, frame_log.rows)
                    write_json(out / "summary.json", summary)
        return RunResult(out, summary, end in ("interrupted", "quit"), self.times)

    # -- episodes --------------------------------------------------------------------------
    def _done(self, frame: int, distance: float) -> bool:
        cfg = self.config
        if cfg.frames is not None:
            return frame >= cfg.frames
        return cfg.scenario.is_done(frame, distance)

    def _progress(self, total: int | None) -> None:
        self._bar = progress_bar(total, "run_sim", enabled=self.config.progress)

    def _new_track(self, slot: ModelSlot, obs: Observation) -> ModelTrack:
        tr = ModelTrack(slot, self.scorer_factory(), obs.camera.rgb.shape[:2])
        tr.end_reason = "running"
        self.tracks[slot.name] = tr
        return tr

    def _truth(self, obs: Observation) -> np.ndarray:
        labels = obs.camera.labels
        lane_tags = self.config.truth_tags
        return labels == lane_tags[0] if len(lane_tags) == 1 else np.isin(labels, lane_tags)

    def _run_autopilot(self, backend: Backend, frame_log: FrameLog) -> str:
        cfg = self.config
        t = time.perf_counter()
        obs = backend.reset(cfg.scenario, seed=cfg.seed_value)
        self.times.reset_s += time.perf_counter() - t
        tracks = [self._new_track(slot, obs) for slot in self.models]
        if self.recorder is not None:
            self.recorder.episode("")
        self._progress(planned_frames(self.config))
        dt = cfg.scenario.dt
        frame = 0
        # The autopilot's next tick does not depend on the models: simulate it while they run.
        pool = (
            ThreadPoolExecutor(1, thread_name_prefix="sim-step", initializer=_yield_to_models)
            if cfg.overlap_sim
            else None
        )
        pending: Future[Observation] | None = None
        try:
            while not self._done(frame, obs.ego.distance):
                if pool is not None:
                    pending = pool.submit(backend.step, None)
                truth = self._truth(obs)
                views = []
                for tr in tracks:
                    fresh, timing, missed = tr.perceive(obs.camera.rgb, obs.sim_time, dt, cfg.realtime, self.times)
                    row, vm = self._score_and_row(tr, obs, truth, timing, missed, obs.ego.steer, frame)
                    row.lane_departure = tr.meter.update(obs.ego)
                    self._log(frame_log, row)
                    views.append(vm)
                self._offer_strip(obs, truth, tracks, frame)
                self._record(obs, tracks)
                if not self._tick(obs, truth, views, frame, active=None, guide=None):
                    return self.stop.reason or "quit"
                frame += 1
                if self._done(frame, obs.ego.distance):
                    break
                t = time.perf_counter()
                obs = pending.result() if pending is not None else backend.step(None)
                pending = None
                self.times.sim_s += time.perf_counter() - t  # only the part not hidden behind the models
        finally:
            if pool is not None:
                pool.shutdown(wait=True)  # a tick in flight finishes before the backend is closed
        for tr in tracks:
            tr.end_reason = "completed"
        return "completed"

    def _run_model_episode(self, backend: Backend, slot: ModelSlot, frame_log: FrameLog) -> str:
        cfg = self.config
        t = time.perf_counter()
        obs = backend.reset(cfg.scenario, seed=cfg.seed_value)
        self.times.reset_s += time.perf_counter() - t
        tr = self._new_track(slot, obs)
        if self.recorder is not None:
            self.recorder.episode(slot.name)
        if self._bar is None:
            planned = planned_frames(self.config)
            self._progress(planned * len(self.models) if planned is not None else None)
        ctl = LaneKeepingController(obs.camera.spec, cfg.scenario.target_speed, cfg.controller)
        dt = cfg.scenario.dt
        frame = 0
        off_road_s = stuck_s = 0.0
        active = self.models.index(slot)
        handed_over = False
        handover_until = -1.0
        while True:
            truth = self._truth(obs)
            fresh, timing, missed = tr.perceive(obs.camera.rgb, obs.sim_time, dt, cfg.realtime, self.times)
            t = time.perf_counter()
            control: Control | None
            if cfg.junctions == "autopilot" and obs.ego.in_junction:
                handover_until = obs.ego.distance + cfg.handover_exit_m
            if cfg.junctions == "autopilot" and obs.ego.distance < handover_until:
                # The backend drives the junction, and on past the exit's crosswalk and stop line.
                control, steer, handed_over = None, float(obs.ego.steer), True
            else:
                if handed_over:
                    ctl.reset(after_junction=True)  # back from the junction: pick the lane up afresh
                    handed_over = False
                control = ctl.step(tr.mask, obs.ego.speed, dt, fresh, obs.ego.lead_distance, obs.ego.lead_speed)
                steer = control.steer
            self.times.control_s += time.perf_counter() - t
            row, vm = self._score_and_row(tr, obs, truth, timing, missed, steer, frame)
            row.lane_departure = tr.meter.update(obs.ego)
            self._log(frame_log, row)
            self._offer_strip(obs, truth, [tr], frame, group=slot.name)
            self._record(obs, [tr])
            guide = self._guide(ctl) if self.view is not None else None
            if not self._tick(obs, truth, [vm], frame, active=active, guide=guide):
                tr.end_reason = self.stop.reason or "quit"
                return tr.end_reason
            # Early ends, judged on ground truth (scoring only).
            ego = obs.ego
            off_road_s = off_road_s + dt if off_road(obs, cfg.off_road_m) else 0.0
            stuck_s = stuck_s + dt if ego.speed < 0.3 and frame * dt > 3.0 else 0.0
            reason = None
            if ego.collision and cfg.end_on_collision:
                reason = "collision"
            elif off_road_s >= cfg.off_road_s:
                reason = "off_road"
            elif stuck_s >= cfg.stuck_s:
                reason = "stuck"
            frame += 1
            if reason is not None:
                tr.end_reason = reason
                return reason
            if self._done(frame, ego.distance):
                tr.end_reason = "completed"
                return "completed"
            t = time.perf_counter()
            obs = backend.step(control)
            self.times.sim_s += time.perf_counter() - t

    # -- per frame -------------------------------------------------------------------------
    def _score_and_row(
        self,
        tr: ModelTrack,
        obs: Observation,
        truth: np.ndarray,
        timing: TimingLike | None,
        missed: bool,
        steer: float,
        frame: int,
    ) -> tuple[FrameRow, ViewModel | None]:
        t = time.perf_counter()
        s = tr.scorer.update(tr.mask, truth)
        tr.frames += 1
        tr.sim_time = obs.sim_time
        tr.misses += int(missed)
        tr.last_iou = float(s.iou)
        if s.lane_px_true > 0:
            tr.lane_iou_sum += float(s.iou)
            tr.lane_iou_frames += 1
        self.times.score_s += time.perf_counter() - t
        self.times.frames += 1
        ego = obs.ego
        pre, inf, post = (math.nan,) * 3
        if timing is not None:
            pre, inf, post = timing.preprocess_ms, timing.inference_ms, timing.postprocess_ms
        row = FrameRow(
            run=self.run_name,
            model=tr.slot.name,
            scenario=self.config.scenario.name,
            seed=self.config.seed_value,
            frame=frame,
            sim_time=float(obs.sim_time),
            iou=float(s.iou),
            precision=float(s.precision),
            recall=float(s.recall),
            lane_px_true=int(s.lane_px_true),
            lane_px_pred=int(s.lane_px_pred),
            preprocess_ms=pre,
            inference_ms=inf,
            postprocess_ms=post,
            total_ms=pre + inf + post,
            inferred=timing is not None,
            deadline_missed=bool(missed),
            speed=float(ego.speed),
            distance=float(ego.distance),
            lateral_offset=_nan(ego.lateral_offset),
            heading_error=_nan(ego.heading_error),
            steer=float(steer),
            lane_departure=False,
            collision=bool(ego.collision),
            weather=obs.weather or self.config.scenario.weather_at(frame).name,
            in_junction=bool(ego.in_junction),
        )
        vm = None
        if self.view is not None:
            running = tr.scorer.compute()
            lat = tr.latency[-1] if timing is not None else math.nan
            vm = ViewModel(
                tr.slot.name,
                tr.slot.scheme,
                tr.mask,
                float(s.iou),
                float(running["mean_frame_iou"]),
                lat,
                tr.p90(),
                1000.0 / float(np.mean(tr.recent)) if tr.recent else math.nan,
                list(tr.recent),
                bool(missed),
            )
        return row, vm

    def _log(self, frame_log: FrameLog, row: FrameRow) -> None:
        t = time.perf_counter()
        frame_log.append(row)
        self.times.log_s += time.perf_counter() - t

    def _record(self, obs: Observation, tracks: list[ModelTrack]) -> None:
        """Hand the frame and the models' masks to the recorder (--rosbag), if any."""
        if self.recorder is None:
            return
        t = time.perf_counter()
        self.recorder.record(obs, {tr.slot.name: tr.mask for tr in tracks})
        self.times.record_s += time.perf_counter() - t

    def _offer_strip(
        self, obs: Observation, truth: np.ndarray, tracks: list[ModelTrack], frame: int, group: str = ""
    ) -> None:
        if self.strip.size <= 0:
            return
        t = time.perf_counter()
        ious = {tr.slot.name: tr.last_iou for tr in tracks}
        score = strip_score([tr.mask for tr in tracks], list(ious.values()), truth, self._pair_scorer)

        def payload() -> dict[str, Any]:
            return {
                "rgb": obs.camera.rgb.copy(),
                "truth": truth.copy(),
                "masks": {tr.slot.name: tr.mask.copy() for tr in tracks},
                "iou": ious,
            }

        self.strip.offer(score, frame, group, payload)
        self.times.other_s += time.perf_counter() - t

    def _guide(self, ctl: LaneKeepingController) -> np.ndarray | None:
        proj = ctl._projector
        if proj is None:
            return None
        xs = np.linspace(3.0, 25.0, 12)
        return proj.to_pixels(xs, np.asarray(ctl.estimate.centre_y(xs)), image_scale=True)

    def _tick(
        self,
        obs: Observation,
        truth: np.ndarray,
        views: list[ViewModel | None],
        frame: int,
        active: int | None,
        guide: np.ndarray | None,
    ) -> bool:
        """End-of-frame bookkeeping: progress, view; False when the run must stop."""
        self.times.ticks += 1
        now = time.perf_counter()
        self._tick_times.append(now)
        if self._bar is not None:
            self._bar.update(1)
        if self.view is not None:
            t = time.perf_counter()
            ticks = self._tick_times
            fps = (len(ticks) - 1) / (ticks[-1] - ticks[0]) if len(ticks) > 1 and ticks[-1] > ticks[0] else math.nan
            vf = ViewFrame(
                frame,
                float(obs.sim_time),
                obs.camera.rgb,
                truth,
                [v for v in views if v is not None],
                float(obs.ego.speed),
                float(obs.ego.steer),
                fps,
                self.config.drive,
                active,
                guide,
            )
            keep = self.view.update(vf)
            self.times.view_s += time.perf_counter() - t
            if not keep:
                self.stop.reason = self.stop.reason or "quit"
                return False
        return self.stop.reason is None

    # -- outputs ---------------------------------------------------------------------------
    def _save_strip(self, out: Path) -> list[dict[str, Any]]:
        try:
            return self.strip.save(out / "strip") if self.strip.items else []
        except Exception as e:  # noqa: BLE001 - the strip is a nicety; the summary must still be written
            log.warning("could not save the frame strip: %s", e)
            return []

    def model_summary(self, slot: ModelSlot) -> dict[str, Any]:
        return model_summary(self.config, slot, self.tracks.get(slot.name))

    def summary(self, end: str, strip: list[dict[str, Any]], rows: int) -> dict[str, Any]:
        models = [self.model_summary(slot) for slot in self.models]
        return run_summary(self.config, self.run_name, self.started, end, strip, rows, self.times, models)


def run_loop(
    config: LoopConfig,
    models: list[ModelSlot],
    scorer_factory: Callable[[], Scorer],
    backend_factory: Callable[..., Backend] = make_backend,
    view: Any | None = None,
    recorder: Any | None = None,
) -> RunResult:
    """Run the closed loop once (see the module doc); outputs go to ``config.out``."""
    return Loop(config, models, scorer_factory, backend_factory, view, recorder).run()


__all__ = ["Loop", "run_loop"]
