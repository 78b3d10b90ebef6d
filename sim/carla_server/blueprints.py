"""The blueprint library: the ids and attributes that real CARLA scripts filter and set.

An actor definition goes over the wire as `[uid, id, tags, [attribute definitions]]`, an
attribute definition as `[id, type, value, recommended values, is_modifiable, restrict]`
(rpc/ActorDefinition.h, rpc/ActorAttribute.h). The client checks types and recommended values
itself when a script calls `set_attribute`.
"""

from __future__ import annotations

from dataclasses import dataclass

BOOL, INT, FLOAT, STRING, RGB = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Blueprint:
    uid: int
    id: str
    tags: str
    attributes: tuple  # of attribute definitions (lists)
    extent: tuple = (0.0, 0.0, 0.0)  # half length, half width, half height [m] (vehicles)
    semantic_tag: int = 0

    def wire(self) -> list:
        return [self.uid, self.id, self.tags, [list(a) for a in self.attributes]]


def _attr(
    name: str, kind: int, value: str, recommended: tuple = (), modifiable: bool = True, restrict: bool = False
) -> list:
    return [name, kind, value, list(recommended), modifiable, restrict]


CAR_COLOURS = ("200,30,30", "30,60,160", "230,230,230", "25,25,25", "130,130,135", "200,170,30")

# (id, half extents, wheels, base type): a few of the models CARLA 0.9.16 ships, by their real ids.
_VEHICLES = (
    ("vehicle.lincoln.mkz_2020", (2.45, 1.05, 0.76), 4, "car"),
    ("vehicle.tesla.model3", (2.40, 1.08, 0.74), 4, "car"),
    ("vehicle.audi.a2", (1.85, 0.90, 0.78), 4, "car"),
    ("vehicle.toyota.prius", (2.26, 1.00, 0.76), 4, "car"),
    ("vehicle.mercedes.coupe_2020", (2.34, 1.01, 0.72), 4, "car"),
    ("vehicle.dodge.charger_2020", (2.50, 1.05, 0.77), 4, "car"),
    ("vehicle.nissan.patrol_2021", (2.78, 1.07, 1.02), 4, "car"),
    ("vehicle.carlamotors.carlacola", (2.60, 1.28, 1.28), 4, "truck"),
)
_CAMERA_COMMON = (
    ("image_size_x", INT, "800"),
    ("image_size_y", INT, "600"),
    ("fov", FLOAT, "90.0"),
    ("sensor_tick", FLOAT, "0.0"),
    ("lens_circle_falloff", FLOAT, "5.0"),
    ("lens_circle_multiplier", FLOAT, "0.0"),
    ("lens_k", FLOAT, "-1.0"),
    ("lens_kcube", FLOAT, "0.0"),
    ("lens_x_size", FLOAT, "0.08"),
    ("lens_y_size", FLOAT, "0.08"),
)
CAMERAS = ("sensor.camera.rgb", "sensor.camera.semantic_segmentation", "sensor.camera.depth")
"""Depth comes from sim/depth.py (ground-plane geometry and the label image), not a depth buffer."""
EVENT_SENSORS = ("sensor.other.collision", "sensor.other.lane_invasion")
# (id, half extents, age): pedestrians by CARLA's ids (walker.pedestrian.0001 ... in 0.9.16).
_WALKERS = tuple(
    (f"walker.pedestrian.{k:04d}", (0.19, 0.19, 0.93) if age == "adult" else (0.16, 0.16, 0.62), age)
    for k, age in enumerate(("adult",) * 8 + ("child",) * 2, start=1)
)


def _build() -> tuple[Blueprint, ...]:
    out: list[Blueprint] = []
    uid = 1
    for vid, extent, wheels, base in _VEHICLES:
        attrs = (
            _attr("role_name", STRING, "autopilot", ("autopilot", "scenario", "ego", "hero")),
            _attr("color", RGB, CAR_COLOURS[uid % len(CAR_COLOURS)], CAR_COLOURS),
            _attr("number_of_wheels", INT, str(wheels), modifiable=False),
            _attr("generation", INT, "2", modifiable=False),
            _attr("base_type", STRING, base, modifiable=False),
            _attr("object_type", STRING, "", modifiable=False),
            _attr("special_type", STRING, "", modifiable=False),
            _attr("has_dynamic_doors", BOOL, "false", modifiable=False),
            _attr("has_lights", BOOL, "true", modifiable=False),
            _attr("sticky_control", BOOL, "true", ("true", "false")),
            _attr("terramechanics", BOOL, "false", ("true", "false")),
        )
        tag = 15 if base == "truck" else 14
        out.append(Blueprint(uid, vid, "vehicle," + ",".join(vid.split(".")[1:]), attrs, extent, tag))
        uid += 1
    for cid in CAMERAS:
        attrs = tuple(_attr(n, k, v) for n, k, v in _CAMERA_COMMON) + (_attr("role_name", STRING, "front"),)
        if cid == "sensor.camera.rgb":
            attrs += (
                _attr("gamma", FLOAT, "2.2"),
                _attr("motion_blur_intensity", FLOAT, "0.45"),
                _attr("enable_postprocess_effects", BOOL, "true"),
            )
        out.append(Blueprint(uid, cid, "sensor,camera," + cid.rsplit(".", 1)[1], attrs))
        uid += 1
    for sid in EVENT_SENSORS:
        out.append(Blueprint(uid, sid, "sensor,other," + sid.rsplit(".", 1)[1], (_attr("role_name", STRING, "front"),)))
        uid += 1
    for wid, extent, age in _WALKERS:
        attrs = (
            _attr("role_name", STRING, "pedestrian"),
            _attr("is_invincible", BOOL, "true", ("true", "false")),
            _attr("speed", FLOAT, "1.4", ("0.0", "1.4", "2.5") if age == "adult" else ("0.0", "1.0", "2.0")),
            _attr("age", STRING, age, modifiable=False),
            _attr("gender", STRING, "female" if int(wid[-1]) % 2 else "male", modifiable=False),
            _attr("generation", INT, "2", modifiable=False),
            _attr("can_use_wheelchair", BOOL, "false", modifiable=False),
        )
        out.append(Blueprint(uid, wid, "walker,pedestrian," + wid.rsplit(".", 1)[1], attrs, extent, 12))
        uid += 1
    return tuple(out)


LIBRARY: tuple[Blueprint, ...] = _build()
TRAFFIC_LIGHT = Blueprint(0, "traffic.traffic_light", "traffic,traffic_light", (), (0.2, 0.2, 2.65), 7)
"""The map's traffic lights (sim/carla_server/lights.py): actors, but not in the library to spawn."""
BY_ID: dict[str, Blueprint] = {b.id: b for b in LIBRARY}


def definitions() -> list:
    """What `get_actor_definitions` answers."""
    return [b.wire() for b in LIBRARY]
