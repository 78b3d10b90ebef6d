"""The embedded world as a CARLA server, driven by the REAL carla 0.9.16 client over loopback.

Not collected by the suite itself: tests/test_carla_server.py runs this file in a pytest of its
own, because once a server is gone the carla library's threads abort the process that used it
(it took the whole suite down, "Fatal Python error: Aborted", in a later torch test).

The server runs as a subprocess: the client library holds the GIL while it waits for some
replies, so a server in the test's own process would deadlock it. One server (Town03, seed 0)
serves every test in turn; each test leaves it asynchronous and without actors, which is
itself checked (several clients in sequence).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import queue
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

carla = pytest.importorskip("carla", reason="needs the real carla client (pip install 'laneloop[carla]')")
pytest.importorskip("msgpack", reason="the CARLA server needs msgpack (pip install 'laneloop[carla]')")

from scenarios.schema import Scenario  # noqa: E402
from sim.backend import BackendError, make_backend  # noqa: E402
from sim.carla_backend import camera_pose  # noqa: E402
from sim.carla_server import layouts  # noqa: E402
from sim.embedded.traffic import bicycle_step  # noqa: E402
from sim.tags import ROAD_LINE  # noqa: E402
from sim.types import CameraSpec, Control, Weather  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CAM = CameraSpec(name="front", width=320, height=160)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "sim.carla_server", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"server did not start: {proc.stderr.read()}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def server():
    proc, port = start_server("--town", "Town03")
    yield port
    proc.terminate()
    proc.wait(10)


def connect(port: int):
    client = carla.Client("127.0.0.1", port)
    client.set_timeout(10.0)
    return client, client.get_world()


def set_sync(world, on: bool, dt: float = 0.05) -> None:
    s = world.get_settings()
    s.synchronous_mode = on
    s.fixed_delta_seconds = dt if on else None
    world.apply_settings(s)


def spawn_with_cameras(
    world, spawn_index: int = 0, kinds: tuple = ("sensor.camera.rgb", "sensor.camera.semantic_segmentation")
):
    lib = world.get_blueprint_library()
    vehicle = world.spawn_actor(lib.find("vehicle.lincoln.mkz_2020"), world.get_map().get_spawn_points()[spawn_index])
    (x, y, z), (pitch, yaw, roll) = camera_pose(CAM)
    mount = carla.Transform(carla.Location(x=x, y=y, z=z), carla.Rotation(pitch=pitch, yaw=yaw, roll=roll))
    cams, queues = [], []
    for kind in kinds:
        bp = lib.find(kind)
        bp.set_attribute("image_size_x", str(CAM.width))
        bp.set_attribute("image_size_y", str(CAM.height))
        bp.set_attribute("fov", str(CAM.fov_deg))
        cam = world.spawn_actor(bp, mount, attach_to=vehicle)
        q: queue.Queue = queue.Queue()
        cam.listen(q.put)
        cams.append(cam)
        queues.append(q)
    return vehicle, cams, queues


def frame_of(q: queue.Queue, frame: int):
    """The sensor data of exactly `frame` (as CARLA's synchronous_mode.py matches them)."""
    while True:
        data = q.get(timeout=5.0)
        if data.frame == frame:
            return data
        assert data.frame < frame, f"sensor jumped from {frame} to {data.frame}"


def bgra(image) -> np.ndarray:
    return np.frombuffer(image.raw_data, np.uint8).reshape(image.height, image.width, 4)


def spawned(world) -> list[str]:
    """Type ids of the world's actors but the map's own traffic lights (there from the start, as in CARLA)."""
    return [a.type_id for a in world.get_actors() if not a.type_id.startswith("traffic.")]


def cleanup(world, vehicle, cams) -> None:
    for c in cams:
        c.stop()
        c.destroy()
    vehicle.destroy()
    set_sync(world, False)


def test_layout_sizes():
    """The sizes the 0.9.16 client decodes; a wrong episode record size aborts the client process."""
    assert layouts.SENSOR_HEADER.size == 48
    assert layouts.EPISODE_HEADER.size == 36
    assert layouts.ACTOR_RECORD.size == 119
    row = layouts.ActorState(7, (1.0, 2.0, 3.0, 0.0, 90.0, 0.0), control=(0.5, 0.1, 0.0, False, False, False, 1))
    light = layouts.ActorState(9, (0.0,) * 6, light=("9", 10.0, 3.0, 2.0, 0.5, 1, False, 2))
    walker = layouts.ActorState(10, (0.0,) * 6, walker=((1.0, 0.0, 0.0), 1.4, False))
    rows = [row, layouts.ActorState(8, (0.0,) * 6), light, walker]
    payload = layouts.episode_payload(3, 0.15, 1, 0.0, 0.05, rows)
    assert len(payload) == 48 + 36 + 4 * 119
    assert layouts.TRAFFIC_LIGHT_UNION.size == 54 and layouts.WALKER_UNION.size == 17


def test_sync_ticks_match_images_and_embedded_frame(server):
    """world.tick() frame ids = image frame ids; pixels = the embedded backend's at the same pose, bit for bit."""
    client, world = connect(server)
    assert client.get_server_version() == "0.9.16"
    assert world.get_map().name.endswith("Town03")
    set_sync(world, True)
    assert world.get_settings().synchronous_mode and world.get_settings().fixed_delta_seconds == pytest.approx(0.05)
    vehicle, cams, queues = spawn_with_cameras(world)
    try:
        frames = []
        for _ in range(3):
            f = world.tick()
            rgb, sem = (frame_of(q, f) for q in queues)
            assert (rgb.frame, sem.frame) == (f, f)
            assert (rgb.width, rgb.height, sem.width, sem.height) == (320, 160, 320, 160)
            frames.append(f)
        assert frames == [frames[0], frames[0] + 1, frames[0] + 2]
        labels = bgra(sem)[..., 2]
        colour = bgra(rgb)[..., 2::-1]
        # The embedded backend's first frame of the same spawn point, same seed, no traffic.
        sc = Scenario(town="Town03", seed=0, npc_vehicles=0, ego_spawn=0, cameras=(CAM,), frames=1)
        with make_backend("embedded") as emb:
            ref = emb.reset(sc).cameras["front"]
        assert (ref.labels == ROAD_LINE).sum() > 500
        # Same spawn point, same renderer and seed: bit-identical frames (the pose goes through the
        # client's float32 transform and back without changing a pixel).
        assert np.array_equal(labels, ref.labels)
        assert np.array_equal(colour, ref.rgb)
    finally:
        cleanup(world, vehicle, cams)


def test_depth_camera_is_sim_depth_in_carla_encoding(server):
    """sensor.camera.depth: frame-exact, pixel-aligned with the semantic image, sim/depth.py's metres."""
    from sim.depth import depth_image

    kinds = ("sensor.camera.semantic_segmentation", "sensor.camera.depth")
    client, world = connect(server)
    set_sync(world, True)
    vehicle, cams, queues = spawn_with_cameras(world, spawn_index=2, kinds=kinds)
    try:
        vehicle.apply_control(carla.VehicleControl(throttle=0.7, steer=0.05))
        for _ in range(3):
            f = world.tick()
            sem, dep = (frame_of(q, f) for q in queues)
            assert dep.frame == f and (dep.width, dep.height, dep.fov) == (320, 160, pytest.approx(90.0))
            assert dep.transform.location.distance(sem.transform.location) < 1e-6
            labels = bgra(sem)[..., 2]
            got = layouts.depth_from_bgra(bgra(dep))
            want = depth_image(CAM, labels)
            finite = np.isfinite(want)
            assert finite.mean() > 0.5 and (labels == ROAD_LINE).any()
            # One 24-bit step is 1000 / (2**24 - 1) = 6e-5 m; the mount went through float32.
            assert np.abs(got[finite] - np.minimum(want[finite], 1000.0)).max() < 1e-3
            assert np.all(got[~finite] == 1000.0)  # sky (inf) and no-ground (NaN): the far plane
            assert np.all(got[labels == 11] == 1000.0)
            road = labels == 1
            assert 2.0 < got[road].min() < 20.0 < got[road].max()
        # The client's own converter decodes the same bytes: a grey image of depth / 1000 * 255.
        dep.convert(carla.ColorConverter.Depth)
        grey = bgra(dep)
        assert np.array_equal(grey[..., 0], grey[..., 2])
        assert np.abs(grey[..., 2].astype(float) - got / 1000.0 * 255.0).max() <= 1.0
    finally:
        cleanup(world, vehicle, cams)


def test_control_moves_the_car_and_steers(server):
    client, world = connect(server)
    set_sync(world, True)
    vehicle, cams, queues = spawn_with_cameras(world)
    try:
        world.tick()
        start = vehicle.get_transform()
        vehicle.apply_control(carla.VehicleControl(throttle=0.8))
        for _ in range(20):
            world.tick()
        mid = vehicle.get_transform()
        yaw = math.radians(start.rotation.yaw)
        dx, dy = mid.location.x - start.location.x, mid.location.y - start.location.y
        forward = dx * math.cos(yaw) + dy * math.sin(yaw)
        x = y = yw = v = 0.0  # the embedded kinematics under the same control, 20 ticks of 0.05 s
        for _ in range(20):
            x, y, yw, v = bicycle_step(x, y, yw, v, Control(throttle=0.8), 0.05)
        assert forward == pytest.approx(x, abs=0.01) and forward > 1.0
        assert abs(-dx * math.sin(yaw) + dy * math.cos(yaw)) < 0.05  # straight on
        assert vehicle.get_velocity().length() > 1.0
        assert vehicle.get_control().throttle == pytest.approx(0.8)
        vehicle.apply_control(carla.VehicleControl(throttle=0.5, steer=0.5))  # CARLA: + steers right
        for _ in range(10):
            world.tick()
        turned = (vehicle.get_transform().rotation.yaw - mid.rotation.yaw + 180) % 360 - 180
        assert turned > 2.0, f"yaw changed {turned:.2f} deg"  # left-handed: right turn = yaw grows
        f = world.tick()
        assert frame_of(queues[0], f).transform.location.distance(vehicle.get_transform().location) < 3.0
    finally:
        cleanup(world, vehicle, cams)


def test_same_controls_same_images(server):
    """Two clients in sequence, same spawn and controls: byte-identical images (determinism)."""
    digests = []
    for _ in range(2):
        client, world = connect(server)
        assert spawned(world) == ["spectator"]  # the previous run left nothing
        set_sync(world, True)
        vehicle, cams, queues = spawn_with_cameras(world, spawn_index=3)
        try:
            h = hashlib.sha256()
            for i in range(6):
                vehicle.apply_control(carla.VehicleControl(throttle=0.6, steer=0.1 * (i % 3 - 1)))
                f = world.tick()
                for q in queues:
                    h.update(bytes(frame_of(q, f).raw_data))
            digests.append(h.hexdigest())
        finally:
            cleanup(world, vehicle, cams)
    assert digests[0] == digests[1]


def test_unsupported_call_is_one_line_error_and_server_lives(server):
    client, world = connect(server)
    bp = world.get_blueprint_library().find("vehicle.tesla.model3")
    vehicle = world.spawn_actor(bp, world.get_map().get_spawn_points()[5])
    try:
        with pytest.raises(RuntimeError, match="get_physics_control: not supported by the laneloop CARLA server"):
            vehicle.get_physics_control()
        with pytest.raises(RuntimeError, match="collision at spawn position"):
            world.spawn_actor(bp, world.get_map().get_spawn_points()[5])
    finally:
        vehicle.destroy()
    assert client.get_server_version() == "0.9.16"
    weather = carla.WeatherParameters.HardRainNoon
    world.set_weather(weather)
    assert world.get_weather().precipitation == pytest.approx(100.0)
    world.set_weather(carla.WeatherParameters.ClearNoon)
    wp = world.get_map().get_waypoint(world.get_map().get_spawn_points()[0].location)
    assert wp is not None and wp.lane_type == carla.LaneType.Driving and wp.next(5.0)


def test_async_mode_batches_and_load_world(server):
    """Asynchronous ticks (wait_for_tick, on_tick), batch spawn / move / destroy, load_world."""
    client, world = connect(server)
    assert not world.get_settings().synchronous_mode
    a, b = world.wait_for_tick(), world.wait_for_tick()
    assert b.frame > a.frame and b.timestamp.elapsed_seconds > a.timestamp.elapsed_seconds
    lib, points = world.get_blueprint_library(), world.get_map().get_spawn_points()
    cars = sorted(lib.filter("vehicle.*"), key=lambda bp: bp.id)
    assert len(cars) >= 5 and all(bp.has_attribute("role_name") for bp in cars)
    assert sorted(bp.id for bp in lib.filter("sensor.camera.*")) == [
        "sensor.camera.depth",
        "sensor.camera.rgb",
        "sensor.camera.semantic_segmentation",
    ]
    got = client.apply_batch_sync([carla.command.SpawnActor(cars[i], points[i]) for i in range(3)], False)
    assert [r.error for r in got] == ["", "", ""]
    ids = [r.actor_id for r in got]
    world.wait_for_tick()
    assert sorted(a.id for a in world.get_actors().filter("vehicle.*")) == sorted(ids)
    client.apply_batch([carla.command.ApplyTransform(ids[0], points[10])])
    world.wait_for_tick()
    world.wait_for_tick()
    assert world.get_actor(ids[0]).get_location().distance(points[10].location) < 0.5
    bad = client.apply_batch_sync([carla.command.DestroyActor(999999)])
    assert "not found" in bad[0].error
    client.apply_batch_sync([carla.command.DestroyActor(i) for i in ids])
    world.wait_for_tick()
    assert spawned(world) == ["spectator"]
    episode = world.id
    world = client.load_world("Town03")
    assert world.id != episode and world.get_map().name.endswith("Town03")


def test_malformed_and_unknown_requests_get_error_replies(server):
    """Raw msgpack-RPC: an unknown method and bad arguments get CARLA error replies naming the method."""
    import msgpack

    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        unpacker = msgpack.Unpacker(raw=False)

        def call(msgid, method, params):
            s.sendall(msgpack.packb([0, msgid, method, params]))
            while True:
                for msg in unpacker:
                    return msg
                unpacker.feed(s.recv(65536))

        expected = (
            "no_such_method: not supported by the laneloop CARLA server (embedded world; see docs/carla_server.md)"
        )
        assert call(1, "no_such_method", [[False]])[3] == [[0, [expected]]]
        reply = call(2, "spawn_actor", [[False], "not a description", 3])
        assert reply[3][0][0] == 0 and reply[3][0][1][0].startswith("spawn_actor:")
        reply = call(3, "destroy_actor", [[False]])  # missing argument
        assert reply[3][0][0] == 0 and "destroy_actor" in reply[3][0][1][0]
        assert call(4, "version", [[False]])[3] == [[1, "0.9.16"]]


def test_client_dying_in_sync_mode_leaves_server_usable(server):
    """A client killed in synchronous mode: its settings are undone and its actors destroyed."""
    script = (
        "import os, carla\n"
        f"c = carla.Client('127.0.0.1', {server}); c.set_timeout(10); w = c.get_world()\n"
        "s = w.get_settings(); s.synchronous_mode = True; s.fixed_delta_seconds = 0.05; w.apply_settings(s)\n"
        "bp = w.get_blueprint_library().find('vehicle.audi.a2')\n"
        "w.spawn_actor(bp, w.get_map().get_spawn_points()[7]); w.tick()\n"
        "os._exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-1000:]
    client, world = connect(server)
    deadline = time.monotonic() + 5
    while world.get_settings().synchronous_mode and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not world.get_settings().synchronous_mode
    world.wait_for_tick()  # the world ticks on its own again
    assert spawned(world) == ["spectator"]


def test_collision_sensor_reports_the_car_ahead(server):
    client, world = connect(server)
    set_sync(world, True)
    lib, start = world.get_blueprint_library(), world.get_map().get_spawn_points()[0]
    ego = world.spawn_actor(lib.find("vehicle.audi.a2"), start)
    ahead = carla.Transform(start.location + start.get_forward_vector() * 12.0, start.rotation)
    other = world.spawn_actor(lib.find("vehicle.tesla.model3"), ahead)
    sensor = world.spawn_actor(lib.find("sensor.other.collision"), carla.Transform(), attach_to=ego)
    events: queue.Queue = queue.Queue()
    sensor.listen(events.put)
    try:
        ego.apply_control(carla.VehicleControl(throttle=1.0))
        frames = [world.tick() for _ in range(15)]
        assert events.empty()  # 12 m apart: no contact yet
        for _ in range(60):
            frames.append(world.tick())
            if not events.empty():
                break
        event = events.get(timeout=5.0)
        assert event.frame in frames and event.other_actor.id == other.id
        assert event.other_actor.type_id == "vehicle.tesla.model3" and event.normal_impulse.length() > 0
    finally:
        sensor.stop()
        for a in (sensor, ego, other):
            a.destroy()
        set_sync(world, False)


def test_lane_invasion_sensor_reports_the_lines_crossed(server):
    """sensor.other.lane_invasion is the client's own (0.9.16): it takes the parent's bounding box
    from the actor we send, its pose from the episode state and the markings from our OpenDRIVE."""
    client, world = connect(server)
    set_sync(world, True)
    lib, carla_map = world.get_blueprint_library(), world.get_map()
    start = carla_map.get_waypoint(carla_map.get_spawn_points()[1].location)
    assert (start.lane_id, start.left_lane_marking.type) == (-2, carla.LaneMarkingType.Broken)
    assert start.get_left_lane().left_lane_marking.type == carla.LaneMarkingType.SolidSolid
    ego = world.spawn_actor(lib.find("vehicle.audi.a2"), start.transform)
    sensor = world.spawn_actor(lib.find("sensor.other.lane_invasion"), carla.Transform(), attach_to=ego)
    events: queue.Queue = queue.Queue()
    sensor.listen(events.put)
    try:
        left = start.transform.get_right_vector() * -1.0
        offsets = [0.0] * 6 + [0.5 * k for k in range(1, 15)]  # along the lane, then 7 m left: two lines
        by_frame = {}
        for k, d in enumerate(offsets):
            wp = start.next(0.3 * k)[0] if k else start
            ego.set_transform(carla.Transform(wp.transform.location + left * d, wp.transform.rotation))
            by_frame[world.tick()] = d
        time.sleep(0.2)  # the sensor runs on the client's tick callback thread
        got = []
        while not events.empty():
            e = events.get()
            got.append((by_frame[e.frame], [m.type for m in e.crossed_lane_markings]))
        assert got, "no lane invasion event"
        lane = start.lane_width
        for d, types in got:  # a corner crosses a line only while the box (half width 0.9 m) straddles it
            assert types and d > 0.0
            if carla.LaneMarkingType.SolidSolid in types:
                assert abs(d - 1.5 * lane) <= 0.9 + 0.5 + 1e-3
            else:
                assert set(types) == {carla.LaneMarkingType.Broken} and abs(d - 0.5 * lane) <= 0.9 + 0.5 + 1e-3
        kinds = {t for _, types in got for t in types}
        assert kinds == {carla.LaneMarkingType.Broken, carla.LaneMarkingType.SolidSolid}
    finally:
        sensor.stop()
        sensor.destroy()
        ego.destroy()
        set_sync(world, False)


def test_traffic_lights_cycle_and_obey_the_client(server):
    """traffic.traffic_light actors: group timing, get/set_state, freeze, times, group, and the episode layout."""
    client, world = connect(server)
    set_sync(world, True)
    lights = world.get_actors().filter("traffic.traffic_light")
    assert len(lights) == 24  # Town03: every light the town stands at its signalled junction mouths
    light = lights[0]
    group = sorted(light.get_group_traffic_lights(), key=lambda t: t.id)
    assert len(group) >= 3 and light.id in [t.id for t in group]
    try:
        for t in group:
            t.set_green_time(1.0)
            t.set_yellow_time(0.5)
            t.set_red_time(0.5)
        light.reset_group()
        world.tick()
        seen = []
        for _ in range(3 * 40):  # three turns of 2 s: green 1 s, yellow 0.5 s, all red 0.5 s
            f = world.tick()
            seen.append(tuple(int(t.get_state()) for t in group))
        assert world.get_snapshot().frame == f
        tls = carla.TrafficLightState
        G, Y, R = int(tls.Green), int(tls.Yellow), int(tls.Red)
        turns = [next(k for k, st in enumerate(states) if st != R) if set(states) != {R} else -1 for states in seen]
        assert all(sum(st != R for st in states) <= 1 for states in seen)  # one mouth at a time
        assert [turns.count(k) for k in range(3)] == [30, 30, 30] and turns.count(-1) == 30
        assert sum(G in states for states in seen) == 60 and sum(Y in states for states in seen) == 30
        assert (group[0].get_green_time(), group[0].get_yellow_time(), group[0].get_red_time()) == (1.0, 0.5, 0.5)
        # set_state + freeze hold a state, and the group's clock stops.
        light.set_state(carla.TrafficLightState.Yellow)
        light.freeze(True)
        for _ in range(50):
            world.tick()
        assert light.get_state() == carla.TrafficLightState.Yellow and light.is_frozen()
        assert all(t.is_frozen() for t in group) and light.get_elapsed_time() == 0.0  # the clock stood still
        world.freeze_all_traffic_lights(False)
        light.destroy()  # refused: the map's own (the client logs the error, as for any failed destroy)
        assert world.get_actor(light.id) is not None
    finally:
        for t in group:
            t.set_green_time(10.0)
            t.set_yellow_time(3.0)
            t.set_red_time(2.0)
        world.reset_all_traffic_lights()
        set_sync(world, False)


def test_traffic_manager_stops_at_red_and_goes_at_green(server):
    """The client's Traffic Manager reads the light from our vehicle's episode row: it stops at red."""
    client, world = connect(server)
    set_sync(world, True)
    tm = client.get_trafficmanager(8000)
    tm.set_synchronous_mode(True)
    tm.set_random_device_seed(0)
    car = world.spawn_actor(
        world.get_blueprint_library().find("vehicle.audi.a2"), world.get_map().get_spawn_points()[0]
    )
    car.set_autopilot(True, 8000)
    lights = world.get_actors().filter("traffic.traffic_light")
    try:
        world.tick()
        for t in lights:
            t.set_state(carla.TrafficLightState.Red)
        world.freeze_all_traffic_lights(True)
        for _ in range(240):
            world.tick()
            if car.is_at_traffic_light() and car.get_velocity().length() < 0.01:
                break
        assert car.is_at_traffic_light(), "the car never reached a light"
        at = car.get_traffic_light()
        assert at.type_id == "traffic.traffic_light" and car.get_traffic_light_state() == carla.TrafficLightState.Red
        for _ in range(40):  # it stays stopped, before the junction
            world.tick()
        assert car.get_velocity().length() < 0.01 and not world.get_map().get_waypoint(car.get_location()).is_junction
        assert car.get_location().distance(at.get_location()) < 15.0
        at.set_state(carla.TrafficLightState.Green)
        for _ in range(40):
            world.tick()
        assert car.get_velocity().length() > 2.0 and car.get_traffic_light_state() == carla.TrafficLightState.Green
    finally:
        car.set_autopilot(False, 8000)
        car.destroy()
        world.freeze_all_traffic_lights(False)
        world.reset_all_traffic_lights()
        tm.set_synchronous_mode(False)
        set_sync(world, False)


def test_walker_is_rendered_as_pedestrian_and_walks_by_control(server):
    """walker.pedestrian.*: spawn, WalkerControl (direct and batched), Pedestrian (12) pixels in front of the camera."""
    from sim.depth import depth_image

    client, world = connect(server)
    set_sync(world, True)
    lib = world.get_blueprint_library()
    assert len(lib.filter("walker.pedestrian.*")) >= 8
    kinds = ("sensor.camera.semantic_segmentation", "sensor.camera.depth")
    vehicle, cams, queues = spawn_with_cameras(world, spawn_index=0, kinds=kinds)
    start = world.get_map().get_spawn_points()[0]
    spot = carla.Transform(start.location + start.get_forward_vector() * 10.0 + carla.Location(z=1.0), start.rotation)
    walker = world.spawn_actor(lib.find("walker.pedestrian.0001"), spot)
    try:
        assert walker.type_id == "walker.pedestrian.0001" and walker.bounding_box.extent.z == pytest.approx(0.93)
        f = world.tick()
        sem, dep = (frame_of(q, f) for q in queues)
        labels = bgra(sem)[..., 2]
        ped = labels == 12
        assert ped.sum() > 100 and abs(np.nonzero(ped)[1].mean() - CAM.width / 2) < 20  # straight ahead
        # The walker stands 10 m ahead of the car's centre, its front face 9.4 m from the camera
        # (optical z is a little less up its body: the camera pitches down).
        metres = layouts.depth_from_bgra(bgra(dep))[ped]
        assert 8.5 < np.median(metres) < 9.6
        assert np.allclose(metres, np.minimum(depth_image(CAM, labels)[ped], 1000.0), atol=1e-3)
        before = walker.get_location()
        walker.apply_control(carla.WalkerControl(direction=carla.Vector3D(0.0, 1.0, 0.0), speed=1.5))
        for _ in range(20):
            world.tick()
        moved = walker.get_location() - before
        assert moved.y == pytest.approx(1.5 * 20 * 0.05, abs=1e-3) and abs(moved.x) < 1e-3
        assert walker.get_velocity().y == pytest.approx(1.5) and walker.get_control().speed == pytest.approx(1.5)
        client.apply_batch_sync([carla.command.ApplyWalkerControl(walker.id, carla.WalkerControl(speed=0.0))])
        here = walker.get_location()
        for _ in range(5):
            world.tick()
        assert walker.get_location().distance(here) < 1e-3 and walker.get_control().speed == 0.0
    finally:
        walker.destroy()
        cleanup(world, vehicle, cams)
    world.wait_for_tick()
    assert not [t for t in spawned(world) if t.startswith("walker.")]


def test_plain_carla_script_runs_unchanged(server):
    """scripts/carla_sync_loop.py (sync loop, frame-matched queues, TM, semantic camera) against the server."""
    cmd = [
        sys.executable,
        "scripts/carla_sync_loop.py",
        "--port",
        str(server),
        "--tm-port",
        str(free_port()),
        "--frames",
        "40",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("frame ")]
    assert len(lines) == 40
    frames = [int(ln.split()[1]) for ln in lines]
    assert frames == list(range(frames[0], frames[0] + 40))
    assert float(lines[-1].split()[-2]) > 2.0  # the Traffic Manager drove
    client, world = connect(server)
    assert not world.get_settings().synchronous_mode and spawned(world) == ["spectator"]


def test_laneloop_carla_backend_episode_with_traffic_manager(server):
    """Our own CARLA backend (sim/carla_backend.py) runs an episode: TM autopilot, NPCs, frame-matched data."""
    sc = Scenario(town="Town03", seed=3, npc_vehicles=2, ego_spawn=0, cameras=(CAM,), frames=30)
    with make_backend("carla", port=server, tm_port=free_port(), timeout=10.0) as b:
        obs = b.reset(sc)
        assert len(b._npc_ids) == 2  # SpawnActor + SetAutopilot through apply_batch_sync
        frames, speeds, lines = [obs.frame], [], []
        for _ in range(30):
            obs = b.step(None)
            frames.append(obs.frame)
            speeds.append(obs.ego.speed)
            lines.append(int((obs.cameras["front"].labels == ROAD_LINE).sum()))
        assert frames == list(range(31))
        assert max(speeds) > 2.0, "the Traffic Manager did not drive the ego"
        assert min(lines) > 300
        assert obs.ego.lane_id is not None and abs(obs.ego.lateral_offset) < 1.0
        first = dataclasses.replace(sc, npc_vehicles=0)
        obs = b.reset(first)  # a second episode on the same connection
        assert obs.frame == 0 and obs.ego.speed == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_run_sim_backend_carla_end_to_end(server, tmp_path):
    """run_sim.py --backend carla against this server: the closed loop through the real client."""
    model = ROOT / "models" / "unet_float.pth"
    if not model.is_file():
        pytest.skip("models/unet_float.pth is not shipped in this checkout")
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "run_sim.py",
        "--backend",
        "carla",
        "--port",
        str(server),
        "--tm-port",
        str(free_port()),
        "--frames",
        "12",
        "--model",
        str(model),
        "--runtime",
        "torch",
        "--no-compile",
        "--threads",
        "1",
        "--no-report",
        "--no-progress",
        "--out",
        str(out),
    ]
    done = subprocess.run(
        cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    import pandas as pd

    df = pd.read_parquet(out / "frames.parquet")
    assert df.frame.tolist() == list(range(12))
    assert df.lane_px_true.min() > 300 and df.iou.mean() > 0.8
    assert df.speed.iloc[-1] > df.speed.iloc[0]


def test_map_file_served_as_opendrive(tmp_path):
    """--map FILE.xodr: the client's map is that file, and the cameras see its road marks."""
    xodr = tmp_path / "Town02.xodr"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    made = subprocess.run(
        [sys.executable, "-m", "sim.maps", "export", "Town02", "--out", str(xodr)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    proc, port = start_server("--map", str(xodr))
    try:
        client, world = connect(port)
        m = world.get_map()
        assert m.name.endswith("Town02") and m.to_opendrive() == xodr.read_text(encoding="utf-8")
        set_sync(world, True)
        vehicle, cams, queues = spawn_with_cameras(world)
        f = world.tick()
        labels = bgra(frame_of(queues[1], f))[..., 2]
        assert (labels == ROAD_LINE).sum() > 300
        assert m.get_waypoint(vehicle.get_location()).lane_type == carla.LaneType.Driving
        cleanup(world, vehicle, cams)
    finally:
        proc.terminate()
        proc.wait(10)


def test_bad_arguments_exit_1_with_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for args in (["--town", "Nowhere"], ["--map", str(tmp_path / "missing.xodr")]):
        done = subprocess.run(
            [sys.executable, "-m", "sim.carla_server", "--port", str(free_port()), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1


def test_carla_backend_frames_equal_embedded_backend(server):
    """Our CarlaBackend through the server vs EmbeddedBackend, same scenario, seed and controls: the same frames.

    No traffic (the Traffic Manager and CARLA spawn points place NPCs differently) and controls
    exact in float32, as the wire carries them.
    """
    sc = Scenario(town="Town03", seed=0, npc_vehicles=0, ego_spawn=0, cameras=(CAM,), frames=20)
    controls = [Control(throttle=0.5, steer=0.125 * ((i // 4) % 3 - 1)) for i in range(16)]
    with make_backend("carla", port=server, tm_port=free_port(), timeout=10.0) as cb, make_backend("embedded") as eb:
        pairs = [(cb.reset(sc), eb.reset(sc))]
        pairs += [(cb.step(c), eb.step(c)) for c in controls]
    for k, (a, b) in enumerate(pairs):
        assert a.frame == b.frame == k
        assert np.array_equal(a.cameras["front"].labels, b.cameras["front"].labels), f"labels differ at frame {k}"
        # RGB: a ground texel can flip where the pose differs in the last bits (measured: 1 pixel
        # in 2 of 17 frames); the labels are identical.
        differ = (a.cameras["front"].rgb != b.cameras["front"].rgb).any(-1).sum()
        assert differ <= 5, f"{differ} RGB pixels differ at frame {k}"
        assert a.ego.x == pytest.approx(b.ego.x, abs=1e-4) and a.ego.y == pytest.approx(b.ego.y, abs=1e-4)
        assert a.ego.speed == pytest.approx(b.ego.speed, abs=1e-4)


# -- sim/carla_backend.py on the server (moved here from the stand-in of tests/test_carla_backend.py) --

SMALL = CameraSpec(name="front", width=32, height=16)


def small_scenario(**kw) -> Scenario:
    base = dict(town="Town03", seed=7, npc_vehicles=2, ego_spawn=0, cameras=(SMALL,), frames=10)
    base.update(kw)
    return Scenario(**base)


def carla_backend(port: int, **kw):
    return make_backend("carla", port=port, tm_port=free_port(), timeout=10.0, **kw)


def hero_of(world):
    return [a for a in world.get_actors().filter("vehicle.*") if a.attributes.get("role_name") == "hero"]


def test_backend_reset_settings_hero_cameras_and_restore_as_found(server):
    """reset: sync at the scenario's dt, a hero with RGB + semantic cameras on one mount, NPCs; close:
    the settings exactly as found (asynchronous with a custom dt), every actor of ours gone."""
    client, world = connect(server)
    found = world.get_settings()
    found.fixed_delta_seconds = 0.02
    found.max_substeps = 7
    world.apply_settings(found)
    try:
        with carla_backend(server) as b:
            obs = b.reset(small_scenario(dt=0.1), seed=11)
            s = world.get_settings()
            assert s.synchronous_mode and s.fixed_delta_seconds == pytest.approx(0.1)
            assert s.fixed_delta_seconds <= s.max_substep_delta_time * s.max_substeps
            hero = hero_of(world)
            assert len(hero) == 1 and len(world.get_actors().filter("vehicle.*")) == 1 + 2
            cams = [a for a in world.get_actors().filter("sensor.camera.*") if a.parent and a.parent.id == hero[0].id]
            assert sorted(c.type_id for c in cams) == ["sensor.camera.rgb", "sensor.camera.semantic_segmentation"]
            assert cams[0].attributes["image_size_x"] == "32" and cams[1].attributes["fov"] == "90.0"
            # The server renders both from one mount: pixel-aligned labels, a real lane view.
            cam = obs.cameras["front"]
            assert obs.frame == 0 and cam.rgb.shape == (16, 32, 3) and cam.labels.shape == (16, 32)
            assert ROAD_LINE in cam.labels and obs.town == "Town03" and obs.weather == "ClearNoon"
            assert world.get_weather().sun_altitude_angle == pytest.approx(
                carla.WeatherParameters.ClearNoon.sun_altitude_angle
            )
            obs = b.step(Control(throttle=0.5))
            assert obs.frame == 1 and obs.sim_time == pytest.approx(0.1)
        world.wait_for_tick()
        after = world.get_settings()
        assert not after.synchronous_mode and after.fixed_delta_seconds == pytest.approx(0.02)
        assert after.max_substeps == 7 and spawned(world) == ["spectator"]
        # Found synchronous: the backend runs at its own dt and gives the world back synchronous.
        found.synchronous_mode, found.fixed_delta_seconds = True, 0.1
        world.apply_settings(found)
        with carla_backend(server) as b:
            b.reset(small_scenario(dt=0.05, npc_vehicles=0))
            assert world.get_settings().fixed_delta_seconds == pytest.approx(0.05)
        after = world.get_settings()
        assert after.synchronous_mode and after.fixed_delta_seconds == pytest.approx(0.1)
    finally:
        back = world.get_settings()
        back.synchronous_mode, back.fixed_delta_seconds, back.max_substeps = False, None, 10
        world.apply_settings(back)


def test_backend_ego_state_collision_control_and_occupied_spawn(server):
    """Ego state from the server (lane, offset, distance, speed), a real collision, manual control,
    and an occupied spawn point: the ego takes the next one."""
    client, world = connect(server)
    points = world.get_map().get_spawn_points()
    blocker = world.spawn_actor(world.get_blueprint_library().find("vehicle.tesla.model3"), points[0])
    try:
        with carla_backend(server) as b:
            obs = b.reset(small_scenario(npc_vehicles=0))
            assert obs.ego.x == pytest.approx(points[1].location.x, abs=1e-3)  # point 0 is taken
            assert obs.ego.y == pytest.approx(-points[1].location.y, abs=1e-3)  # CARLA's y is our -y
            assert obs.ego.lane_id is not None and abs(obs.ego.lateral_offset) < 0.05 and obs.ego.speed == 0.0
            for _ in range(10):
                obs = b.step(Control(throttle=1.0))
            x = v = 0.0  # the embedded kinematics under the same control, 10 ticks of 0.05 s
            for _ in range(10):
                x, _, _, v = bicycle_step(x, 0.0, 0.0, v, Control(throttle=1.0), 0.05)
            assert obs.ego.distance == pytest.approx(x, abs=0.01) and obs.ego.speed == pytest.approx(v, abs=0.01)
            assert not obs.ego.collision
            obs = b.step(Control(throttle=0.5, steer=0.2))
            assert obs.ego.steer == pytest.approx(0.2) and hero_of(world)[0].get_control().steer == pytest.approx(0.2)
            # Park a car just ahead of the ego: the collision sensor reports it on the next frame.
            ego = hero_of(world)[0].get_transform()
            ahead = carla.Transform(ego.location + ego.get_forward_vector() * 3.0, ego.rotation)
            other = world.spawn_actor(world.get_blueprint_library().find("vehicle.audi.a2"), ahead)
            hits = [b.step(Control(throttle=1.0)).ego.collision for _ in range(4)]
            other.destroy()
            assert any(hits)
            # A seeded random spawn point repeats; the same town is not loaded again.
            episode = client.get_world().id
            xs = [b.reset(small_scenario(ego_spawn=None, npc_vehicles=0), seed=5).ego.x for _ in range(2)]
            assert xs[0] == xs[1] and client.get_world().id == episode
    finally:
        blocker.destroy()


def test_backend_towns_and_weather_by_preset_or_parameters(server):
    """Town switch through load_world (and a bad town named), weather presets and parameters per frame."""
    fog = Weather.from_params({"fog_density": 80.0}, name="Fog")
    client, world = connect(server)
    with carla_backend(server) as b:
        obs = b.reset(small_scenario(npc_vehicles=0, weathers=(Weather.preset("WetSunset"), fog), weather_every=2))
        assert obs.weather == "WetSunset" and client.get_world().get_weather().wetness == pytest.approx(
            carla.WeatherParameters.WetSunset.wetness
        )
        b.step(Control())
        obs = b.step(Control())
        assert obs.weather == "Fog" and client.get_world().get_weather().fog_density == pytest.approx(80.0)
        obs = b.reset(small_scenario(town="Town04", npc_vehicles=0))
        assert obs.town == "Town04" and client.get_world().get_map().name.endswith("Town04")
        assert client.get_world().get_settings().synchronous_mode  # load_world kept the settings
        with pytest.raises(BackendError, match="Town99.*available"):
            b.reset(small_scenario(town="Town99"))
        obs = b.reset(small_scenario(npc_vehicles=0))
        assert client.get_world().get_map().name.endswith("Town03")
    world = client.get_world()
    world.wait_for_tick()
    assert not world.get_settings().synchronous_mode and spawned(world) == ["spectator"]


def test_backend_protocol_contract_on_server(server):
    """The checks every backend passes: types, shapes, tag ids, frame counting, repeatability."""
    from sim.backend import Backend
    from sim.tags import is_valid

    cams = (SMALL, CameraSpec(name="wide", width=48, height=24, fov_deg=120))
    controls = [Control(throttle=0.6, steer=0.1 * (i % 3 - 1)) for i in range(3)]
    runs = []
    for _ in range(2):
        with carla_backend(server) as b:
            assert isinstance(b, Backend)
            obs = [b.reset(small_scenario(cameras=cams, npc_vehicles=0), seed=3)]
            obs += [b.step(c) for c in controls]
        assert [o.frame for o in obs] == [0, 1, 2, 3]
        for o in obs:
            assert list(o.cameras) == ["front", "wide"] and o.camera.spec.name == "front"
            for spec in cams:
                frame = o.cameras[spec.name]
                assert frame.rgb.shape == (spec.height, spec.width, 3) and frame.rgb.dtype == np.uint8
                assert frame.labels.shape == (spec.height, spec.width) and frame.labels.dtype == np.uint8
                assert is_valid(frame.labels) and frame.intrinsics.shape == (3, 3)
        runs.append(([o.ego for o in obs], [o.cameras["wide"].labels.tobytes() for o in obs]))
    assert runs[0] == runs[1]  # same scenario, seed and controls: same ego states and frames


def test_record_backend_carla_writes_a_valid_dataset(server, tmp_path):
    """collect/record.py --backend carla against the server, then dataset.validate: a clean dataset."""
    out = tmp_path / "rec"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "collect/record.py", "--backend", "carla", "--port", str(server)]
    cmd += ["--tm-port", str(free_port()), "--town", "Town03", "--npc-vehicles", "1", "--width", "64"]
    cmd += [
        "--height",
        "32",
        "--episodes",
        "2",
        "--episode-frames",
        "3",
        "--every",
        "1",
        "--split",
        "train=0.5,val=0.5",
    ]
    cmd += ["--weather", "ClearNoon", "--no-progress", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    check = subprocess.run(
        [sys.executable, "-m", "dataset.validate", str(out)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout[-1000:] + check.stderr[-1000:]
    import json

    import pandas as pd

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "carla"
    index = pd.read_parquet(next(out.glob("*.parquet")))
    assert len(index) == 6 and sorted(index.split.unique()) == ["train", "val"]
