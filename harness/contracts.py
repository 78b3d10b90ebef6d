"""The loop's contracts: what it needs of models and scorers, its configuration and its results.

Plain data classes and protocols only, so the view, the report, benchmarks and tests can
use them without importing the loop. Predictors and scorers are duck-typed: the harness
knows nothing of torch; ``run_sim.py`` passes ``perception.predictor`` objects and
``perception.metrics.BinaryConfusion`` in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from harness.drivers.lane_keeper import ControllerConfig
from sim import tags

if TYPE_CHECKING:
    from scenarios.schema import Scenario

DRIVES = ("autopilot", "model")
JUNCTION_POLICIES = ("hold", "autopilot")


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
    record_s: float = 0.0  # --rosbag: converting and writing the frame's messages
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


__all__ = [
    "DRIVES",
    "JUNCTION_POLICIES",
    "LoopConfig",
    "LoopError",
    "LoopTimes",
    "ModelSlot",
    "PredictorLike",
    "RunResult",
    "Scorer",
    "TimingLike",
    "ViewFrame",
    "ViewModel",
]
