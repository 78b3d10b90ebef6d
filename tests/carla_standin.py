"""A STAND-IN for a CARLA server and its `carla` client module (a test double, not CARLA).

It exists so the CARLA backend's contract (call order, frame matching, cleanup) can be tested
in-process without a multi-GB server. It mimics only what the backend uses, with the real
0.9.16 names (a test checks that every public name here exists on the real classes), and logs
every call that matters for ordering into `StandinCarla.log`.

World: a straight road along CARLA's +x axis, lane centre at y = 0, 3.5 m lanes; spawn points
every 10 m. Vehicles on autopilot move at 5 m/s. Cameras deliver BGRA buffers whose red
channel holds tags (sky above, road below, a RoadLine column in the middle).

Faults, each for the next tick only: `faults[sensor_kind] = "late" | "drop" | "stale"`,
`interrupt_next_tick`, `collide_next_tick`, `dead` (every call times out).
"""

from __future__ import annotations

import copy
import fnmatch
import math
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from sim.carla_backend import is_legacy_server
from sim.types import PRESET_NAMES, Weather

RGB_KIND = "sensor.camera.rgb"
SEM_KIND = "sensor.camera.semantic_segmentation"
COLLISION_KIND = "sensor.other.collision"


# -- value types (same names and fields as carla's) -----------------------------------------------


@dataclass
class Location:
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


Vector3D = Location


@dataclass
class Rotation:
    pitch: float = 0.0
    yaw: float = 0.0
    roll: float = 0.0


@dataclass
class Transform:
    location: Location = field(default_factory=Location)
    rotation: Rotation = field(default_factory=Rotation)


@dataclass
class VehicleControl:
    throttle: float = 0.0
    steer: float = 0.0
    brake: float = 0.0
    hand_brake: bool = False
    reverse: bool = False
    manual_gear_shift: bool = False
    gear: int = 0


@dataclass
class WorldSettings:
    synchronous_mode: bool = False
    no_rendering_mode: bool = False
    fixed_delta_seconds: float | None = None
    substepping: bool = True
    max_substep_delta_time: float = 0.01
    max_substeps: int = 10
    max_culling_distance: float = 0.0
    deterministic_ragdolls: bool = False
    tile_stream_distance: float = 3000.0
    actor_active_distance: float = 2000.0
    spectator_as_ego: bool = True


