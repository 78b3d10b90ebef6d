"""Tests of the CARLA backend.

Where each layer lives:
- pure functions, checked against the real `carla` 0.9.16 module: here;
- the backend against the embedded world served as a CARLA server (`python -m sim.carla_server`)
  with the real client: tests/carla_server_live.py (run by tests/test_carla_server.py in a
  process of its own): reset settings, hero and cameras, settings restored as found, ego state,
  collisions, occupied and seeded spawn points, towns, weather, the backend contract,
  `collect/record.py --backend carla` and `run_sim.py --backend carla`;
- the backend against `tests/carla_standin.py`, an in-process STAND-IN for a CARLA world: here,
  only for what the server cannot produce or show: sensor data late, stale or dropped, Ctrl-C
  and SIGTERM mid-run and mid-cleanup, a server that dies (the real client aborts its process
  when its server goes), an older server version (legacy tags), `generate_opendrive_world`, and
  the exact order of client calls (cleanup, the client-side Traffic Manager);
- a test against a real CARLA server, run only when CARLA_HOST is set.
"""

from __future__ import annotations

import ast
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import carla_standin as standin
import numpy as np
import pytest

import sim.carla_backend as cb
from scenarios.schema import Scenario
from sim.backend import BackendError, make_backend
from sim.tags import LEGACY_TO_CURRENT, ROAD, ROAD_LINE, SKY
from sim.types import CameraSpec, Control, Weather

try:  # the stand-in tests below need no client; only the checks against the real module skip
    import carla
except ImportError:
    carla = None
needs_carla = pytest.mark.skipif(carla is None, reason="needs the real carla client (pip install 'laneloop[carla]')")

CAM = CameraSpec(name="front", width=32, height=16)


def scenario(**kw) -> Scenario:
    base = dict(town="Town03", seed=7, npc_vehicles=3, ego_spawn=0, cameras=(CAM,), frames=10)
    base.update(kw)
    return Scenario(**base)


def backend(server: standin.Server | None = None, **kw) -> cb.CarlaBackend:
    kw.setdefault("sensor_timeout", 0.5)
    return cb.CarlaBackend(carla_module=standin.StandinCarla(server or standin.Server()), **kw)


# -- pure functions ------------------------------------------------------------------------------


def test_bgra_to_rgb_reorders_and_copies():
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 1, 2, 3, 255
    raw = bytearray(bgra.tobytes())
    rgb = cb.bgra_to_rgb(memoryview(raw), 3, 2)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert rgb[0, 0].tolist() == [3, 2, 1]
    raw[:] = bytes(len(raw))  # CARLA reuses its buffer: the result must not change
    assert rgb[1, 2].tolist() == [3, 2, 1]
    with pytest.raises(BackendError, match="expected 3x3x4"):
        cb.bgra_to_rgb(bytes(24), 3, 3)


def test_labels_from_red_channel_and_legacy_remap():
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 2] = [[24, 1], [11, 0]]  # index 2 of BGRA is red
    bgra[..., 0] = 99  # blue must be ignored
    labels = cb.bgra_to_labels(bgra.tobytes(), 2, 2)
    assert labels.tolist() == [[ROAD_LINE, ROAD], [SKY, 0]] and labels.dtype == np.uint8
    old = np.array(list(LEGACY_TO_CURRENT), np.uint8)
    bgra = np.zeros((1, len(old), 4), np.uint8)
    bgra[0, :, 2] = old
    remapped = cb.bgra_to_labels(bgra.tobytes(), len(old), 1, legacy=True)
    assert remapped[0].tolist() == list(LEGACY_TO_CURRENT.values())
    assert remapped[0, 6] == ROAD_LINE and remapped[0, 7] == ROAD


@needs_carla
@pytest.mark.parametrize("dt", [0.005, 0.01, 0.033, 0.05, 0.1, 0.16, 0.2, 0.5])
def test_sync_settings_satisfy_carla_substepping_rule(dt):
    s = cb.sync_settings(dt)
    assert s.synchronous_mode and s.substepping and not s.no_rendering_mode
    assert s.fixed_delta_seconds == dt
    assert dt <= s.max_substep_delta_time * s.max_substeps
    assert 1 <= s.max_substeps <= 16
    if dt <= 0.16:
        assert s.max_substep_delta_time == 0.01
    real = carla.WorldSettings()  # every field is a real WorldSettings attribute, and settable
    for name, value in s.__dict__.items():
        setattr(real, name, value)
        assert getattr(real, name) == pytest.approx(value)
    with pytest.raises(ValueError):
        cb.sync_settings(0.0)


