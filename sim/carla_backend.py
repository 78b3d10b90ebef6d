"""The CARLA backend: a CARLA 0.9.16 server behind the same `Backend` interface as the embedded world.

Why it looks the way it does:
- The `carla` client is imported lazily (inside `CarlaBackend`), so importing this module, and
  everything else in `sim/`, works without it.
- CARLA's frame is left-handed (y right, yaw clockwise); ours is right-handed. `from_carla` and
  `to_carla` are the only places where the two meet.
- Every tick is synchronous: `world.tick()`, then each sensor's queue is drained until it yields
  the data of exactly that frame id, so RGB, labels and ego state always belong together.
- Cleanup runs on every exit path and is ordered (stop sensors, destroy sensors, destroy vehicles
  in one batch, restore the Traffic Manager and the world settings as found), because a client
  that dies in synchronous mode leaves the server frozen for everyone else.

Decoding, settings and coordinate conversion are pure functions, testable without a server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import queue
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from plumbing import SigtermAsInterrupt, signals_deferred
from sim.backend import BackendBase, BackendError
from sim.types import PRESET_NAMES, CameraFrame, CameraSpec, Control, EgoState, Observation, Weather

if TYPE_CHECKING:
    from scenarios.schema import Scenario

__all__ = [
    "CarlaBackend",
    "SyncSettings",
    "bgra_to_rgb",
    "bgra_to_labels",
    "from_carla",
    "to_carla",
    "camera_pose",
    "lane_errors",
    "sync_settings",
    "parse_version",
    "is_legacy_server",
    "same_town",
]

EGO_BLUEPRINT = "vehicle.lincoln.mkz_2020"
"""A fixed ego model, so that the camera height means the same thing across runs."""

from sim.carla_actors import (
    connect,
    ego_blueprint,
    frame_matched,
    generation_parameters,
    import_carla,
    lane_state,
    read_opendrive,
    spawn_first_free,
    spawn_points,
    spawn_vehicles,
    spawn_walkers,
)
from sim.carla_convert import (  # noqa: F401 - re-exported, the backend's public helpers
    MAX_SUBSTEP_DT,
    MAX_SUBSTEPS,
    SyncSettings,
    bgra_to_labels,
    bgra_to_rgb,
    camera_pose,
    from_carla,
    is_legacy_server,
    lane_errors,
    parse_version,
    same_town,
    sync_settings,
    to_carla,
)


@dataclass
class _Camera:
    spec: CameraSpec
    rgb: Any
    semantic: Any
    rgb_queue: queue.Queue
    semantic_queue: queue.Queue


class CarlaBackend(BackendBase):
    """A CARLA server driven synchronously: one `step()` is one `world.tick()` of `scenario.dt`.

    Connects in the constructor, so that an unreachable server fails before any output is
    written. `carla_module` replaces the real client module (tests use a stand-in world).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 2000,
        tm_port: int = 8000,
        timeout: float = 10.0,
        legacy_tags: bool | None = None,
        sensor_timeout: float | None = None,
        carla_module: Any = None,
    ) -> None:
        self.host, self.port, self.tm_port, self.timeout = host, int(port), int(tm_port), float(timeout)
        self.sensor_timeout = float(sensor_timeout) if sensor_timeout is not None else self.timeout
        self._carla = carla_module if carla_module is not None else import_carla()
        self._closed = False
        self._dead = False  # the server stopped answering: skip further calls during cleanup
        self._world: Any = None
        self._map: Any = None
        self._opendrive_sha: str | None = None  # the map file the server's world was built from
        self._tm: Any = None
        self._found_settings: Any = None
        self._applied_dt: float | None = None
        self._ego: Any = None
        self._ego_spawn_index: int | None = None
        self._cameras: list[_Camera] = []
        self._collision_sensor: Any = None
        self._collisions: list[int] = []
        self._collision_lock = threading.Lock()
        self._npc_ids: list[int] = []
        self._walker_ids: list[int] = []
        self._walker_controllers: list[Any] = []
        self._scenario: Scenario | None = None
        self.server_frame = -1
        """The server's frame id of the last observation (Observation.frame counts from reset)."""
        self._episode_frame = 0
        self._episode_t0: float | None = None
        self._weather: Weather | None = None
        self._autopilot: bool | None = None
        self._last_xy: tuple[float, float] | None = None
        self._distance = 0.0
        self._sigterm = SigtermAsInterrupt()

        self._client, self.server_version, self._world = connect(self._carla, self.host, self.port, self.timeout)
        self.client_version = str(self._client.get_client_version())
        if parse_version(self.client_version) != parse_version(self.server_version):
            warnings.warn(
                f"CARLA client {self.client_version} and server {self.server_version} differ "
                "(install the client that matches the server: pip install carla==<server version>)",
                RuntimeWarning,
                stacklevel=2,
            )
        self.legacy_tags = is_legacy_server(self.server_version) if legacy_tags is None else bool(legacy_tags)

    # -- public API -------------------------------------------------------------------------------

    def reset(self, scenario: Scenario, seed: int | None = None) -> Observation:
        """Start an episode: the town, synchronous mode, weather, ego, cameras, traffic; first frame."""
        if self._closed:
            raise BackendError("the CARLA backend is closed (make a new one)")
        seed = scenario.seed if seed is None else int(seed)
        rng = np.random.default_rng(seed)
        self._sigterm.install()
        with self._server_errors():
            self._destroy_actors()
            if scenario.map:
                self._load_opendrive(scenario.map)
            else:
                self._load_town(scenario.town)
            self._apply_sync(scenario.dt)
            self._setup_traffic_manager(seed)
            self._scenario = scenario
            self._episode_frame = 0
            self._episode_t0 = None
            self._weather = None
            self._set_weather(scenario.weather_at(0))
            self._spawn_ego(scenario, rng)
            self._spawn_cameras(scenario.cameras)
            self._spawn_npcs(scenario, rng, seed)
            # A warm-up tick: sensors spawned just before a tick may miss it; its data is stale
            # by the next one and gets drained. The ego stands still until the first step()
            # says who drives, as in the embedded backend.
            self._world.tick(self.timeout)
            self._autopilot = None
            self._distance = 0.0
            self._last_xy = None
            return self._tick()

    def step(self, control: Control | None = None, *, render: bool = True) -> Observation:
        """Advance one dt: the Traffic Manager drives when `control` is None, else `control` does.

        The server renders every tick whatever `render` says; its frames are always decoded.
        """
        if self._closed:
            raise BackendError("the CARLA backend is closed (make a new one)")
        if self._ego is None or self._scenario is None:
            raise BackendError("step() before reset() (call reset(scenario) first)")
        carla = self._carla
        with self._server_errors():
            if control is None:
                self._set_autopilot(True)
            else:
                self._set_autopilot(False)
                c = control.clipped()
                self._ego.apply_control(
                    carla.VehicleControl(
                        throttle=float(c.throttle),
                        steer=float(c.steer),
                        brake=float(c.brake),
                        hand_brake=bool(c.hand_brake),
                        reverse=bool(c.reverse),
                    )
                )
            self._episode_frame += 1
            self._set_weather(self._scenario.weather_at(self._episode_frame))
            return self._tick()

    def close(self) -> None:
        """Leave the server as found. Idempotent; safe from a KeyboardInterrupt handler.

        Ctrl-C and SIGTERM arriving during cleanup are held back until it has finished, then
        re-raised as KeyboardInterrupt.
        """
        if self._closed:
            return
        self._closed = True
        try:
            with signals_deferred():
                self._destroy_actors()
                self._restore_settings()
        finally:  # after the deferral, which reinstates the handlers it found
            self._sigterm.restore()

    # -- episode setup ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _server_errors(self) -> Iterator[None]:
        """Turn the client's RuntimeErrors into one-line BackendErrors that name the server."""
        try:
            yield
        except BackendError:
            raise
        except RuntimeError as e:
            raise BackendError(
                f"CARLA server at {self.host}:{self.port} failed: {str(e).splitlines()[0] if str(e) else e!r}"
                " (is the server still running? rerun with a larger --timeout if it is slow)"
            ) from e

    def _load_town(self, town: str) -> None:
        current = self._world.get_map().name
        if not same_town(current, town):
            available = [m.rsplit("/", 1)[-1] for m in self._client.get_available_maps()]
            if not any(same_town(m, town) for m in available):
                raise BackendError(
                    f"town {town!r} is not on the CARLA server (available: {', '.join(sorted(available))})"
                )
            if self._found_settings is None:
                self._found_settings = self._world.get_settings()
            # Keep the settings across the load: they are restored exactly as found at close().
            self._world = self._client.load_world(town, False)
            self._applied_dt = None
        self._opendrive_sha = None
        self._map = self._world.get_map()

    def _load_opendrive(self, path: str) -> None:
        """Build a world on the server from an OpenDRIVE file (ours or CARLA's), once per file.

        CARLA meshes the roads from the file alone (`generate_opendrive_world`): it draws no
        road marks and no buildings, so camera frames have no RoadLine pixels there.
        """
        text, sha = read_opendrive(path)  # a bad file fails here in one line, before the server changes
        if sha != self._opendrive_sha:
            if self._found_settings is None:
                self._found_settings = self._world.get_settings()
            # Keep the settings across the load, as for a town: close() restores them as found.
            self._world = self._client.generate_opendrive_world(text, generation_parameters(self._carla), False)
            self._applied_dt = None
            self._opendrive_sha = sha
        self._map = self._world.get_map()

    def _apply_sync(self, dt: float) -> None:
        if self._found_settings is None:
            self._found_settings = self._world.get_settings()
        if self._applied_dt == dt:
            return
        wanted = sync_settings(dt)
        settings = self._world.get_settings()
        for name, value in dataclasses.asdict(wanted).items():
            setattr(settings, name, value)
        self._world.apply_settings(settings)
        self._applied_dt = dt

    def _setup_traffic_manager(self, seed: int) -> None:
        self._tm = self._client.get_trafficmanager(self.tm_port)
        self._tm.set_synchronous_mode(True)
        self._tm.set_random_device_seed(int(seed))

    def _set_weather(self, weather: Weather) -> None:
        """By CARLA preset when the weather is an unchanged named preset, else by parameters.

        'Default' means ClearNoon in this project, not CARLA's 'keep the map's weather', so it
        goes by parameters.
        """
        if weather == self._weather:
            return
        carla = self._carla
        named = weather.name in PRESET_NAMES and weather.name != "Default"
        if named and weather == Weather.preset(weather.name):
            params = getattr(carla.WeatherParameters, weather.name)
        else:
            params = carla.WeatherParameters(**{k: getattr(weather, k) for k in Weather.field_names()})
        self._world.set_weather(params)
        self._weather = weather

    def _spawn_ego(self, scenario: Scenario, rng: np.random.Generator) -> None:
        carla = self._carla
        points = spawn_points(carla, self._map, from_lanes=bool(scenario.map))
        if not points:
            raise BackendError(f"{scenario.place!r} has no spawn points (choose another town or map)")
        library = self._world.get_blueprint_library()
        bp = ego_blueprint(library, EGO_BLUEPRINT)
        first = scenario.ego_spawn % len(points) if scenario.ego_spawn is not None else int(rng.integers(len(points)))
        self._ego, self._ego_spawn_index = spawn_first_free(self._world, bp, points, first)
        if self._ego is None:
            raise BackendError(f"no free spawn point for the ego in {scenario.place!r} (fewer NPCs?)")
        # Collision sensor: events arrive on the client's thread; keep only their frame ids.
        cbp = library.find("sensor.other.collision")
        self._collision_sensor = self._world.spawn_actor(cbp, carla.Transform(), attach_to=self._ego)
        with self._collision_lock:
            self._collisions = []
        self._collision_sensor.listen(self._on_collision)

    def _on_collision(self, event: Any) -> None:
        with self._collision_lock:
            self._collisions.append(int(event.frame))

    def _spawn_cameras(self, specs: tuple[CameraSpec, ...]) -> None:
        """An RGB and a semantic camera per spec, with the same transform, size and FOV."""
        carla = self._carla
        for spec in specs:
            (x, y, z), (pitch, yaw, roll) = camera_pose(spec)
            transform = carla.Transform(carla.Location(x=x, y=y, z=z), carla.Rotation(pitch=pitch, yaw=yaw, roll=roll))
            cam = _Camera(spec, None, None, queue.Queue(), queue.Queue())
            # Registered before each spawn returns, so an interrupt right now still cleans up.
            self._cameras.append(cam)
            cam.rgb = self._spawn_camera("sensor.camera.rgb", spec, transform)
            cam.semantic = self._spawn_camera("sensor.camera.semantic_segmentation", spec, transform)
            cam.rgb.listen(cam.rgb_queue.put)
            cam.semantic.listen(cam.semantic_queue.put)

    def _spawn_camera(self, kind: str, spec: CameraSpec, transform: Any) -> Any:
        carla = self._carla
        bp = self._world.get_blueprint_library().find(kind)
        bp.set_attribute("image_size_x", str(spec.width))
        bp.set_attribute("image_size_y", str(spec.height))
        bp.set_attribute("fov", str(spec.fov_deg))
        bp.set_attribute("sensor_tick", "0.0")
        return self._world.spawn_actor(bp, transform, attach_to=self._ego, attachment_type=carla.AttachmentType.Rigid)

    def _spawn_npcs(self, scenario: Scenario, rng: np.random.Generator, seed: int) -> None:
        points = [p for i, p in enumerate(self._map.get_spawn_points()) if i != self._ego_spawn_index]
        spawn_vehicles(self._carla, self._client, self._world, points, scenario.npc_vehicles, rng, self.tm_port,
                       self._npc_ids)  # fmt: skip
        if scenario.npc_walkers:
            spawn_walkers(self._carla, self._client, self._world, scenario.npc_walkers, rng, seed, self.timeout,
                          self._walker_ids, self._walker_controllers)  # fmt: skip

    def _set_autopilot(self, on: bool) -> None:
        if self._autopilot == on:
            return
        self._ego.set_autopilot(on, self.tm_port)
        if on and self._scenario is not None:
            self._tm.set_desired_speed(self._ego, self._scenario.target_speed * 3.6)  # km/h
        self._autopilot = on

    # -- per tick ---------------------------------------------------------------------------------

    def _tick(self) -> Observation:
        """One world tick and its frame-matched data.

        Observation.frame and sim_time count from the reset, as in the embedded backend, so
        that `scenario.is_done(obs.frame, ...)` means the same everywhere; the server's frame
        id stays in `server_frame`.
        """
        frame = int(self._world.tick(self.timeout))
        first_time: float | None = None
        cameras: dict[str, CameraFrame] = {}
        for cam in self._cameras:
            rgb_data = frame_matched(cam.rgb_queue, frame, f"{cam.spec.name}.rgb", self.sensor_timeout)
            sem_data = frame_matched(cam.semantic_queue, frame, f"{cam.spec.name}.semantic", self.sensor_timeout)
            w, h = cam.spec.width, cam.spec.height
            cameras[cam.spec.name] = CameraFrame(
                spec=cam.spec,
                rgb=bgra_to_rgb(rgb_data.raw_data, w, h),
                labels=bgra_to_labels(sem_data.raw_data, w, h, legacy=self.legacy_tags),
            )
            if first_time is None:
                first_time = float(rgb_data.timestamp)
        if first_time is None:
            first_time = float(self._world.get_snapshot().timestamp.elapsed_seconds)
        ego = self._ego_state(frame)
        self.server_frame = frame
        if self._episode_t0 is None:
            self._episode_t0 = first_time
        return Observation(
            frame=self._episode_frame,
            sim_time=first_time - self._episode_t0,
            ego=ego,
            cameras=cameras,
            weather=self._weather.name if self._weather else "",
            town=self._scenario.place if self._scenario else "",
        )

    def _ego_state(self, frame: int) -> EgoState:
        tf = self._ego.get_transform()
        x, y, z, yaw = from_carla(tf.location.x, tf.location.y, tf.location.z, tf.rotation.yaw)
        v = self._ego.get_velocity()
        speed = math.sqrt(v.x * v.x + v.y * v.y + v.z * v.z)
        if self._last_xy is not None:
            self._distance += math.hypot(x - self._last_xy[0], y - self._last_xy[1])
        self._last_xy = (x, y)
        lane_id, lane_width, offset, heading, in_junction = lane_state(self._carla, self._map, tf.location, x, y, yaw)
        with self._collision_lock:
            collision = any(f <= frame for f in self._collisions)
            self._collisions = [f for f in self._collisions if f > frame]
        return EgoState(
            x=x,
            y=y,
            z=z,
            yaw=yaw,
            speed=speed,
            steer=float(self._ego.get_control().steer),
            lane_id=lane_id,
            lane_width=lane_width,
            lateral_offset=offset,
            heading_error=heading,
            distance=self._distance,
            collision=collision,
            in_junction=in_junction,
        )

    # -- cleanup ----------------------------------------------------------------------------------

    def _attempt(self, what: str, fn: Callable[[], Any]) -> None:
        """Run one cleanup step; a failure is reported and the next step still runs."""
        if self._dead:
            return
        try:
            fn()
        except RuntimeError as e:
            if "time-out" in str(e) or "timeout" in str(e).lower():
                self._dead = True  # each further call would wait a full timeout too
            warnings.warn(f"CARLA cleanup: {what} failed ({e})", RuntimeWarning, stacklevel=3)

    def _destroy_actors(self) -> None:
        """Stop sensors, destroy sensors, then destroy the ego and NPCs in one batch."""
        carla = self._carla
        sensors = [s for cam in self._cameras for s in (cam.rgb, cam.semantic) if s is not None]
        if self._collision_sensor is not None:
            sensors.append(self._collision_sensor)
        self._cameras, self._collision_sensor = [], None
        for s in sensors:
            self._attempt(f"stopping sensor {s.id}", s.stop)
        for s in sensors:
            self._attempt(f"destroying sensor {s.id}", s.destroy)
        controllers, self._walker_controllers = self._walker_controllers, []
        for c in controllers:
            self._attempt(f"stopping walker controller {c.id}", c.stop)
        ids = list(self._walker_ids) + list(self._npc_ids)
        if self._ego is not None:
            ids.append(self._ego.id)
        self._walker_ids, self._npc_ids, self._ego, self._autopilot = [], [], None, None
        if ids:
            self._attempt(
                f"destroying {len(ids)} actors",
                lambda: self._client.apply_batch_sync([carla.command.DestroyActor(i) for i in ids], False),
            )

    def _restore_settings(self) -> None:
        """Put the Traffic Manager and the world back in the mode found at the first reset.

        The TM cannot be asked for its mode; it can only be synchronous along with the world, so
        it is set to the world's found mode.
        """
        found = self._found_settings
        if found is None:
            return
        if self._tm is not None:
            self._attempt(
                "restoring the Traffic Manager's mode",
                lambda: self._tm.set_synchronous_mode(bool(found.synchronous_mode)),
            )
        self._attempt("restoring the world settings", lambda: self._world.apply_settings(found))
        self._found_settings = None
        self._applied_dt = None
