"""Traffic lights of the served world: one `traffic.traffic_light` actor per light the town stands.

The embedded towns put a traffic light at the mouths of their signalled junctions (scenery
boxes tagged TrafficLight, sim/embedded/props.py); each becomes a light that governs the road
lanes entering the junction there. The lights of one junction form a group that gives green
to one mouth at a time, as CARLA's traffic light groups do: green, yellow, then all red for
that light's red time, then the next mouth. The lights live only here, in the server: the
embedded backend's world and frames do not change (the props keep their dark look).

A vehicle on a governed lane within `TRIGGER_M` of the stop line "is at" that light: the
episode state tells the client so (`has_traffic_light`, the light's id and state), which is
what `Vehicle.get_traffic_light()` reads and what the client's Traffic Manager stops for. The
mouths with a stop sign instead (unsignalled junctions) send Red without a light, which the
Traffic Manager negotiates as a stop sign; everywhere else a vehicle's light state is Green.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim import tags
from sim.embedded.roadnet import STOP_BAND
from sim.embedded.town import Town

RED, YELLOW, GREEN, OFF, UNKNOWN = 0, 1, 2, 3, 4
"""rpc/TrafficLightState.h."""
GREEN_S, YELLOW_S, RED_S = 10.0, 3.0, 2.0
"""Default phase times [s]; red is the all-red clearance after a light's yellow."""
TRIGGER_M = 10.0
"""How far before the stop line a vehicle counts as at the light [m] (CARLA's trigger volume)."""
LANE_HALF_WIDTH_M = 1.75
HEADING_TOL_RAD = math.radians(45.0)
STOP_SIGN = -1