def test_coordinate_conversion_flips_y_and_yaw():
    # CARLA yaw 90 deg faces CARLA +y, which is our right (-y): our yaw is -pi/2.
    assert cb.from_carla(1.0, 2.0, 3.0, 90.0) == pytest.approx((1.0, -2.0, 3.0, -math.pi / 2))
    for pose in [(1.0, 2.0, 0.5, 0.3), (-4.0, 0.0, 0.0, -2.0)]:
        assert cb.from_carla(*cb.to_carla(*pose)) == pytest.approx(pose)
    (x, y, z), (pitch, yaw, roll) = cb.camera_pose(CameraSpec(x=0.4, y=0.5, z=1.6, pitch_deg=-10, yaw_deg=20))
    assert (x, y, z) == pytest.approx((0.4, -0.5, 1.6))  # our left is CARLA's -y
    assert (pitch, yaw, roll) == pytest.approx((-10.0, -20.0, 0.0))  # pitch is CARLA's convention


@needs_carla
def test_camera_pose_builds_a_real_carla_transform():
    (x, y, z), (pitch, yaw, roll) = cb.camera_pose(CameraSpec(x=0.4, y=0.5, z=1.6, pitch_deg=-10, yaw_deg=20))
    tf = carla.Transform(carla.Location(x=x, y=y, z=z), carla.Rotation(pitch=pitch, yaw=yaw, roll=roll))
    assert tf.location.y == pytest.approx(-0.5) and tf.rotation.pitch == pytest.approx(-10.0)


def test_lane_errors_sign_conventions():
    # Lane heading +x (east); ego 0.5 m to the left (+y), turned 0.1 rad left.
    assert cb.lane_errors(3.0, 0.5, 0.1, 0.0, 0.0, 0.0) == pytest.approx((0.5, 0.1))
    # Lane heading +y (north): left is -x.
    assert cb.lane_errors(-1.0, 5.0, math.pi / 2, 0.0, 0.0, math.pi / 2) == pytest.approx((1.0, 0.0))
    _, heading = cb.lane_errors(0, 0, math.pi - 0.05, 0, 0, -math.pi + 0.05)
    assert heading == pytest.approx(-0.1)  # wrapped, not 2*pi - 0.1


def test_versions_and_towns():
    assert cb.parse_version("0.9.16") == (0, 9, 16)
    assert cb.parse_version("0.9.13-1-g8854804f4-dirty") == (0, 9, 13)
    assert cb.parse_version("nonsense") is None
    assert cb.is_legacy_server("0.9.13") and not cb.is_legacy_server("0.9.14")
    assert cb.is_legacy_server("0.9.9") and not cb.is_legacy_server("unknown")
    assert cb.same_town("Carla/Maps/Town10HD_Opt", "Town10HD")
    assert cb.same_town("/Game/Carla/Maps/Town03", "Town03")
    assert not cb.same_town("Carla/Maps/Town03", "Town04")


@needs_carla
def test_weather_presets_match_real_carla():
    """The backend sends named presets by name: our values must be CARLA's."""
    from sim.types import PRESET_NAMES

    for name in PRESET_NAMES:
        if name == "Default":
            continue
        ours, theirs = Weather.preset(name), getattr(carla.WeatherParameters, name)
        for field in Weather.field_names():
            assert getattr(theirs, field) == pytest.approx(getattr(ours, field), abs=1e-4), (name, field)


