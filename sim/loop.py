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
  `sim.control.LaneKeepingController` on its own masks; lane-keeping metrics per episode.
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

import json
import logging
import math
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sim import tags
from sim.backend import Backend, make_backend
from sim.control import ControllerConfig, LaneKeepingController
from sim.runlog import FrameLog
from sim.types import Control, EgoState, Observation

if TYPE_CHECKING:
    from scenarios.schema import Scenario

log = logging.getLogger("sim.loop")

DRIVES = ("autopilot", "model")
JUNCTION_POLICIES = ("hold", "autopilot")
#: Files a run writes into its folder (what --overwrite may replace).
OUTPUTS = ("frames.parquet", "frames.parquet.partial", "summary.json", "report.html", "strip", "screenshots")
ROAD_TAGS = (tags.ROAD, tags.ROAD_LINE)


class LoopError(RuntimeError):
    """An expected failure of the loop (output folder taken, no models); the message says what to do."""


# ----------------------------------------------------------------------------- protocols


class TimingLike(Protocol):
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float


class PredictorLike(Protocol):
    """What the loop needs of a model (``perception.predictor.Predictor`` fits)."""

    name: str
    scheme: str
    input_size: tuple[int, int]

    def warmup(self) -> None: ...

    def predict_timed(self, rgb: np.ndarray) -> tuple[np.ndarray, TimingLike]: ...


class Scorer(Protocol):
    """Per-frame scores and their accumulation (``perception.metrics.BinaryConfusion`` fits)."""

    def update(self, pred: np.ndarray, truth: np.ndarray) -> Any: ...

    def compute(self) -> dict[str, Any]: ...


@dataclass
class ModelSlot:
    """One model in the loop: a unique display name, its predictor and what to report about it."""

    name: str
    predictor: PredictorLike
    path: str = ""
    size_bytes: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return str(getattr(self.predictor, "scheme", "float"))


@dataclass
class LoopConfig:
    """Everything a run needs besides the models; plain values, no argparse namespace."""

    scenario: Scenario
    out: Path
    run: str = ""
    seed: int | None = None
    frames: int | None = None  # overrides the scenario's length when given
    drive: str = "autopilot"
    realtime: bool = False
    backend: str = "embedded"
    backend_kwargs: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    runtime: str = "torch"
    truth_tags: tuple[int, ...] = tags.LANE_TAGS
    progress: bool = False
    flush_every_s: float = 1.0
    overlap_sim: bool = True  # autopilot drive: step the simulator in a thread while the models run
    strip_size: int = 8
    controller: ControllerConfig | None = None
    junctions: str = "autopilot"  # model drive: "autopilot" (navigator in junctions) or "hold" (see module doc)
    end_on_collision: bool = True
    off_road_m: float = 8.0
    off_road_s: float = 1.0
    stuck_s: float = 10.0
    handover_exit_m: float = 12.0  # junctions="autopilot": metres past a junction still driven by the backend
    command: str = ""

    @property
    def seed_value(self) -> int:
        return self.scenario.seed if self.seed is None else int(self.seed)


@dataclass
class LoopTimes:
    """Where the wall-clock time of a run went [s]; `frames` counts model-frames."""

    reset_s: float = 0.0  # episode starts (building a town the first time): not per-frame work
    sim_s: float = 0.0
    preprocess_s: float = 0.0
    inference_s: float = 0.0
    postprocess_s: float = 0.0
    score_s: float = 0.0
    control_s: float = 0.0
    log_s: float = 0.0
    view_s: float = 0.0
    other_s: float = 0.0
    wall_s: float = 0.0
    ticks: int = 0
    frames: int = 0

    def per_tick_ms(self) -> dict[str, float]:
        """Each part's mean wall time per loop tick [ms] (a tick runs every model once in autopilot mode);
        `wall_ms` leaves the episode starts out, `harness_ms` is everything but the models' inference."""
        n = max(self.ticks, 1)
        out = {k[:-2] + "_ms": 1000.0 * v / n for k, v in asdict(self).items() if k.endswith("_s") and k != "reset_s"}
        out["wall_ms"] = 1000.0 * (self.wall_s - self.reset_s) / n
        out["harness_ms"] = out["wall_ms"] - out["inference_ms"]
        out["reset_s"] = self.reset_s
        return out


@dataclass
class RunResult:
    """What a run produced."""

    out: Path
    summary: dict[str, Any]
    interrupted: bool
    times: LoopTimes


@dataclass
class ViewModel:
    """One model's state for the live view."""

    name: str
    scheme: str
    mask: np.ndarray
    iou: float
    running_iou: float
    latency_ms: float
    p90_ms: float
    fps: float
    latencies: list[float]
    deadline_missed: bool