def _angle(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _mouth_lanes(net, x: float, y: float, yaw: float) -> list:
    """The road lanes entering a junction at the mouth where a light or sign stands at (x, y, yaw).

    props.py stands them STOP_BAND + 0.5 m back from the road end, right of the incoming lanes,
    facing along them.
    """
    d = np.array([math.cos(yaw), math.sin(yaw)])
    right = np.array([d[1], -d[0]])
    out = []
    for ln in net.lanes:
        if ln.road is None or ln.node is None:
            continue
        rel = np.array([x, y]) - ln.path.points[-1]
        heading = ln.path.pose(ln.path.length)[2]
        if (
            abs(_angle(heading - yaw)) < math.radians(20)
            and -STOP_BAND - 4.0 < float(rel @ d) < -STOP_BAND + 1.0
            and 0.0 < float(rel @ right) < 15.0
        ):
            out.append(ln)
    return out


@dataclass
class Light:
    """One traffic light: where it stands (our frame), its group and its phase bookkeeping."""

    id: int
    x: float
    y: float
    yaw: float
    size: tuple[float, float, float]  # length, width, height of the head box [m]
    z: float  # bottom of the head box [m]
    group: int
    pole_index: int
    state: int = RED
    elapsed: float = 0.0  # seconds in the current state
    times: dict = field(default_factory=lambda: {GREEN: GREEN_S, YELLOW: YELLOW_S, RED: RED_S})

    @property
    def sign_id(self) -> str:
        return str(self.id)


@dataclass
class Group:
    """The lights of one junction, green in turn."""

    lights: list[Light]
    current: int = 0  # index in `lights` of the light whose turn it is
    phase: int = GREEN  # GREEN, YELLOW or RED (the clearance) of the current light
    in_phase: float = 0.0
    frozen: bool = False

    def reset(self) -> None:
        self.current, self.phase, self.in_phase = 0, GREEN, 0.0
        self._show()

    def _show(self) -> None:
        for k, light in enumerate(self.lights):
            state = self.phase if k == self.current and self.phase != RED else RED
            if state != light.state:
                light.state, light.elapsed = state, 0.0

    def step(self, dt: float) -> None:
        if self.frozen:
            return
        for light in self.lights:
            light.elapsed += dt
        self.in_phase += dt
        while self.in_phase >= self.lights[self.current].times[self.phase]:
            self.in_phase -= self.lights[self.current].times[self.phase]
            if self.phase == GREEN:
                self.phase = YELLOW
            elif self.phase == YELLOW:
                self.phase = RED
            else:
                self.current, self.phase = (self.current + 1) % len(self.lights), GREEN
            self._show()


class TrafficLights:
    """Every light of a town, their groups, and which light each lane approach belongs to."""

    def __init__(self, town: Town, first_id: int) -> None:
        self.lights: dict[int, Light] = {}
        self.groups: list[Group] = []
        net = town.network
        boxes = town.scenery.boxes
        by_node: dict[int, list[Light]] = {}
        zones: list[tuple[np.ndarray, np.ndarray, int]] = []
        next_id = first_id
        for i in np.nonzero((boxes.tag == tags.TRAFFIC_LIGHT) | (boxes.tag == tags.TRAFFIC_SIGN))[0]:
            lanes = _mouth_lanes(net, float(boxes.xy[i, 0]), float(boxes.xy[i, 1]), float(boxes.yaw[i]))
            if not lanes:
                continue  # a sign along a road, not at a junction mouth
            key = STOP_SIGN
            if boxes.tag[i] == tags.TRAFFIC_LIGHT:
                group = by_node.setdefault(lanes[0].node, [])
                light = Light(
                    next_id,
                    float(boxes.xy[i, 0]),
                    float(boxes.xy[i, 1]),
                    float(boxes.yaw[i]),
                    tuple(float(v) for v in boxes.size[i]),
                    float(boxes.z0[i]),
                    group=lanes[0].node,
                    pole_index=len(group),
                )
                next_id += 1
                group.append(light)
                self.lights[light.id] = light
                key = light.id
            for ln in lanes:
                s = ln.path.s
                keep = s >= ln.path.length - (STOP_BAND - 0.4) - TRIGGER_M
                headings = np.array([ln.path.pose(float(v))[2] for v in s[keep]])
                zones.append((ln.path.points[keep], headings, key))
        self.groups = [Group(lights) for _, lights in sorted(by_node.items())]
        for g in self.groups:
            g.reset()
        self._group_of = {light.id: g for g in self.groups for light in g.lights}
        self._pts = np.vstack([z[0] for z in zones]) if zones else np.zeros((0, 2))
        self._heading = np.concatenate([z[1] for z in zones]) if zones else np.zeros(0)
        self._key = np.concatenate([np.full(len(z[0]), z[2]) for z in zones]) if zones else np.zeros(0, int)

    @classmethod
    def none(cls) -> TrafficLights:
        """No lights and no stop signs (`--no-traffic-lights`): every vehicle's light state is Green."""
        empty = cls.__new__(cls)
        empty.lights, empty.groups, empty._group_of = {}, [], {}
        empty._pts, empty._heading, empty._key = np.zeros((0, 2)), np.zeros(0), np.zeros(0, int)
        return empty

    def __len__(self) -> int:
        return len(self.lights)

    def step(self, dt: float) -> None:
        for g in self.groups:
            g.step(dt)

    def approach(self, x: float, y: float, yaw: float) -> int:
        """What a vehicle at (x, y, yaw) (our frame) waits at: a light's id, STOP_SIGN, or 0 (nothing)."""
        if not len(self._pts):
            return 0
        d2 = (self._pts[:, 0] - x) ** 2 + (self._pts[:, 1] - y) ** 2
        k = int(np.argmin(d2))
        if d2[k] > LANE_HALF_WIDTH_M**2:
            return 0
        if abs(_angle(self._heading[k] - yaw)) > HEADING_TOL_RAD:
            return 0
        return int(self._key[k])

    def vehicle_signal(self, x: float, y: float, yaw: float) -> tuple[int, bool, int]:
        """(traffic light state, has a traffic light, its id) of a vehicle's row in the episode state.

        As CARLA's vehicle controller: Green when no light applies, the light's state at a light,
        Red without a light at a stop sign (the Traffic Manager's stop-sign negotiation).
        """
        key = self.approach(x, y, yaw)
        if key > 0:
            return self.lights[key].state, True, key
        return (RED if key == STOP_SIGN else GREEN), False, 0

    def group(self, light_id: int) -> Group:
        return self._group_of[light_id]

    def set_state(self, light_id: int, state: int) -> None:
        """CARLA's set_state: the light shows `state` until its group's next change."""
        if state not in (RED, YELLOW, GREEN, OFF, UNKNOWN):
            raise ValueError(f"traffic light state {state} (expected 0..4)")
        light = self.lights[light_id]
        if light.state != state:
            light.state, light.elapsed = state, 0.0

    def set_time(self, light_id: int, state: int, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"traffic light time must be > 0 s, got {seconds}")
        self.lights[light_id].times[state] = float(seconds)

    def freeze(self, light_id: int, frozen: bool) -> None:
        """Freezing a light stops its group's clock (as CARLA's group timer)."""
        self._group_of[light_id].frozen = bool(frozen)

    def freeze_all(self, frozen: bool) -> None:
        for g in self.groups:
            g.frozen = bool(frozen)

    def reset_group(self, light_id: int) -> None:
        self._group_of[light_id].reset()

    def reset_all(self) -> None:
        for g in self.groups:
            g.reset()

    def wire_state(self, light: Light) -> tuple:
        """The union's traffic light member (see layouts.TRAFFIC_LIGHT_UNION)."""
        return (
            light.sign_id,
            light.times[GREEN],
            light.times[YELLOW],
            light.times[RED],
            light.elapsed,
            light.pole_index,
            self._group_of[light.id].frozen,
            light.state,
        )