def test_module_imports_without_carla_or_torch_and_hints_install():
    code = (
        "import sys; sys.modules['carla'] = None\n"  # makes `import carla` fail
        "import sim.carla_backend as cb\n"
        "assert 'torch' not in sys.modules\n"
        "try:\n    cb.CarlaBackend()\nexcept cb.BackendError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'laneloop[carla]'" in out.stdout


@needs_carla
def test_unreachable_server_fails_within_timeout_with_one_line():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(BackendError) as err:
        cb.CarlaBackend(host="127.0.0.1", port=port, timeout=2.0)
    elapsed = time.monotonic() - t0
    msg = str(err.value)
    assert elapsed < 2.0 + 10.0, elapsed  # the client timeout is honoured, not hung on (a loose bound)
    assert "\n" not in msg and f"127.0.0.1:{port}" in msg and "2 s" in msg


def _carla_chains(tree: ast.AST) -> set[str]:
    chains = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, cur = [], node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "carla":
                chains.add(".".join(reversed(parts)))
    return chains


@needs_carla
def test_every_carla_name_used_exists_in_real_module():
    chains = set()
    for module in (cb.__file__, Path(cb.__file__).with_name("carla_actors.py")):
        chains |= _carla_chains(ast.parse(Path(module).read_text()))
    assert {"Client", "VehicleControl", "command.SpawnActor", "command.DestroyActor"} <= chains
    missing = []
    for chain in chains:
        obj = carla
        for part in chain.split("."):
            if not hasattr(obj, part):
                missing.append(chain)
                break
            obj = getattr(obj, part)
    assert not missing, f"not in carla {carla.__file__}: {missing}"


@needs_carla
@pytest.mark.parametrize(
    "fake,real",
    [
        ("Client", "Client"),
        ("World", "World"),
        ("Map", "Map"),
        ("TrafficManager", "TrafficManager"),
        ("Waypoint", "Waypoint"),
        ("Image", "Image"),
        ("BlueprintLibrary", "BlueprintLibrary"),
        ("ActorBlueprint", "ActorBlueprint"),
        ("ActorAttribute", "ActorAttribute"),
        ("WorldSettings", "WorldSettings"),
        ("VehicleControl", "VehicleControl"),
        ("CollisionEvent", "CollisionEvent"),
        ("WorldSnapshot", "WorldSnapshot"),
        ("Timestamp", "Timestamp"),
        ("Response", "command.Response"),
        ("OpendriveGenerationParameters", "OpendriveGenerationParameters"),
    ],
)
def test_standin_names_exist_in_real_carla(fake, real):
    """The stand-in must not invent API: what the backend can call on it, CARLA has too."""
    real_cls = carla
    for part in real.split("."):
        real_cls = getattr(real_cls, part)
    fake_cls = getattr(standin, fake)
    names = {n for n in vars(fake_cls) if not n.startswith("_")}
    names |= set(getattr(fake_cls, "__dataclass_fields__", {}))
    extra = sorted(n for n in names if not hasattr(real_cls, n))
    assert not extra, f"stand-in {fake} has names real carla.{real} lacks: {extra}"


@needs_carla
def test_standin_actor_names_exist_in_real_carla():
    real = set()
    for cls in (carla.Vehicle, carla.Sensor, carla.WalkerAIController):
        real |= set(dir(cls))
    fake = {n for n in vars(standin.Actor) if not n.startswith("_")}
    fake |= {"id", "type_id", "attributes", "parent"}
    assert not sorted(fake - real)


# -- the whole backend against the stand-in --------------------------------------------------------


def test_reset_sets_the_client_side_traffic_manager_and_leaves_the_hero_to_step():
    """What the server cannot see: the Traffic Manager runs in the client (its port, sync mode and
    seed), the town is not reloaded, and the hero has no autopilot until step(None) asks for it.
    The rest of reset (settings, hero, cameras, NPCs, frames) is tested on the server."""
    server = standin.Server()
    with backend(server, tm_port=8123) as b:
        b.reset(scenario(dt=0.1), seed=11)
        assert "tm.sync True port=8123" in server.log and server.tm_seed == 11
        assert not any(e.startswith("load_world") for e in server.log)  # Town03 already loaded
        hero = [a for a in server.vehicles() if a.attributes.get("role_name") == "hero"]
        assert len(hero) == 1 and not hero[0]._autopilot  # who drives is said by step()
        b.step(None)
        assert f"autopilot {hero[0].id} True 8123" in server.log
        b.step(Control(throttle=0.5))
        assert f"autopilot {hero[0].id} False 8123" in server.log


def test_sensors_matched_by_frame_id_with_stale_and_late_data():
    server = standin.Server()
    server.late_s = 0.15
    with backend(server) as b:
        b.reset(scenario())
        server.faults[standin.SEM_KIND] = "stale"  # the previous frame's data arrives first
        server.faults[standin.RGB_KIND] = "stale"
        obs = b.step()
        assert obs.frame == 1 and b.server_frame == server.frame
        assert obs.camera.rgb[0, 0, 0] == server.frame % 256
        server.faults[standin.SEM_KIND] = "late"  # arrives after tick() has returned
        t0 = time.monotonic()
        obs = b.step()
        assert time.monotonic() - t0 >= 0.1
        assert obs.frame == 2 and b.server_frame == server.frame and ROAD_LINE in obs.camera.labels


def test_dropped_frame_raises_naming_the_sensor_then_cleans_up():
    server = standin.Server()
    found = server.settings
    b = backend(server, sensor_timeout=0.3)
    b.reset(scenario())
    server.faults[standin.SEM_KIND] = "drop"
    t0 = time.monotonic()
    with pytest.raises(BackendError, match=r"sensor 'front\.semantic'.*frame") as err:
        b.step()
    assert time.monotonic() - t0 < 1.5 and "\n" not in str(err.value)
    b.close()
    assert server.actors == {} and server.settings == found


def test_close_order_restores_settings_exactly_and_is_idempotent():
    found = standin.WorldSettings(synchronous_mode=False, fixed_delta_seconds=0.02, max_substeps=7)
    server = standin.Server(settings=found)
    b = backend(server)
    b.reset(scenario(npc_vehicles=2, npc_walkers=2))
    b.step()
    mark = len(server.log)
    b.close()
    tail = server.log[mark:]
    sensor_ids = [a.id for a in server.sensors(standin.RGB_KIND)]  # gone: list is empty now
    assert sensor_ids == []
    stops = [i for i, e in enumerate(tail) if e.startswith("stop ")]
    destroys = [i for i, e in enumerate(tail) if e.startswith("destroy ")]
    batch = [i for i, e in enumerate(tail) if e.startswith("batch_destroy")]
    tm = tail.index("tm.sync False port=8000")
    restore = [i for i, e in enumerate(tail) if e.startswith("apply_settings")]
    assert len(stops) == 3 + 2  # 2 cameras + collision sensor, then 2 walker controllers
    assert len(destroys) == 3 and len(batch) == 1 and len(restore) == 1
    assert max(stops[:3]) < min(destroys) and max(destroys) < batch[0] < tm < restore[0]
    assert server.actors == {}
    assert server.settings == found
    assert not server.tm_sync
    b.close()  # harmless
    assert server.log[mark:] == tail
    with pytest.raises(BackendError, match="closed"):
        b.reset(scenario())


def test_ctrl_c_in_the_middle_cleans_up():
    server = standin.Server()
    found = server.settings
    with pytest.raises(KeyboardInterrupt), backend(server) as b:
        b.reset(scenario())
        b.step()
        server.interrupt_next_tick = True
        b.step()
    assert server.actors == {} and server.settings == found and not server.tm_sync
    b.close()


def test_ctrl_c_during_cleanup_is_deferred_until_cleanup_is_done(monkeypatch):
    server = standin.Server()
    original = standin.Actor.destroy
    fired = []
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when run in the background (CI)

    def destroy_and_interrupt(self):
        if not fired:
            fired.append(self.id)
            signal.raise_signal(signal.SIGINT)
        return original(self)

    b = backend(server)
    b.reset(scenario())
    monkeypatch.setattr(standin.Actor, "destroy", destroy_and_interrupt)
    with pytest.raises(KeyboardInterrupt, match="during cleanup"):
        b.close()
    assert fired and server.actors == {} and not server.settings.synchronous_mode
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_becomes_keyboard_interrupt_and_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    server = standin.Server()
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), backend(server) as b:
        b.reset(scenario())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1.0)  # the handler raises before this ends
    assert server.actors == {} and signal.getsignal(signal.SIGTERM) == before


