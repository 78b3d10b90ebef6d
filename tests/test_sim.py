"""The embedded simulator: determinism, label/RGB alignment, content, autopilot, performance hooks."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from scenarios import Scenario, list_scenarios, load_scenario
from sim import make_backend, tags
from sim.backend import BackendError
from sim.types import PRESET_NAMES, CameraSpec, Control, Weather

SMALL = CameraSpec(width=160, height=80)


def run(scenario: Scenario, seed: int | None, steps: int, control: Control | None = None):
    with make_backend("embedded") as sim:
        obs = [sim.reset(scenario, seed)]
        for _ in range(steps):
            obs.append(sim.step(control))
    return obs


def test_same_seed_same_frames_other_seed_different():
    sc = Scenario(town="Town03", seed=5, cameras=(SMALL,), npc_vehicles=8)
    a = run(sc, None, 40)
    b = run(sc, None, 40)
    c = run(sc, 6, 40)
    for oa, ob in zip(a, b, strict=True):
        assert np.array_equal(oa.camera.rgb, ob.camera.rgb)
        assert np.array_equal(oa.camera.labels, ob.camera.labels)
        assert oa.ego == ob.ego
    assert not np.array_equal(a[-1].camera.rgb, c[-1].camera.rgb)


def test_observation_contract():
    sc = Scenario(town="Town01", seed=1, cameras=(CameraSpec(), replace(SMALL, name="wide", fov_deg=110)))
    obs = run(sc, None, 3)
    last = obs[-1]
    assert [o.frame for o in obs] == [0, 1, 2, 3]
    assert last.sim_time == pytest.approx(3 * sc.dt)
    assert set(last.cameras) == {"front", "wide"}
    front = last.cameras["front"]
    assert front.rgb.shape == (160, 320, 3) and front.rgb.dtype == np.uint8
    assert front.labels.shape == (160, 320) and front.labels.dtype == np.uint8
    k = front.intrinsics
    assert k[0, 0] == pytest.approx(160.0) and k[0, 2] == 160 and k[1, 2] == 80  # FOV 90 at 320 px
    assert last.weather == "ClearNoon" and last.town == "Town01"
    assert last.ego.lane_width == pytest.approx(3.5)


def _neighbour_pairs(labels: np.ndarray, rgb: np.ndarray):
    """Horizontally adjacent (Road, RoadLine) pixel pairs: luminance of each side."""
    lum = rgb.astype(np.int32).sum(-1)
    left, right = labels[:, :-1], labels[:, 1:]
    road_line = (left == tags.ROAD) & (right == tags.ROAD_LINE)
    line_road = (left == tags.ROAD_LINE) & (right == tags.ROAD)
    road_l = np.concatenate([lum[:, :-1][road_line], lum[:, 1:][line_road]])
    mark_l = np.concatenate([lum[:, 1:][road_line], lum[:, :-1][line_road]])
    return road_l, mark_l


@pytest.mark.parametrize("weather", [n for n in PRESET_NAMES if n != "Default"])
def test_lane_labels_are_the_bright_marking_pixels_in_every_weather(weather):
    sc = Scenario(town="Town03", seed=2, weathers=(Weather.preset(weather),), npc_vehicles=0)
    obs = run(sc, None, 30)[-1]
    labels, rgb = obs.camera.labels, obs.camera.rgb
    road_l, mark_l = _neighbour_pairs(labels, rgb)
    assert len(road_l) > 50, "expected lane markings in view"
    brighter = np.mean(mark_l > road_l)
    assert brighter > 0.9, f"{weather}: only {brighter:.0%} of marking edges are brighter than the road"
    # The check can fail: labels shifted by two pixels no longer line up with the RGB edges.
    shifted = np.roll(labels, 2, axis=1)
    road_s, mark_s = _neighbour_pairs(shifted, rgb)
    assert np.mean(mark_s > road_s) < brighter - 0.2


def test_weather_changes_rgb_not_labels():
    base = Scenario(town="Town03", seed=4, cameras=(SMALL,))
    frames = {}
    for name in ("ClearNoon", "HardRainNight", "WetSunset"):
        frames[name] = run(replace(base, weathers=(Weather.preset(name),)), None, 10)[-1].camera
    ref = frames["ClearNoon"]
    for name in ("HardRainNight", "WetSunset"):
        assert np.array_equal(frames[name].labels, ref.labels)
        diff = np.abs(frames[name].rgb.astype(int) - ref.rgb.astype(int)).mean()
        assert diff > 10, f"{name} looks like ClearNoon (mean diff {diff:.1f})"
    night = frames["HardRainNight"].rgb.mean()
    assert night < ref.rgb.mean() * 0.6


def test_custom_weather_parameters():
    w = Weather.from_params({"sun_altitude_angle": -30, "fog_density": 80})
    assert w.is_night and w.fog_density == 80.0
    with pytest.raises(ValueError, match="unknown weather parameter"):
        Weather.from_params({"sunshine": 1})


def test_labels_valid_and_typical_frame_content():
    sc = Scenario(town="Town03", seed=3, npc_vehicles=24)
    seen: set[int] = set()
    for obs in run(sc, None, 120)[::10]:
        labels = obs.camera.labels
        assert tags.is_valid(labels)
        seen |= set(np.unique(labels).tolist())
    for tag in (tags.ROAD, tags.ROAD_LINE, tags.SIDEWALK, tags.SKY, tags.BUILDING, tags.VEGETATION, tags.POLE):
        assert tag in seen, f"{tags.NAMES[tag]} never seen"
    assert seen & {tags.CAR, tags.TRUCK}, "traffic on but no vehicle in 120 frames"


def test_no_traffic_means_no_vehicles():
    sc = Scenario(town="Town03", seed=3, npc_vehicles=0, cameras=(SMALL,))
    for obs in run(sc, None, 60)[::6]:
        assert not np.isin(obs.camera.labels, [tags.CAR, tags.TRUCK]).any()


@pytest.mark.parametrize("name", list_scenarios())
def test_autopilot_keeps_lane_for_two_minutes(name):
    sc = load_scenario(name)
    sc = replace(sc, cameras=(CameraSpec(width=32, height=16),))
    steps = int(120 / sc.dt)
    worst = 0.0
    with make_backend("embedded") as sim:
        obs = sim.reset(sc)
        for _ in range(steps):
            obs = sim.step()
            assert not obs.ego.collision, f"collision at frame {obs.frame}"
            if not obs.ego.in_junction:
                worst = max(worst, abs(obs.ego.lateral_offset))
    assert worst < obs.ego.lane_width / 2, f"left the lane by {worst:.2f} m"
    assert obs.ego.distance > 400, f"only {obs.ego.distance:.0f} m in two minutes"


def test_manual_control_steers_the_ego():
    sc = Scenario(town="Town04", seed=0, npc_vehicles=0, cameras=(SMALL,))
    straight = run(sc, None, 40, Control(throttle=0.6))[-1].ego
    left = run(sc, None, 40, Control(throttle=0.6, steer=-0.5))[-1].ego
    assert straight.speed > 3
    yaw_change = (left.yaw - straight.yaw + np.pi) % (2 * np.pi) - np.pi
    assert yaw_change > 0.3  # negative steer turns left (CARLA convention)


def test_driving_into_a_building_is_a_collision():
    sc = Scenario(town="Town01", seed=0, npc_vehicles=0, cameras=(SMALL,))
    hit = False
    with make_backend("embedded") as sim:
        sim.reset(sc)
        for _ in range(400):
            obs = sim.step(Control(throttle=0.5, steer=0.35))
            hit |= obs.ego.collision
    assert hit


def test_unknown_town_is_a_clear_error():
    with make_backend("embedded") as sim, pytest.raises(BackendError, match="unknown town 'Town99'.*Town03"):
        sim.reset(Scenario(town="Town99"))


def test_unknown_backend():
    with pytest.raises(BackendError, match="unknown backend"):
        make_backend("gazebo")


def test_sim_does_not_import_torch():
    code = (
        "import sys, sim, sim.embedded.backend, sim.preview, scenarios;"
        "from sim import make_backend; make_backend('embedded');"
        "assert 'torch' not in sys.modules, 'sim imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_skipping_render_changes_nothing_but_the_images():
    sc = Scenario(town="Town03", seed=9, cameras=(SMALL,))
    full = run(sc, None, 12)
    with make_backend("embedded") as sim:
        sim.reset(sc)
        for k in range(12):
            obs = sim.step(render=k == 11)
            if k < 11:
                assert obs.cameras == {}
    assert obs.ego == full[-1].ego
    assert np.array_equal(obs.camera.rgb, full[-1].camera.rgb)
