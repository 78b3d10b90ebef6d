"""The harness's parts one by one: the lane-keeping meter, the episode endings, cruise control,
the lane estimator alone, the simulator overlap, the Pareto front and the report of a model drive.

`ScriptedWorld` below is a TEST DOUBLE for a backend: it replays ego states a test writes,
so an ending (collision, stuck) can be provoked exactly; the real backends are tested in
test_sim.py and test_carla_backend.py.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.contracts import LoopConfig, ModelSlot
from harness.drivers import LaneEstimator, acc_accel
from harness.loop import SIM_THREAD_NICE, run_loop
from harness.meter import LaneKeepingMeter
from harness.oracle import GroundTruthMaskPredictor, StatedTiming, truth_backend
from harness.report import pareto_front, write_report
from perception.metrics import BinaryConfusion
from scenarios import load_scenario
from sim import tags
from sim.backend import make_backend
from sim.types import CameraFrame, CameraSpec, EgoState, Observation

CAM = CameraSpec(width=64, height=32)


def ego(**kw: object) -> EgoState:
    base = dict(x=0.0, y=0.0, z=0.0, yaw=0.0, speed=5.0, lane_width=3.5, lateral_offset=0.0)
    base.update(kw)
    return EgoState(**base)


# ----------------------------------------------------------------------------- lane-keeping meter


def test_meter_counts_each_departure_once_and_ignores_junctions() -> None:
    m = LaneKeepingMeter()
    offsets = [0.0, 1.0, 2.0, 2.2, 1.0, 0.0, -1.9, -2.0, 0.1]  # two excursions beyond 1.75 m
    outs = [m.update(ego(lateral_offset=o, distance=10.0 * i)) for i, o in enumerate(offsets)]
    assert outs == [False, False, True, True, False, False, True, True, False]
    assert m.departures == 2 and m.offset_max == pytest.approx(2.2)
    # In a junction the offset says nothing: no departure starts there, and none ends there.
    assert not m.update(ego(lateral_offset=3.0, in_junction=True, distance=80.0))
    assert m.departures == 2 and m.offset_frames == len(offsets)
    s = m.summary(target_m=200.0)
    assert s["lane_departures"] == 2 and s["departures_per_km"] == pytest.approx(2 / 0.08)
    assert s["route_completion"] == pytest.approx(80.0 / 200.0)


def test_meter_counts_collisions_as_contacts() -> None:
    m = LaneKeepingMeter()
    for hit in [False, True, True, False, True, False]:
        m.update(ego(collision=hit))
    assert m.collisions == 2


# ----------------------------------------------------------------------------- episode endings


class ScriptedWorld:
    """TEST DOUBLE of a backend: replays `script(frame) -> EgoState` on an all-road camera."""

    def __init__(self, script) -> None:  # noqa: ANN001 - a test's function
        self.script = script
        self.frame = 0
        self.closed = False

    def _obs(self) -> Observation:
        labels = np.full((CAM.height, CAM.width), tags.ROAD, np.uint8)
        rgb = np.zeros((CAM.height, CAM.width, 3), np.uint8)
        cam = CameraFrame(CAM, rgb, labels)
        return Observation(self.frame, self.frame * 0.05, self.script(self.frame), {"front": cam})

    def reset(self, scenario: object, seed: int | None = None) -> Observation:
        self.frame = 0
        return self._obs()

    def step(self, control: object = None) -> Observation:
        self.frame += 1
        return self._obs()

    def close(self) -> None:
        self.closed = True


class BlindModel:
    """A model that sees no lane (an empty mask), with a stated latency."""

    name, scheme, input_size = "blind", "float", (CAM.height, CAM.width)

    def warmup(self) -> None:
        pass

    def predict_timed(self, rgb: np.ndarray) -> tuple[np.ndarray, StatedTiming]:
        return np.zeros(rgb.shape[:2], bool), StatedTiming(0.0, 1.0, 0.0)


def _scripted_run(tmp_path: Path, script, **kw: object) -> dict:  # noqa: ANN001
    worlds: list[ScriptedWorld] = []

    def factory(name: str, **_: object) -> ScriptedWorld:
        worlds.append(ScriptedWorld(script))
        return worlds[-1]

    sc = replace(load_scenario("town03_clear"), cameras=(CAM,))
    cfg = LoopConfig(scenario=sc, out=tmp_path, frames=400, drive="model", strip_size=0, **kw)
    result = run_loop(cfg, [ModelSlot("blind", BlindModel())], BinaryConfusion, backend_factory=factory)
    assert worlds and worlds[0].closed
    return result.summary["models"][0]


def test_episode_ends_on_collision(tmp_path: Path) -> None:
    s = _scripted_run(tmp_path / "hit", lambda f: ego(distance=0.25 * f, collision=f >= 7))
    assert s["episode"]["end_reason"] == "collision" and s["frames"] == 8
    assert s["lane_keeping"]["collisions"] == 1
    # With end_on_collision off the same contact is counted and the episode runs on.
    s = _scripted_run(tmp_path / "on", lambda f: ego(distance=0.25 * f, collision=f >= 7), end_on_collision=False)
    assert s["episode"]["end_reason"] == "completed" and s["frames"] == 400


def test_episode_ends_when_stuck(tmp_path: Path) -> None:
    # Standing still: after the 3 s start allowance, stuck_s seconds more end the episode.
    s = _scripted_run(tmp_path / "stuck", lambda f: ego(speed=0.0), stuck_s=1.0)
    assert s["episode"]["end_reason"] == "stuck"
    assert s["frames"] == pytest.approx((3.0 + 1.0) / 0.05, abs=2)


def test_episode_ends_off_road(tmp_path: Path) -> None:
    s = _scripted_run(tmp_path / "off", lambda f: ego(lateral_offset=0.0 if f < 10 else 9.0), off_road_s=0.52)
    assert s["episode"]["end_reason"] == "off_road" and s["frames"] == 10 + 11  # 11 frames of 0.05 s


# ----------------------------------------------------------------------------- drivers


def test_acc_accelerates_on_a_free_road_and_brakes_behind_a_close_car() -> None:
    assert acc_accel(5.0, 10.0, gap=500.0, dv=0.0) > 1.5  # far below the set speed, nobody ahead
    assert acc_accel(10.0, 10.0, gap=500.0, dv=0.0) == pytest.approx(0.0, abs=0.01)  # at the set speed
    assert acc_accel(10.0, 10.0, gap=8.0, dv=3.0) < -3.0  # closing in on a car 8 m ahead
    # Monotone in the gap: more room, more acceleration.
    gaps = [5.0, 10.0, 20.0, 40.0, 80.0]
    accel = [acc_accel(8.0, 10.0, g, 0.0) for g in gaps]
    assert accel == sorted(accel)


def _lane_points(offset: float, curvature: float = 0.0, width: float = 3.5) -> np.ndarray:
    xs = np.linspace(3.0, 25.0, 60)
    centre = offset + 0.5 * curvature * xs**2
    left = np.stack([xs, centre + width / 2], 1)
    right = np.stack([xs, centre - width / 2], 1)
    return np.concatenate([left, right])


def test_lane_estimator_finds_the_lane_centre_and_width() -> None:
    est = LaneEstimator()
    for _ in range(30):  # the width is smoothed from the 3.5 m default
        e = est.update(_lane_points(0.4, width=3.2), dt=0.05)
    assert e.seen_left and e.seen_right
    assert float(e.centre_y(0.0)) == pytest.approx(0.4, abs=0.05)
    assert e.width == pytest.approx(3.2, abs=0.1)
    # A bend to the left is seen as positive curvature.
    bend = LaneEstimator()
    for _ in range(8):
        e = bend.update(_lane_points(0.0, curvature=0.01), dt=0.05)
    assert e.curvature == pytest.approx(0.01, abs=0.004)


def test_lane_estimator_without_markings_holds_then_straightens() -> None:
    est = LaneEstimator()
    for _ in range(8):
        est.update(_lane_points(0.0, curvature=0.01), dt=0.05)
    before = est.estimate.curvature
    for _ in range(100):  # 5 s blind
        est.propagate(speed=5.0, yaw_rate=0.0, dt=0.05)
        e = est.update(np.zeros((0, 2)), dt=0.05)
    assert e.lost_s >= 4.9 and abs(e.curvature) < 0.2 * abs(before)


# ----------------------------------------------------------------------------- loop and report


def _truth_run(out: Path, **kw: object) -> tuple[pd.DataFrame, dict]:
    pred = GroundTruthMaskPredictor()
    cfg = LoopConfig(scenario=load_scenario("town03_clear"), out=out, frames=30, strip_size=2, **kw)
    result = run_loop(cfg, [ModelSlot(pred.name, pred)], BinaryConfusion, backend_factory=truth_backend(pred))
    return pd.read_parquet(out / "frames.parquet"), result.summary


def test_overlapping_the_simulator_changes_no_frame(tmp_path: Path) -> None:
    on, _ = _truth_run(tmp_path / "on", overlap_sim=True)
    off, _ = _truth_run(tmp_path / "off", overlap_sim=False)
    same = [c for c in on.columns if not c.endswith("_ms") and c != "run"]
    pd.testing.assert_frame_equal(on[same], off[same])
    assert on["distance"].iloc[-1] > 0 and (on["iou"] == 1.0).all()


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are a POSIX feature")
def test_the_overlapped_simulator_step_yields_its_core_to_the_models(tmp_path: Path) -> None:
    """The step thread runs niced, so it does not stretch the models' inference (issue 15)."""
    seen: dict[str, list[int]] = {}

    def watching(name: str, **kwargs: object) -> object:
        backend = make_backend(name, **kwargs)
        step = backend.step

        def watched_step(control: object = None, **kw: object) -> object:
            tid = threading.get_native_id()
            key = "main" if tid == main_tid else "other"
            seen.setdefault(key, []).append(os.getpriority(os.PRIO_PROCESS, tid))
            return step(control, **kw)

        backend.step = watched_step
        return backend

    main_tid = threading.get_native_id()
    base = os.getpriority(os.PRIO_PROCESS, main_tid)
    pred = GroundTruthMaskPredictor()
    for overlap in (True, False):
        cfg = LoopConfig(
            scenario=load_scenario("town03_clear"), out=tmp_path / str(overlap), frames=6, strip_size=0,
            overlap_sim=overlap,
        )  # fmt: skip
        run_loop(cfg, [ModelSlot(pred.name, pred)], BinaryConfusion, backend_factory=truth_backend(pred, watching))
    assert set(seen["other"]) == {min(base + SIM_THREAD_NICE, 19)}  # overlapped: off the main thread, niced
    assert set(seen["main"]) == {base}  # sequential: on the main thread, which stays as it was
    assert os.getpriority(os.PRIO_PROCESS, main_tid) == base