@dataclass
class ViewFrame:
    """What the live view draws for one frame."""

    frame: int
    sim_time: float
    rgb: np.ndarray
    truth: np.ndarray
    models: list[ViewModel]
    speed: float
    steer: float
    loop_fps: float
    drive: str
    active: int | None = None  # the model driving (model mode)
    guide: np.ndarray | None = None  # (N, 2) pixel (u, v) of the estimated lane centre


# ----------------------------------------------------------------------------- helpers


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create the run folder; refuse one that holds a run unless `overwrite` (then clear only our files)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LoopError(f"{out} exists and is not a folder (choose another --out)")
    taken = [name for name in OUTPUTS if (out / name).exists()]
    if taken and not overwrite:
        raise LoopError(f"{out} already holds a run ({', '.join(taken)}) (pass --overwrite or choose another --out)")
    for name in taken:
        p = out / name
        if p.is_dir():
            for f in sorted(p.rglob("*"), reverse=True):
                f.rmdir() if f.is_dir() else f.unlink()
            p.rmdir()
        else:
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _nan(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python numbers, tuples -> lists (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic JSON write (temporary file, then rename), so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)


class _StopRequest:
    """SIGINT/SIGTERM set a flag the loop checks once per frame; a second SIGINT raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.reason = "interrupted"

    @contextmanager
    def installed(self) -> Iterator[_StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, old in self._old.items():
                signal.signal(sig, old)


# ----------------------------------------------------------------------------- lane keeping


@dataclass
class LaneKeepingMeter:
    """Lane-keeping metrics from the ground-truth ego state (scoring only, never control).

    A departure is |lateral offset| > lane width / 2 outside junctions, counted once per
    excursion (junction frames neither start nor end one). Collisions count contacts
    (rising edges of the collision flag).
    """

    departures: int = 0
    collisions: int = 0
    offset_sum: float = 0.0
    offset_max: float = 0.0
    offset_frames: int = 0
    distance: float = 0.0
    _out: bool = False
    _hit: bool = False

    def update(self, ego: EgoState) -> bool:
        """Add one frame; return whether the car is out of its lane now."""
        self.distance = ego.distance
        if ego.collision and not self._hit:
            self.collisions += 1
        self._hit = ego.collision
        if ego.in_junction or ego.lateral_offset is None or ego.lane_width is None:
            return False
        off = abs(ego.lateral_offset)
        self.offset_sum += off
        self.offset_frames += 1
        self.offset_max = max(self.offset_max, off)
        out = off > ego.lane_width / 2.0
        if out and not self._out:
            self.departures += 1
        self._out = out
        return out

    def summary(self, target_m: float) -> dict[str, Any]:
        km = self.distance / 1000.0
        return {
            "distance_m": self.distance,
            "lane_departures": self.departures,
            "departures_per_km": self.departures / km if km > 0 else float("nan"),
            "mean_abs_offset_m": self.offset_sum / self.offset_frames if self.offset_frames else float("nan"),
            "max_abs_offset_m": self.offset_max if self.offset_frames else float("nan"),
            "collisions": self.collisions,
            "target_m": target_m,
            "route_completion": self.distance / target_m if target_m > 0 else float("nan"),
        }


# ----------------------------------------------------------------------------- per-model state


class _Track:
    """One model's state through an episode: realtime clock, mask in use, scores, latencies."""

    def __init__(self, slot: ModelSlot, scorer: Scorer, frame_shape: tuple[int, int]) -> None:
        self.slot = slot
        self.scorer = scorer
        self.mask = np.zeros(frame_shape, bool)  # the mask in use (all False before the first one)
        self.busy_until = -math.inf
        self.pending: tuple[np.ndarray, float] | None = None
        self.latency: list[float] = []
        self.split: list[tuple[float, float, float]] = []
        self.recent: deque[float] = deque(maxlen=120)
        self.misses = 0
        self.frames = 0
        self.lane_iou_sum = 0.0
        self.lane_iou_frames = 0
        self.meter = LaneKeepingMeter()
        self.end_reason = "not_run"
        self.sim_time = 0.0
        self.last_iou = float("nan")

    def perceive(
        self, rgb: np.ndarray, t: float, dt: float, realtime: bool, times: LoopTimes
    ) -> tuple[bool, TimingLike | None, bool]:
        """Run (or skip, when busy in real time) the model on this frame.

        Returns (a new mask is in use for this frame's control, timing if it ran, missed).
        """
        fresh = False
        if realtime and self.pending is not None and self.pending[1] <= t + dt + 1e-9:
            self.mask, self.pending, fresh = self.pending[0], None, True
        if realtime and self.busy_until > t + 1e-9:
            return fresh, None, True
        mask, timing = self.slot.predictor.predict_timed(rgb)
        times.preprocess_s += timing.preprocess_ms / 1000.0
        times.inference_s += timing.inference_ms / 1000.0
        times.postprocess_s += timing.postprocess_ms / 1000.0
        total_ms = timing.preprocess_ms + timing.inference_ms + timing.postprocess_ms
        self.latency.append(total_ms)
        self.split.append((timing.preprocess_ms, timing.inference_ms, timing.postprocess_ms))
        self.recent.append(total_ms)
        late = total_ms > dt * 1000.0
        if not realtime:
            self.mask = mask
            return True, timing, late
        ready = t + total_ms / 1000.0
        self.busy_until = ready
        if not late:
            self.mask = mask
            return True, timing, False
        self.pending = (mask, ready)
        return fresh, timing, True

    def p90(self) -> float:
        return float(np.percentile(self.recent, 90)) if self.recent else float("nan")


class _Strip:
    """The frames where models disagree most (or, with one model, where it does worst): bounded."""

    def __init__(self, size: int, min_gap: int = 20) -> None:
        self.size = size
        self.min_gap = min_gap
        self.items: list[dict[str, Any]] = []

    def offer(self, score: float, frame: int, group: str, payload: Callable[[], dict[str, Any]]) -> None:
        if self.size <= 0 or not math.isfinite(score) or score <= 0:
            return
        near = [it for it in self.items if it["group"] == group and abs(it["frame"] - frame) < self.min_gap]
        if near:
            if all(score <= it["score"] for it in near):
                return
            self.items = [it for it in self.items if it not in near]
        elif len(self.items) >= self.size:
            worst = min(self.items, key=lambda it: it["score"])
            if score <= worst["score"]:
                return
            self.items.remove(worst)
        self.items.append({"score": score, "frame": frame, "group": group, **payload()})

    def save(self, folder: Path) -> list[dict[str, Any]]:
        """PNG files (RGB, truth, one mask per model) and their index, strip/strip.json."""
        import cv2

        folder.mkdir(parents=True, exist_ok=True)
        index = []
        for it in sorted(self.items, key=lambda it: (it["group"], it["frame"])):
            stem = f"{it['group']}_{it['frame']:06d}" if it["group"] else f"{it['frame']:06d}"
            files = {"rgb": f"{stem}_rgb.png", "truth": f"{stem}_truth.png"}
            cv2.imwrite(str(folder / files["rgb"]), cv2.cvtColor(it["rgb"], cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(folder / files["truth"]), it["truth"].astype(np.uint8) * 255)
            masks = {}
            for name, mask in it["masks"].items():
                masks[name] = f"{stem}_mask_{name}.png"
                cv2.imwrite(str(folder / masks[name]), mask.astype(np.uint8) * 255)
            index.append(
                {
                    "frame": it["frame"],
                    "group": it["group"],
                    "score": it["score"],
                    "iou": it["iou"],
                    **files,
                    "masks": masks,
                }
            )
        write_json(folder / "strip.json", {"frames": index})
        return index


# ----------------------------------------------------------------------------- the loop


class Loop:
    """Runs one configured loop; `run()` returns when the episode(s) end, are interrupted or quit."""

    def __init__(
        self,
        config: LoopConfig,
        models: list[ModelSlot],
        scorer_factory: Callable[[], Scorer],
        backend_factory: Callable[..., Backend] = make_backend,
        view: Any | None = None,
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
        self.times = LoopTimes()
        self.tracks: dict[str, _Track] = {}
        self.strip = _Strip(config.strip_size)
        self._pair_scorer = scorer_factory()  # for model-vs-model disagreement (strip) only
        self.stop = _StopRequest()
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
                if keep:
                    strip = self._save_strip(out)
                    summary = self.summary(end, strip, frame_log.rows)
                    write_json(out / "summary.json", summary)
        return RunResult(out, summary, end in ("interrupted", "quit"), self.times)

    # -- episodes --------------------------------------------------------------------------
    def _planned(self) -> int | None:
        cfg = self.config
        return cfg.frames if cfg.frames is not None else cfg.scenario.frames

    def _done(self, frame: int, distance: float) -> bool:
        cfg = self.config
        if cfg.frames is not None:
            return frame >= cfg.frames
        return cfg.scenario.is_done(frame, distance)

    def _progress(self, total: int | None) -> None:
        if not self.config.progress or not sys.stderr.isatty():
            return
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="frame", desc="run_sim", file=sys.stderr, dynamic_ncols=True)

    def _new_track(self, slot: ModelSlot, obs: Observation) -> _Track:
        tr = _Track(slot, self.scorer_factory(), obs.camera.rgb.shape[:2])
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
        self._progress(self._planned())
        dt = cfg.scenario.dt
        frame = 0
        # The autopilot's next tick does not depend on the models: simulate it while they run.
        pool = ThreadPoolExecutor(1, thread_name_prefix="sim-step") if cfg.overlap_sim else None
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
                    row["lane_departure"] = tr.meter.update(obs.ego)
                    self._log(frame_log, row)
                    views.append(vm)
                self._offer_strip(obs, truth, tracks, frame)
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
        if self._bar is None:
            planned = self._planned()
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
            row["lane_departure"] = tr.meter.update(obs.ego)
            self._log(frame_log, row)
            self._offer_strip(obs, truth, [tr], frame, group=slot.name)
            guide = self._guide(ctl) if self.view is not None else None
            if not self._tick(obs, truth, [vm], frame, active=active, guide=guide):
                tr.end_reason = self.stop.reason or "quit"
                return tr.end_reason
            # Early ends, judged on ground truth (scoring only).
            ego = obs.ego
            off_road_s = off_road_s + dt if self._off_road(obs) else 0.0
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

    def _off_road(self, obs: Observation) -> bool:
        """|lateral offset| beyond the limit, or no road under the front of the car (labels)."""
        ego = obs.ego
        if ego.lateral_offset is not None and abs(ego.lateral_offset) > self.config.off_road_m:
            return True
        labels = obs.camera.labels
        h, w = labels.shape
        patch = labels[h - max(h // 20, 2) :, w // 2 - max(w // 40, 2) : w // 2 + max(w // 40, 2)]
        return bool(np.isin(patch, ROAD_TAGS).mean() < 0.5)

    # -- per frame -------------------------------------------------------------------------
    def _score_and_row(
        self,
        tr: _Track,
        obs: Observation,
        truth: np.ndarray,
        timing: TimingLike | None,
        missed: bool,
        steer: float,
        frame: int,
    ) -> tuple[dict[str, Any], ViewModel | None]:
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
        row = {
            "run": self.run_name,
            "model": tr.slot.name,
            "scenario": self.config.scenario.name,
            "seed": self.config.seed_value,
            "frame": frame,
            "sim_time": float(obs.sim_time),
            "iou": float(s.iou),
            "precision": float(s.precision),
            "recall": float(s.recall),
            "lane_px_true": int(s.lane_px_true),
            "lane_px_pred": int(s.lane_px_pred),
            "preprocess_ms": pre,
            "inference_ms": inf,
            "postprocess_ms": post,
            "total_ms": pre + inf + post,
            "inferred": timing is not None,
            "deadline_missed": bool(missed),
            "speed": float(ego.speed),
            "distance": float(ego.distance),
            "lateral_offset": _nan(ego.lateral_offset),
            "heading_error": _nan(ego.heading_error),
            "steer": float(steer),
            "lane_departure": False,
            "collision": bool(ego.collision),
            "weather": obs.weather or self.config.scenario.weather_at(frame).name,
            "in_junction": bool(ego.in_junction),
        }
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

    def _log(self, frame_log: FrameLog, row: dict[str, Any]) -> None:
        t = time.perf_counter()
        frame_log.append(row)
        self.times.log_s += time.perf_counter() - t

    def _offer_strip(
        self, obs: Observation, truth: np.ndarray, tracks: list[_Track], frame: int, group: str = ""
    ) -> None:
        if self.strip.size <= 0:
            return
        t = time.perf_counter()
        ious = {tr.slot.name: tr.last_iou for tr in tracks}
        if len(tracks) > 1:
            # Disagreement: mean over model pairs of 1 - IoU(mask a, mask b), with the one injected IoU.
            pair = []
            for i, a in enumerate(tracks):
                for b in tracks[i + 1 :]:
                    v = float(self._pair_scorer.update(a.mask, b.mask).iou)
                    if math.isfinite(v):
                        pair.append(1.0 - v)
            score = float(np.mean(pair)) if pair else math.nan
        else:
            # One model: its worst frames (1 - IoU against the truth) among frames with lane pixels.
            score = 1.0 - ious[tracks[0].slot.name] if truth.any() else math.nan

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
        cfg = self.config
        tr = self.tracks.get(slot.name)
        info = {
            "name": slot.name,
            "path": slot.path,
            "scheme": slot.scheme,
            "size_bytes": slot.size_bytes,
            "size_mb": slot.size_bytes / 1e6,
            **slot.info,
        }
        if tr is None:
            return {**info, "frames": 0, "episode": {"frames": 0, "end_reason": "not_run", "ended_early": False}}
        scores = tr.scorer.compute()
        lat = np.asarray(tr.latency, float)
        split = np.asarray(tr.split, float).reshape(-1, 3)

        def pct(q: float) -> float:
            return float(np.percentile(lat, q)) if lat.size else math.nan

        budget_ms = cfg.scenario.dt * 1000.0
        planned = self._planned()
        target = (
            cfg.scenario.metres
            if cfg.frames is None and cfg.scenario.metres is not None
            else cfg.scenario.target_speed * (planned or tr.frames) * cfg.scenario.dt
        )
        lane = tr.meter.summary(target)
        return {
            **info,
            "frames": tr.frames,
            "inferred_frames": int(lat.size),
            "mean_iou": scores.get("mean_frame_iou"),
            "dataset_iou": scores.get("iou"),
            "iou_lane_frames": tr.lane_iou_sum / tr.lane_iou_frames if tr.lane_iou_frames else math.nan,
            "precision": scores.get("precision"),
            "recall": scores.get("recall"),
            "empty_frames": scores.get("empty_frames"),
            "latency_ms": {
                "p50": pct(50),
                "p90": pct(90),
                "p99": pct(99),
                "max": float(lat.max()) if lat.size else math.nan,
                "mean": float(lat.mean()) if lat.size else math.nan,
                "preprocess_mean": float(split[:, 0].mean()) if lat.size else math.nan,
                "inference_mean": float(split[:, 1].mean()) if lat.size else math.nan,
                "postprocess_mean": float(split[:, 2].mean()) if lat.size else math.nan,
            },
            "fps": 1000.0 / float(lat.mean()) if lat.size and lat.mean() > 0 else math.nan,
            "frame_budget_ms": budget_ms,
            "deadline_misses": tr.misses,
            "deadline_miss_rate": tr.misses / tr.frames if tr.frames else math.nan,
            "episode": {
                "frames": tr.frames,
                "sim_time_s": tr.sim_time,
                "end_reason": tr.end_reason,
                "ended_early": tr.end_reason not in ("completed",),
            },
            "lane_keeping": lane if cfg.drive == "model" else None,
            "autopilot_lane_keeping": lane if cfg.drive == "autopilot" else None,
        }

    def summary(self, end: str, strip: list[dict[str, Any]], rows: int) -> dict[str, Any]:
        cfg = self.config
        sc = cfg.scenario
        cam = sc.cameras[0]
        return {
            "run": self.run_name,
            "created": self.started,
            "command": cfg.command,
            "scenario": sc.name,
            "scenario_source": sc.source,
            "town": sc.town,
            "weathers": [w.name for w in sc.weathers],
            "seed": cfg.seed_value,
            "drive": cfg.drive,
            "realtime": cfg.realtime,
            "junctions": cfg.junctions if cfg.drive == "model" else None,
            "backend": cfg.backend,
            "dt": sc.dt,
            "target_speed": sc.target_speed,
            "frames_planned": self._planned(),
            "camera": asdict(cam),
            "threads": cfg.threads,
            "runtime": cfg.runtime,
            "end": end,
            "interrupted": end in ("interrupted", "quit"),
            "rows": rows,
            "loop_fps": self.times.ticks / max(self.times.wall_s - self.times.reset_s, 1e-9),
            "loop_ms_per_tick": self.times.per_tick_ms(),
            "loop_ticks": self.times.ticks,
            "strip": len(strip),
            "models": [self.model_summary(slot) for slot in self.models],
        }


def run_loop(
    config: LoopConfig,
    models: list[ModelSlot],
    scorer_factory: Callable[[], Scorer],
    backend_factory: Callable[..., Backend] = make_backend,
    view: Any | None = None,
) -> RunResult:
    """Run the closed loop once (see the module doc); outputs go to ``config.out``."""
    return Loop(config, models, scorer_factory, backend_factory, view).run()


__all__ = [
    "DRIVES",
    "LaneKeepingMeter",
    "Loop",
    "LoopConfig",
    "LoopError",
    "LoopTimes",
    "ModelSlot",
    "PredictorLike",
    "RunResult",
    "Scorer",
    "ViewFrame",
    "ViewModel",
    "prepare_out",
    "run_loop",
    "write_json",
]