class WeatherParameters:
    """Fields as carla.WeatherParameters; presets as class attributes (set below)."""

    def __init__(self, **kwargs: float) -> None:
        for k in Weather.field_names():
            setattr(self, k, float(kwargs.pop(k, 0.0)))
        if kwargs:
            raise TypeError(f"unknown weather fields {sorted(kwargs)}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WeatherParameters) and vars(self) == vars(other)


for _name in PRESET_NAMES:
    if _name != "Default":
        _w = Weather.preset(_name)
        _values = {k: getattr(_w, k) for k in Weather.field_names()}
        setattr(WeatherParameters, _name, WeatherParameters(**_values))


class LaneType:
    Driving = 2


class AttachmentType:
    Rigid = 0
    SpringArm = 1


@dataclass
class Image:
    frame: int
    timestamp: float
    width: int
    height: int
    raw_data: bytes
    fov: float = 90.0


@dataclass
class OpendriveGenerationParameters:
    vertex_distance: float = 2.0
    max_road_length: float = 50.0
    wall_height: float = 1.0
    additional_width: float = 0.6
    smooth_junctions: bool = True
    enable_mesh_visibility: bool = True
    enable_pedestrian_navigation: bool = True


@dataclass
class CollisionEvent:
    frame: int
    timestamp: float
    actor: Any = None
    other_actor: Any = None


@dataclass
class Waypoint:
    transform: Transform
    lane_id: int = -1
    lane_width: float = 3.5
    is_junction: bool = False
    road_id: int = 1


@dataclass
class Timestamp:
    frame: int
    elapsed_seconds: float
    delta_seconds: float
    platform_timestamp: float = 0.0


@dataclass
class WorldSnapshot:
    frame: int
    timestamp: Timestamp


# -- commands -------------------------------------------------------------------------------------


class _Future:
    """carla.command.FutureActor: the id of the actor spawned by the enclosing SpawnActor."""


class SpawnActor:
    def __init__(self, blueprint: Any, transform: Transform, parent: Any = None) -> None:
        self.blueprint, self.transform, self.parent = blueprint, transform, parent
        self.chain: list[Any] = []

    def then(self, command: Any) -> SpawnActor:
        self.chain.append(command)
        return self


class SetAutopilot:
    def __init__(self, actor: Any, enabled: bool, tm_port: int = 8000) -> None:
        self.actor, self.enabled, self.tm_port = actor, enabled, tm_port


class DestroyActor:
    def __init__(self, actor: Any) -> None:
        self.actor = actor


@dataclass
class Response:
    actor_id: int = 0
    error: str = ""

    def has_error(self) -> bool:
        return bool(self.error)


# -- blueprints -----------------------------------------------------------------------------------


class ActorAttribute:
    def __init__(self, value: str) -> None:
        self.value = value

    def as_int(self) -> int:
        return int(self.value)

    def as_str(self) -> str:
        return self.value


class ActorBlueprint:
    def __init__(self, id: str, **attributes: str) -> None:
        self.id = id
        self.attributes = dict(attributes)
        self.tags = id.split(".")

    def has_attribute(self, name: str) -> bool:
        return name in self.attributes

    def get_attribute(self, name: str) -> ActorAttribute:
        return ActorAttribute(self.attributes[name])

    def set_attribute(self, name: str, value: str) -> None:
        if name not in self.attributes:
            raise IndexError(f"blueprint {self.id} has no attribute {name!r}")
        self.attributes[name] = value


class BlueprintLibrary:
    def __init__(self, blueprints: list[ActorBlueprint]) -> None:
        self._bps = blueprints

    def filter(self, wildcard_pattern: str) -> BlueprintLibrary:
        return BlueprintLibrary([b for b in self._bps if fnmatch.fnmatch(b.id, wildcard_pattern)])

    def find(self, id: str) -> ActorBlueprint:
        for b in self._bps:
            if b.id == id:
                return copy.deepcopy(b)
        raise IndexError(f"blueprint {id!r} not found")

    def __iter__(self):
        return iter([copy.deepcopy(b) for b in self._bps])

    def __len__(self) -> int:
        return len(self._bps)

    def __getitem__(self, i: int) -> ActorBlueprint:
        return copy.deepcopy(self._bps[i])


def _library() -> list[ActorBlueprint]:
    cam = dict(image_size_x="800", image_size_y="600", fov="90", sensor_tick="0.0", role_name="front")
    return [
        ActorBlueprint("vehicle.lincoln.mkz_2020", role_name="", number_of_wheels="4"),
        ActorBlueprint("vehicle.audi.a2", role_name="", number_of_wheels="4"),
        ActorBlueprint("vehicle.tesla.model3", role_name="", number_of_wheels="4"),
        ActorBlueprint("vehicle.yamaha.yzf", role_name="", number_of_wheels="2"),
        ActorBlueprint("walker.pedestrian.0001", role_name="", is_invincible="true"),
        ActorBlueprint("controller.ai.walker"),
        ActorBlueprint(RGB_KIND, **cam),
        ActorBlueprint(SEM_KIND, **cam),
        ActorBlueprint(COLLISION_KIND, role_name=""),
    ]


# -- actors ---------------------------------------------------------------------------------------


class Actor:
    """One actor of the stand-in world (vehicle, sensor, walker or walker controller)."""

    def __init__(self, server: Server, id: int, bp: ActorBlueprint, transform: Transform, parent: Any) -> None:
        self._server, self.id, self.type_id = server, id, bp.id
        self.attributes = dict(bp.attributes)
        self._transform, self.parent = copy.deepcopy(transform), parent
        self._velocity = Location()
        self._control = VehicleControl()
        self._autopilot = False
        self._callback: Any = None
        self.is_alive = True

    # vehicles
    def get_transform(self) -> Transform:
        return copy.deepcopy(self._transform)

    def get_location(self) -> Location:
        return copy.deepcopy(self._transform.location)

    def get_velocity(self) -> Location:
        return copy.deepcopy(self._velocity)

    def get_control(self) -> VehicleControl:
        return copy.deepcopy(self._control)

    def apply_control(self, control: VehicleControl) -> None:
        self._server.check_alive()
        self._control = copy.deepcopy(control)

    def set_autopilot(self, enabled: bool = True, tm_port: int = 8000) -> None:
        self._server.check_alive()
        self._server.log.append(f"autopilot {self.id} {enabled} {tm_port}")
        self._autopilot = bool(enabled)

    # sensors
    def listen(self, callback: Any) -> None:
        self._server.check_alive()
        self._server.log.append(f"listen {self.id}")
        self._callback = callback

    def is_listening(self) -> bool:
        return self._callback is not None

    def stop(self) -> None:
        self._server.check_alive()
        self._server.log.append(f"stop {self.id}")
        self._callback = None

    # walker controllers
    def start(self) -> None:
        self._server.log.append(f"start {self.id}")

    def go_to_location(self, location: Location) -> None:
        pass

    def set_max_speed(self, speed: float = 1.4) -> None:
        pass

    def destroy(self) -> bool:
        self._server.check_alive()
        self._server.log.append(f"destroy {self.id}")
        return self._server.remove(self.id)


# -- map, world, traffic manager, client ----------------------------------------------------------


class Map:
    def __init__(self, server: Server) -> None:
        self._server = server
        self.name = server.map_name

    def get_spawn_points(self) -> list[Transform]:
        if self._server.opendrive is not None:  # a world built from a file has none, as CARLA's may
            return []
        y = self._server.spawn_y
        return [Transform(Location(10.0 * i, y, 0.5), Rotation(yaw=0.0)) for i in range(20)]

    def generate_waypoints(self, distance: float) -> list[Waypoint]:
        n = int(200.0 // distance)
        return [Waypoint(Transform(Location(distance * i, 0.0, 0.0), Rotation(yaw=0.0))) for i in range(n)]

    def get_waypoint(self, location: Location, project_to_road: bool = True, lane_type: int = 2) -> Waypoint:
        centre = Transform(Location(location.x, 0.0, 0.0), Rotation(yaw=0.0))
        return Waypoint(centre, lane_id=-1, lane_width=3.5)


class TrafficManager:
    def __init__(self, server: Server, port: int) -> None:
        self._server, self._port = server, port

    def get_port(self) -> int:
        return self._port

    def set_synchronous_mode(self, mode: bool = True) -> None:
        self._server.check_alive()
        self._server.log.append(f"tm.sync {bool(mode)} port={self._port}")
        self._server.tm_sync = bool(mode)

    def set_random_device_seed(self, value: int) -> None:
        self._server.log.append(f"tm.seed {value}")
        self._server.tm_seed = value

    def set_desired_speed(self, actor: Actor, speed: float) -> None:
        self._server.desired_speed[actor.id] = speed


class World:
    def __init__(self, server: Server) -> None:
        self._server = server

    @property
    def id(self) -> int:
        return self._server.episode

    def get_map(self) -> Map:
        self._server.check_alive()
        return Map(self._server)

    def get_settings(self) -> WorldSettings:
        self._server.check_alive()
        return copy.deepcopy(self._server.settings)

    def apply_settings(self, settings: WorldSettings) -> int:
        s = self._server
        s.check_alive()
        if settings.synchronous_mode and settings.fixed_delta_seconds and settings.substepping:
            if settings.fixed_delta_seconds > settings.max_substep_delta_time * settings.max_substeps + 1e-9:
                raise RuntimeError("fixed_delta_seconds > max_substep_delta_time * max_substeps")
            if settings.max_substeps > 16:
                raise RuntimeError("max_substeps > 16")
        s.log.append(f"apply_settings sync={settings.synchronous_mode} dt={settings.fixed_delta_seconds}")
        s.settings = copy.deepcopy(settings)
        return s.frame

    def get_blueprint_library(self) -> BlueprintLibrary:
        return BlueprintLibrary(_library())

    def spawn_actor(
        self,
        blueprint: ActorBlueprint,
        transform: Transform,
        attach_to: Any = None,
        attachment_type: int = 0,
        bone: str = "",
    ) -> Actor:
        actor = self.try_spawn_actor(blueprint, transform, attach_to, attachment_type)
        if actor is None:
            raise RuntimeError("Spawn failed because of collision at spawn position")
        return actor

    def try_spawn_actor(
        self,
        blueprint: ActorBlueprint,
        transform: Transform,
        attach_to: Any = None,
        attachment_type: int = 0,
        bone: str = "",
    ) -> Actor | None:
        return self._server.spawn(blueprint, transform, attach_to)

    def get_actors(self, actor_ids: list[int] | None = None) -> list[Actor]:
        ids = self._server.actors if actor_ids is None else actor_ids
        return [self._server.actors[i] for i in ids if i in self._server.actors]

    def get_actor(self, actor_id: int) -> Actor | None:
        return self._server.actors.get(actor_id)

    def tick(self, seconds: float = 10.0) -> int:
        return self._server.tick(seconds)

    def get_snapshot(self) -> WorldSnapshot:
        s = self._server
        dt = s.settings.fixed_delta_seconds or 0.0
        return WorldSnapshot(s.frame, Timestamp(s.frame, s.sim_time, dt))

    def set_weather(self, weather: WeatherParameters) -> None:
        self._server.check_alive()
        self._server.log.append("set_weather")
        self._server.weather = weather

    def get_weather(self) -> WeatherParameters:
        return self._server.weather

    def set_pedestrians_seed(self, seed: int) -> None:
        self._server.pedestrians_seed = seed

    def get_random_location_from_navigation(self) -> Location:
        return Location(self._server.rng.uniform(0, 100), 6.0, 0.0)


class Client:
    def __init__(self, server: Server, host: str = "127.0.0.1", port: int = 2000, worker_threads: int = 0) -> None:
        self._server, self.host, self.port = server, host, port
        self._timeout = 5.0

    def set_timeout(self, seconds: float) -> None:
        self._timeout = seconds
        self._server.timeout = seconds

    def get_client_version(self) -> str:
        return "0.9.16"

    def get_server_version(self) -> str:
        self._server.check_alive()
        return self._server.version

    def get_world(self) -> World:
        self._server.check_alive()
        return World(self._server)

    def get_available_maps(self) -> list[str]:
        return [f"/Game/Carla/Maps/{m}" for m in ("Town01", "Town03", "Town04", "Town10HD_Opt")]

    def load_world(self, map_name: str, reset_settings: bool = True, map_layers: int = -1) -> World:
        s = self._server
        s.check_alive()
        s.log.append(f"load_world {map_name} reset_settings={reset_settings}")
        s.map_name, s.opendrive = f"Carla/Maps/{map_name}", None
        s.episode += 1
        if reset_settings:
            s.settings = WorldSettings()
        return World(s)

    def generate_opendrive_world(
        self, opendrive: str, parameters: OpendriveGenerationParameters | None = None, reset_settings: bool = True
    ) -> World:
        s = self._server
        s.check_alive()
        s.log.append(f"generate_opendrive_world {len(opendrive)} chars reset_settings={reset_settings}")
        s.map_name, s.opendrive = "OpenDriveMap", opendrive
        s.episode += 1
        if reset_settings:
            s.settings = WorldSettings()
        return World(s)

    def get_trafficmanager(self, client_connection: int = 8000) -> TrafficManager:
        self._server.log.append(f"tm {client_connection}")
        return TrafficManager(self._server, client_connection)

    def apply_batch_sync(self, commands: list[Any], do_tick: bool = False) -> list[Response]:
        s = self._server
        s.check_alive()
        out = []
        destroyed = []
        for c in commands:
            if isinstance(c, SpawnActor):
                parent = c.parent if not isinstance(c.parent, int) else s.actors.get(c.parent)
                actor = s.spawn(c.blueprint, c.transform, parent)
                if actor is None:
                    out.append(Response(0, "Spawn failed because of collision at spawn position"))
                    continue
                for then in c.chain:
                    if isinstance(then, SetAutopilot):
                        target = actor.id if then.actor is _Future else then.actor
                        s.actors[target]._autopilot = then.enabled
                        s.log.append(f"autopilot {target} {then.enabled} {then.tm_port}")
                out.append(Response(actor.id))
            elif isinstance(c, DestroyActor):
                aid = c.actor if isinstance(c.actor, int) else c.actor.id
                ok = s.remove(aid)
                destroyed.append(aid)
                out.append(Response(aid, "" if ok else "actor not found"))
        if destroyed:
            s.log.append(f"batch_destroy {sorted(destroyed)}")
        if do_tick and s.settings.synchronous_mode:
            s.tick(self._timeout)
        return out


class Server:
    """The state of the stand-in world: settings, frame counter, actors, faults and the call log."""

    def __init__(
        self,
        version: str = "0.9.16",
        map_name: str = "Carla/Maps/Town03",
        settings: WorldSettings | None = None,
        spawn_y: float = 0.0,
        occupied: int = 0,
    ) -> None:
        self.version, self.map_name = version, map_name
        self.opendrive: str | None = None  # the text of a world built by generate_opendrive_world
        self.settings = settings if settings is not None else WorldSettings()
        self.spawn_y = spawn_y
        self.occupied = occupied  # the first N spawn points are taken: spawning there fails
        self.log: list[str] = []
        self.frame = 1000
        self.sim_time = 0.0
        self.episode = 1
        self.actors: dict[int, Actor] = {}
        self._next_id = 100
        self.tm_sync = False
        self.tm_seed: int | None = None
        self.desired_speed: dict[int, float] = {}
        self.weather: Any = None
        self.pedestrians_seed: int | None = None
        self.timeout = 5.0
        self.rng = np.random.default_rng(0)
        self.faults: dict[str, str] = {}
        self.interrupt_next_tick = False
        self.collide_next_tick = False
        self.dead = False
        self.late_s = 0.15
        self._timers: list[threading.Timer] = []

    # plumbing
    def check_alive(self) -> None:
        if self.dead:
            raise RuntimeError(
                f"time-out of {int(self.timeout * 1000)}ms while waiting for the simulator, "
                "make sure the simulator is ready and connected to 127.0.0.1:2000"
            )

    def spawn(self, bp: ActorBlueprint, transform: Transform, parent: Any) -> Actor | None:
        self.check_alive()
        if parent is None and bp.id.startswith("vehicle."):
            taken = [a for a in self.actors.values() if a.type_id.startswith("vehicle.")]
            loc = transform.location
            if any(math.hypot(a._transform.location.x - loc.x, a._transform.location.y - loc.y) < 2.0 for a in taken):
                return None
            if self.occupied and loc.x < 10.0 * self.occupied - 1e-6:
                return None
        actor = Actor(self, self._next_id, bp, transform, parent)
        self._next_id += 1
        self.actors[actor.id] = actor
        loc = transform.location
        where = f" on {parent.id}" if parent is not None else f" at {loc.x:.1f},{loc.y:.1f}"
        self.log.append(f"spawn {actor.id} {bp.id}{where}")
        return actor

    def remove(self, actor_id: int) -> bool:
        actor = self.actors.pop(actor_id, None)
        if actor is not None:
            actor.is_alive = False
        return actor is not None

    def sensors(self, kind: str) -> list[Actor]:
        return [a for a in self.actors.values() if a.type_id == kind]

    def vehicles(self) -> list[Actor]:
        return [a for a in self.actors.values() if a.type_id.startswith("vehicle.")]

    # simulation
    def tick(self, seconds: float = 10.0) -> int:
        self.check_alive()
        if self.interrupt_next_tick:
            self.interrupt_next_tick = False
            raise KeyboardInterrupt
        if not self.settings.synchronous_mode:
            raise RuntimeError("tick() in asynchronous mode")
        dt = self.settings.fixed_delta_seconds or 0.05
        self.frame += 1
        self.sim_time += dt
        self.log.append(f"tick {self.frame}")
        for v in self.vehicles():
            if v._autopilot:
                speed = 5.0
            else:
                speed = 10.0 * v._control.throttle * (0.0 if v._control.brake > 0 else 1.0)
            yaw = math.radians(v._transform.rotation.yaw)
            v._transform.location.x += speed * dt * math.cos(yaw)
            v._transform.location.y += speed * dt * math.sin(yaw)
            v._velocity = Location(speed * math.cos(yaw), speed * math.sin(yaw), 0.0)
        faults, self.faults = self.faults, {}
        for kind in (RGB_KIND, SEM_KIND):
            for sensor in self.sensors(kind):
                self._deliver(sensor, faults.get(kind, ""))
        if self.collide_next_tick:
            self.collide_next_tick = False
            for sensor in self.sensors(COLLISION_KIND):
                if sensor._callback is not None:
                    sensor._callback(CollisionEvent(self.frame, self.sim_time))
        return self.frame

    def image(self, sensor: Actor, frame: int) -> Image:
        w, h = int(sensor.attributes["image_size_x"]), int(sensor.attributes["image_size_y"])
        bgra = np.zeros((h, w, 4), dtype=np.uint8)
        bgra[..., 3] = 255
        if sensor.type_id == SEM_KIND:
            legacy = is_legacy_server(self.version)
            bgra[: h // 2, :, 2] = 13 if legacy else 11  # sky
            bgra[h // 2 :, :, 2] = 7 if legacy else 1  # road
            bgra[h // 2 :, w // 2 - 2 : w // 2 + 2, 2] = 6 if legacy else 24  # lane marking
        else:
            bgra[..., 0], bgra[..., 1], bgra[..., 2] = 10, 20, frame % 256  # B, G, R
        return Image(frame, self.sim_time, w, h, bgra.tobytes(), float(sensor.attributes["fov"]))

    def _deliver(self, sensor: Actor, fault: str) -> None:
        cb = sensor._callback
        if cb is None or fault == "drop":
            return
        if fault == "stale":
            cb(self.image(sensor, self.frame - 1))
        data = self.image(sensor, self.frame)
        if fault == "late":
            timer = threading.Timer(self.late_s, lambda: sensor._callback and sensor._callback(data))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        else:
            cb(data)


class StandinCarla:
    """Pass as `CarlaBackend(carla_module=StandinCarla(server))`: the module-level names of `carla`."""

    Location = Location
    Vector3D = Vector3D
    Rotation = Rotation
    Transform = Transform
    VehicleControl = VehicleControl
    WorldSettings = WorldSettings
    WeatherParameters = WeatherParameters
    LaneType = LaneType
    AttachmentType = AttachmentType
    OpendriveGenerationParameters = OpendriveGenerationParameters
    command = SimpleNamespace(
        SpawnActor=SpawnActor,
        SetAutopilot=SetAutopilot,
        DestroyActor=DestroyActor,
        FutureActor=_Future,
        Response=Response,
    )

    def __init__(self, server: Server | None = None) -> None:
        self.server = server if server is not None else Server()

    @property
    def log(self) -> list[str]:
        return self.server.log

    def Client(self, host: str = "127.0.0.1", port: int = 2000, worker_threads: int = 0) -> Client:  # noqa: N802
        return Client(self.server, host, port, worker_threads)