def test_pareto_front() -> None:
    pts = [(10.0, 0.9), (5.0, 0.8), (12.0, 0.85), (5.0, 0.7), (20.0, 0.95), (math.nan, 0.99)]
    # (12, .85) is beaten by (10, .9); (5, .7) by (5, .8); NaN never counts.
    assert pareto_front(pts) == [1, 0, 4]
    assert pareto_front([]) == [] and pareto_front([(1.0, 0.5)]) == [0]


def test_report_of_a_model_drive_run(tmp_path: Path) -> None:
    out = tmp_path / "drive"
    _, summary = _truth_run(out, drive="model")
    assert summary["drive"] == "model" and summary["models"][0]["lane_keeping"]["distance_m"] > 0
    page = write_report(out).read_text()
    assert "ground_truth_mask" in page and "lane" in page.lower()
    assert "<img" in page  # the plots and the strip are embedded


def test_overlap_auto_steps_beside_the_models_only_with_a_free_core(monkeypatch: pytest.MonkeyPatch) -> None:
    import run_sim

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert run_sim.overlap_sim("auto", 1) and not run_sim.overlap_sim("auto", 2)
    assert not run_sim.overlap_sim("auto", None)  # default threads: every core to the runtime
    assert run_sim.overlap_sim("on", 2) and not run_sim.overlap_sim("off", 1)