def test_legacy_server_remaps_labels_and_warns_on_version_mismatch():
    with pytest.warns(RuntimeWarning, match="0.9.16 and server 0.9.13"):
        b = backend(standin.Server(version="0.9.13"))
    with b:
        labels = b.reset(scenario()).camera.labels
        assert set(np.unique(labels)) == {ROAD, SKY, ROAD_LINE}
    with pytest.warns(RuntimeWarning):
        b2 = backend(standin.Server(version="0.9.13"), legacy_tags=False)
    assert not b2.legacy_tags
    b2.close()


def test_server_dies_mid_run_clear_error_and_close_does_not_hang():
    server = standin.Server()
    b = backend(server)
    b.reset(scenario())
    server.dead = True
    with pytest.raises(BackendError, match="127.0.0.1:2000") as err:
        b.step()
    assert "\n" not in str(err.value)
    t0 = time.monotonic()
    with pytest.warns(RuntimeWarning, match="cleanup"):
        b.close()
    assert time.monotonic() - t0 < 1.0
    b.close()


def test_step_before_reset_and_make_backend():
    b = make_backend("carla", carla_module=standin.StandinCarla(standin.Server()), port=2001)
    assert isinstance(b, cb.CarlaBackend) and b.port == 2001
    with pytest.raises(BackendError, match="reset"):
        b.step()
    b.close()


