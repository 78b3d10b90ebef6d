"""World and episode state behind the server: actors, settings, weather, the tick.

Vehicles move with the embedded simulator's kinematic bicycle under the last control they got
(CARLA's controls are sticky); cameras render with the embedded renderer from their own mount
on their parent. Coordinates are kept in CARLA's frame on the wire and converted to ours
(y and yaw flipped) only where the embedded code is called.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from sim.carla_server import layouts
from sim.carla_server.blueprints import BY_ID, CAMERAS, TRAFFIC_LIGHT, Blueprint
from sim.carla_server.lights import TrafficLights
from sim.carla_server.mapdata import MapData
from sim.carla_server.settings import Settings, WorldError
from sim.carla_server.streams import StreamHub
from sim.carla_server.walkers import CLOTHES, Walker, concat_boxes, walker_boxes
from sim.depth import depth_image
from sim.embedded.render import CameraRenderer
from sim.embedded.traffic import Traffic, Vehicle, bicycle_step, obb_overlap
from sim.types import CameraSpec, Control, Weather

EPISODE_STREAM = 1
SPECTATOR_ID = 1
FIRST_ACTOR_ID = 100
SUBSCRIBE_WAIT_S = 1.0
"""How long a tick waits for a sensor whose token was asked for but whose stream is not connected yet."""


@dataclass
class Actor:
    id: int
    blueprint: Blueprint | None
    type_id: str
    attributes: list  # [[id, type, value]] as spawned
    transform: list  # CARLA [x, y, z, pitch, yaw, roll]; relative to the parent when attached
    parent: int = 0
    owner: object = None  # the RPC connection that spawned it
    # vehicles
    vehicle: Vehicle | None = None
    control: tuple = (0.0, 0.0, 0.0, False, False, False, 0)
    accel: float = 0.0
    walker: Walker | None = None
    # cameras
    spec: CameraSpec | None = None
    renderer: CameraRenderer | None = None
    extra: dict = field(default_factory=dict)

    def attr(self, name: str, default: str = "") -> str:
        for a in self.attributes:
            if a[0] == name:
                return str(a[2])
        if self.blueprint is not None:
            for a in self.blueprint.attributes:
                if a[0] == name:
                    return str(a[2])
        return default

    @property
    def is_camera(self) -> bool:
        return self.type_id in CAMERAS

    @property
    def is_sensor(self) -> bool:
        return self.type_id.startswith("sensor.")

    def wire(self, hub: StreamHub) -> list:
        """rpc/Actor.h: id, parent, description, bounding box, semantic tags, stream token."""
        uid = self.blueprint.uid if self.blueprint else 0
        ext = self.blueprint.extent if self.blueprint else (0.0, 0.0, 0.0)
        centre_z = 0.0 if self.walker is not None else float(ext[2])  # a walker's origin is its centre, as CARLA's
        bbox = [[0.0, 0.0, centre_z], [float(e) for e in ext], [0.0, 0.0, 0.0]]
        tags = bytes([self.blueprint.semantic_tag]) if self.blueprint and self.blueprint.semantic_tag else b""
        token = hub.token(self.id) if self.is_sensor else b""
        return [self.id, self.parent, [uid, self.type_id, [list(a) for a in self.attributes]], bbox, tags, token]


def ours(t: list) -> tuple[float, float, float]:
    """CARLA x, y, yaw [deg] -> our x, y, yaw [rad]."""
    return float(t[0]), -float(t[1]), -math.radians(float(t[4]))


class World:
    """One episode of one map; every method is called with `lock` held by the dispatcher."""

    def __init__(self, mapdata: MapData, hub: StreamHub, seed: int = 0, traffic_lights: bool = True) -> None:
        self.hub = hub
        self.seed = int(seed)
        self.with_lights = bool(traffic_lights)
        self.lock = threading.RLock()
        self.episode_id = 0
        self.frame = 0
        self.elapsed = 0.0
        self.settings = Settings()
        self.expected_streams: set[int] = set()
        self._next_id = FIRST_ACTOR_ID
        self.load(mapdata)

    # -- episode --------------------------------------------------------------------------------
    def load(self, mapdata: MapData) -> None:
        """A fresh episode on a map: every actor but the spectator is gone."""
        for aid, a in list(getattr(self, "actors", {}).items()):
            if aid != SPECTATOR_ID and a.type_id != TRAFFIC_LIGHT.id:
                self.destroy(aid)
        self.map = mapdata
        self.episode_id += 1
        self.weather = Weather.preset("ClearNoon")
        self.actors: dict[int, Actor] = {
            SPECTATOR_ID: Actor(SPECTATOR_ID, None, "spectator", [], [0.0, 0.0, 50.0, -60.0, 0.0, 0.0])
        }
        # The map's traffic lights are actors from the start, as in CARLA (ids before any spawn).
        self.lights = TrafficLights(mapdata.town, self._next_id) if self.with_lights else TrafficLights.none()
        for light in self.lights.lights.values():
            tf = [light.x, -light.y, 0.0, 0.0, -math.degrees(light.yaw), 0.0]
            self.actors[light.id] = Actor(light.id, TRAFFIC_LIGHT, TRAFFIC_LIGHT.id, [], tf)
            self._next_id = light.id + 1

    @property
    def dt(self) -> float:
        return self.settings.fixed_delta_seconds or 0.05

    # -- actors ---------------------------------------------------------------------------------
    def spawn(self, description: list, transform: list, parent: int = 0, owner: object = None) -> Actor:
        if not isinstance(description, list) or len(description) < 3:
            raise WorldError("spawn_actor: malformed actor description")
        type_id = str(description[1])
        bp = BY_ID.get(type_id)
        if bp is None:
            raise WorldError(
                f"blueprint {type_id!r} is not available (this server has: vehicle.*, walker.pedestrian.*, "
                f"{', '.join(CAMERAS)}, sensor.other.collision, sensor.other.lane_invasion)"
            )
        if parent and parent not in self.actors:
            raise WorldError(f"spawn_actor: parent actor {parent} not found")
        tf = _flat_transform(transform)
        attrs = [list(a) for a in description[2]]
        actor = Actor(self._next_id, bp, type_id, attrs, tf, parent=int(parent or 0), owner=owner)
        if type_id.startswith("vehicle."):
            if parent:
                raise WorldError("spawn_actor: vehicles cannot be attached to another actor")
            x, y, yaw = ours(tf)
            x, y, yaw = self.map.exact_spawn(x, y, yaw) or (x, y, yaw)
            for other in self.vehicles():
                if math.hypot(other.vehicle.x - x, other.vehicle.y - y) < 2.0:
                    raise WorldError(f"Spawn failed because of collision at spawn position ({tf[0]:.1f}, {tf[1]:.1f})")
            tf[2] = 0.0
            size = (2 * bp.extent[0], 2 * bp.extent[1], 2 * bp.extent[2])
            color = tuple(int(c) for c in actor.attr("color", "130,130,135").split(","))
            actor.vehicle = Vehicle(actor.id, -1, 0.0, 0.0, 0.0, size, color, bp.semantic_tag, x=x, y=y, yaw=yaw)
        elif type_id.startswith("walker."):
            if parent:
                raise WorldError("spawn_actor: walkers cannot be attached to another actor")
            x, y, yaw = ours(tf)
            tf[2] = bp.extent[2]
            size = (2 * bp.extent[0] + 0.1, 2 * bp.extent[1] + 0.2, 2 * bp.extent[2])
            actor.walker = Walker(x, y, yaw, size, CLOTHES[actor.id % len(CLOTHES)])
        elif actor.is_camera:
            actor.spec = self._camera_spec(actor)
            actor.renderer = CameraRenderer(actor.spec, self.map.town.ground, seed=self.seed)
        self._next_id += 1
        self.actors[actor.id] = actor
        return actor

    def _camera_spec(self, a: Actor) -> CameraSpec:
        try:
            w, h = int(a.attr("image_size_x")), int(a.attr("image_size_y"))
            fov = float(a.attr("fov"))
            # Attached cameras mount on the parent (CARLA's y and yaw flipped into ours); a free
            # camera is placed by its own world transform at render time.
            if a.parent:
                t = a.transform
                return CameraSpec(a.type_id, w, h, fov, t[0], -t[1], t[2], t[3], -t[4])
            return CameraSpec(a.type_id, w, h, fov, 0.0, 0.0, a.transform[2], a.transform[3], 0.0)
        except ValueError as e:
            raise WorldError(f"spawn_actor {a.type_id}: {e}") from None

    def get(self, actor_id: int) -> Actor:
        a = self.actors.get(int(actor_id))
        if a is None:
            raise WorldError(f"actor {actor_id} not found")
        return a

    def destroy(self, actor_id: int) -> bool:
        a = self.actors.get(int(actor_id))
        if a is None:
            return False
        if a.type_id == TRAFFIC_LIGHT.id:
            raise WorldError(f"traffic light {a.id} belongs to the map (set_state or freeze it instead)")
        del self.actors[a.id]
        for child in [c.id for c in self.actors.values() if c.parent == a.id]:
            self.destroy(child)
        if a.is_sensor:
            self.expected_streams.discard(a.id)
            self.hub.drop_stream(a.id)
        return True

    def vehicles(self) -> list[Actor]:
        return [a for a in self.actors.values() if a.vehicle is not None]

    def world_transform(self, a: Actor) -> list:
        """CARLA world transform; attached actors compose with their parent (yaw only, flat world)."""
        if a.vehicle is not None:
            v = a.vehicle
            return [v.x, -v.y, 0.0, 0.0, -math.degrees(v.yaw), 0.0]
        if a.walker is not None:
            w = a.walker
            return [w.x, -w.y, w.size[2] / 2, 0.0, -math.degrees(w.yaw), 0.0]
        if not a.parent or a.parent not in self.actors:
            return list(a.transform)
        p = self.world_transform(self.actors[a.parent])
        yaw = math.radians(p[4])
        c, s = math.cos(yaw), math.sin(yaw)
        x, y, z = a.transform[:3]
        return [
            p[0] + c * x - s * y,
            p[1] + s * x + c * y,
            p[2] + z,
            p[3] + a.transform[3],
            p[4] + a.transform[4],
            p[5] + a.transform[5],
        ]

    def set_transform(self, actor_id: int, transform: list) -> None:
        a = self.get(actor_id)
        tf = _flat_transform(transform)
        if a.vehicle is not None:
            a.vehicle.x, a.vehicle.y, a.vehicle.yaw = ours(tf)
        elif a.walker is not None:
            a.walker.x, a.walker.y, a.walker.yaw = ours(tf)
        else:
            a.transform = tf

    def apply_control(self, actor_id: int, control: list) -> None:
        a = self.get(actor_id)
        if a.vehicle is None:
            raise WorldError(f"apply_control: actor {actor_id} ({a.type_id}) is not a vehicle")
        if not isinstance(control, list) or len(control) < 5:
            raise WorldError("apply_control: malformed VehicleControl")
        t, s, b = (float(x) for x in control[:3])
        hb, rev = bool(control[3]), bool(control[4])
        man = bool(control[5]) if len(control) > 5 else False
        gear = int(control[6]) if len(control) > 6 else 0
        a.control = (min(max(t, 0.0), 1.0), min(max(s, -1.0), 1.0), min(max(b, 0.0), 1.0), hb, rev, man, gear)

    def apply_walker_control(self, actor_id: int, control: list) -> None:
        a = self.get(actor_id)
        if a.walker is None:
            raise WorldError(f"apply_control: actor {actor_id} ({a.type_id}) is not a walker")
        if not isinstance(control, list) or len(control) < 2 or not isinstance(control[0], list):
            raise WorldError("apply_control: malformed WalkerControl")
        try:
            a.walker.apply(control)
        except (TypeError, ValueError) as e:
            raise WorldError(f"apply_control: {e}") from None

    def walkers(self) -> list[Actor]:
        return [a for a in self.actors.values() if a.walker is not None]

    def set_velocity(self, actor_id: int, velocity: list) -> None:
        a = self.get(actor_id)
        if a.vehicle is not None:
            vx, vy = float(velocity[0]), -float(velocity[1])
            a.vehicle.v = math.hypot(vx, vy) * (1.0 if math.cos(math.atan2(vy, vx) - a.vehicle.yaw) >= 0 else -1.0)

    # -- the tick -------------------------------------------------------------------------------
    def tick(self) -> int:
        """Advance one dt, render and publish every subscribed camera, then the episode state."""
        dt = self.dt
        for a in self.vehicles():
            v = a.vehicle
            t, s, b, hb, rev = a.control[:5]
            v0 = v.v
            if v0 == 0.0 and t == 0.0:
                a.accel = 0.0  # at rest and no throttle: nothing moves (and no rounding creeps into yaw)
                continue
            v.x, v.y, v.yaw, v.v = bicycle_step(v.x, v.y, v.yaw, v.v, Control(t, s, b, hb, rev), dt)
            a.accel = (v.v - v0) / dt
        for a in self.walkers():
            a.walker.step(dt)
        self.lights.step(dt)
        self.frame += 1
        self.elapsed += dt
        if self.expected_streams:
            self.hub.wait_for(sorted(self.expected_streams), SUBSCRIBE_WAIT_S)
            self.expected_streams = {i for i in self.expected_streams if not self.hub.subscribed(i)}
        # The state goes first: the client's Python sensor callbacks need the GIL, and calls like
        # apply_batch_sync(..., True) wait for this state while holding it, so sensor frames queued
        # ahead of the state on the client's stream threads would deadlock it. Scripts match
        # sensor data to the tick by frame id (queues), so they see no difference.
        self.hub.publish(EPISODE_STREAM, self.episode_state())
        if not self.settings.no_rendering_mode:
            self._publish_cameras()
        self._publish_collisions()
        return self.frame

    def _publish_collisions(self) -> None:
        """A CollisionEvent per contact and frame for every listened-to collision sensor on a vehicle."""
        import msgpack

        for a in list(self.actors.values()):
            if a.type_id != "sensor.other.collision" or not self.hub.subscribed(a.id):
                continue
            parent = self.actors.get(a.parent)
            if parent is None or parent.vehicle is None:
                continue
            for other, impulse in self._contacts(parent):
                body = msgpack.packb([parent.wire(self.hub), other, impulse], use_bin_type=True)
                head = layouts.sensor_header(
                    layouts.TYPE_COLLISION, self.frame, self.elapsed, tuple(self.world_transform(a))
                )
                self.hub.publish(a.id, head + body)

    def _contacts(self, me: Actor) -> list[tuple[list, list]]:
        """(other actor on the wire, normal impulse) of what the vehicle's footprint overlaps."""
        v = me.vehicle
        mine = (v.x, v.y, v.yaw, v.size[0], v.size[1])
        push = [v.v * 1500.0 * math.cos(v.yaw), -v.v * 1500.0 * math.sin(v.yaw), 0.0]
        out = []
        for o in self.vehicles():
            ov = o.vehicle
            if o.id != me.id and abs(ov.x - v.x) < 12 and abs(ov.y - v.y) < 12:
                if obb_overlap(mine, (ov.x, ov.y, ov.yaw, ov.size[0], ov.size[1])):
                    out.append((o.wire(self.hub), push))
        for o in self.walkers():
            w = o.walker
            if obb_overlap(mine, (w.x, w.y, w.yaw, w.size[0], w.size[1])):
                out.append((o.wire(self.hub), push))
        st = self.map.town.scenery.boxes
        near = np.nonzero((np.abs(st.xy[:, 0] - v.x) < 25) & (np.abs(st.xy[:, 1] - v.y) < 25))[0]
        for i in near:
            if obb_overlap(mine, (st.xy[i, 0], st.xy[i, 1], st.yaw[i], st.size[i, 0], st.size[i, 1])):
                static = [0, 0, [0, "static.prop", []], [[0.0] * 3, [0.0] * 3, [0.0] * 3], bytes([int(st.tag[i])]), b""]
                out.append((static, push))
                break
        return out

    def _publish_cameras(self) -> None:
        cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        boxes: dict[int, object] = {}
        for a in list(self.actors.values()):
            if not a.is_camera or not self.hub.subscribed(a.id):
                continue
            parent = self.actors.get(a.parent) if a.parent else None
            if parent is not None and parent.vehicle is not None:
                pv = parent.vehicle
                pose = (pv.x, pv.y, pv.yaw)
            else:
                pose = ours(self.world_transform(a))
            key = (
                a.parent,
                a.spec.width,
                a.spec.height,
                a.spec.fov_deg,
                a.spec.x,
                a.spec.y,
                a.spec.z,
                a.spec.pitch_deg,
                a.spec.yaw_deg,
                pose,
            )
            if key not in cache:
                if a.parent not in boxes:
                    boxes[a.parent] = self._boxes(skip=a.parent)
                cache[key] = a.renderer.render(*pose, self.map.town.scenery, boxes[a.parent], self.weather, self.frame)
            rgb, labels = cache[key]
            h, w = labels.shape
            bgra = np.empty((h, w, 4), np.uint8)
            bgra[..., 3] = 255
            if a.type_id == "sensor.camera.semantic_segmentation":
                bgra[..., 0] = 0
                bgra[..., 1] = 0
                bgra[..., 2] = labels
                kind = layouts.TYPE_SEMANTIC
            elif a.type_id == "sensor.camera.depth":
                bgra = layouts.depth_bgra(depth_image(a.spec, labels))
                kind = layouts.TYPE_DEPTH
            else:
                bgra[..., :3] = rgb[..., ::-1]
                kind = layouts.TYPE_RGB
            payload = layouts.image_payload(
                kind, self.frame, self.elapsed, tuple(self.world_transform(a)), a.spec.fov_deg, bgra
            )
            self.hub.publish(a.id, payload)

    def _boxes(self, skip: int):
        """Every vehicle but the camera's own as the renderer's boxes (Traffic.boxes skips index 0)."""
        own = self.actors.get(skip)
        others = [a.vehicle for a in self.vehicles() if a.id != skip]
        first = own.vehicle if own is not None and own.vehicle is not None else None
        fleet = SimpleNamespace(vehicles=[first] + others)
        boxes = Traffic.boxes(fleet)
        walkers = [a.walker for a in self.walkers()]
        return concat_boxes(boxes, walker_boxes(walkers)) if walkers else boxes

    def episode_state(self) -> bytes:
        rows = []
        for a in self.actors.values():
            tf = tuple(float(x) for x in self.world_transform(a))
            if a.vehicle is not None:
                v = a.vehicle
                vel = (v.v * math.cos(v.yaw), -v.v * math.sin(v.yaw), 0.0)
                acc = (a.accel * math.cos(v.yaw), -a.accel * math.sin(v.yaw), 0.0)
                signal = self.lights.vehicle_signal(v.x, v.y, v.yaw)
                rows.append(layouts.ActorState(a.id, tf, vel, (0.0, 0.0, 0.0), acc, a.control, signal=signal))
            elif a.walker is not None:
                w = a.walker
                vx, vy = w.velocity
                rows.append(layouts.ActorState(a.id, tf, (vx, -vy, 0.0), walker=w.control))
            elif a.type_id == TRAFFIC_LIGHT.id:
                rows.append(layouts.ActorState(a.id, tf, light=self.lights.wire_state(self.lights.lights[a.id])))
            else:
                rows.append(layouts.ActorState(a.id, tf))
        return layouts.episode_payload(self.frame, self.elapsed, self.episode_id, time.time(), self.dt, rows)


def _flat_transform(t: list) -> list:
    """[[x, y, z], [pitch, yaw, roll]] -> [x, y, z, pitch, yaw, roll] floats."""
    try:
        (x, y, z), (p, yw, r) = t[0], t[1]
        return [float(x), float(y), float(z), float(p), float(yw), float(r)]
    except (TypeError, ValueError, IndexError):
        raise WorldError(f"malformed transform {t!r}") from None