def test_map_file_builds_an_opendrive_world_once_and_keeps_settings(tmp_path):
    """scenario.map on CARLA: generate_opendrive_world from the file's text, settings kept, no reload."""
    import xodr_samples

    good, bad = tmp_path / "t.xodr", tmp_path / "bad.xodr"
    good.write_text(xodr_samples.t_junction())
    bad.write_text(xodr_samples.t_junction(missing_road=True))
    found = standin.WorldSettings(synchronous_mode=False, fixed_delta_seconds=0.02, max_substeps=7)
    server = standin.Server(settings=found)
    with backend(server) as b:
        with pytest.raises(BackendError, match="bad.xodr"):
            b.reset(scenario(map=str(bad)))
        assert server.opendrive is None and not any(e.startswith("generate") for e in server.log)
        obs = b.reset(scenario(map=str(good)))
        assert server.opendrive == good.read_text() and obs.town == "t.xodr"
        assert server.settings.synchronous_mode and server.settings.fixed_delta_seconds == 0.05
        hero = [a for a in server.vehicles() if a.attributes.get("role_name") == "hero"]
        assert len(hero) == 1  # spawned on a lane waypoint: the generated world has no spawn points
        b.reset(scenario(map=str(good)))
        assert sum(e.startswith("generate_opendrive_world") for e in server.log) == 1
        assert "reset_settings=False" in next(e for e in server.log if e.startswith("generate"))
        b.reset(scenario())  # back to a town: loaded again
        assert server.opendrive is None and any(e.startswith("load_world Town03") for e in server.log)
    assert server.settings == found


# -- live server -----------------------------------------------------------------------------------


@needs_carla
@pytest.mark.skipif(
    not os.environ.get("CARLA_HOST"), reason="no CARLA server: set CARLA_HOST (and CARLA_PORT) to run it"
)
def test_live_carla_server():
    host, port = os.environ["CARLA_HOST"], int(os.environ.get("CARLA_PORT", "2000"))
    tm_port = int(os.environ.get("CARLA_TM_PORT", "8000"))
    with cb.CarlaBackend(host=host, port=port, tm_port=tm_port, timeout=30.0) as b:
        found_sync = b._world.get_settings().synchronous_mode
        obs = b.reset(scenario(npc_vehicles=5), seed=1)
        frames = [b.server_frame]
        for i in range(40):
            obs = b.step(None if i < 30 else Control(throttle=0.3))
            frames.append(b.server_frame)
            assert obs.frame == i + 1 and obs.sim_time == pytest.approx((i + 1) * 0.05, abs=1e-3)
            assert obs.camera.rgb.shape == (16, 32, 3) and obs.camera.labels.max() <= 28
        assert frames == list(range(frames[0], frames[0] + len(frames)))
        assert obs.ego.lane_id is not None and obs.ego.distance > 0.0
    world = b._client.get_world()
    assert world.get_settings().synchronous_mode == found_sync
    assert not [a for a in world.get_actors().filter("vehicle.*") if a.attributes.get("role_name") == "hero"]
