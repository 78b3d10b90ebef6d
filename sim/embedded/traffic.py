"""Vehicles on the lane graph: NPCs follow lanes exactly; the ego is a kinematic bicycle.

Speeds follow the intelligent driver model towards the car ahead on the same path, slow
down for curves, and queue for a junction that another direction holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim import tags
from sim.embedded.geometry import wrap_scalar
from sim.embedded.props import Boxes
from sim.embedded.roadnet import Lane, RoadNetwork
from sim.types import Control
from sim.vehicle import MAX_STEER_RAD, WHEELBASE_M, pure_pursuit_steer

A_MAX, B_COMF, A_LAT = 2.0, 3.0, 2.2
CAR_COLORS = [
    (200, 30, 30),
    (30, 60, 160),
    (230, 230, 230),
    (25, 25, 25),
    (130, 130, 135),
    (200, 170, 30),
    (40, 120, 60),
    (150, 40, 120),
    (210, 110, 30),
]


@dataclass
class Vehicle:
    id: int
    lane: int
    s: float
    v: float
    v0: float
    size: tuple[float, float, float]
    color: tuple[int, int, int]
    tag: int
    route: list[int] = field(default_factory=list)  # upcoming lanes after `lane`
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0


def idm(v: float, v0: float, gap: float, dv: float) -> float:
    """Intelligent driver model acceleration [m/s^2]; dv = own speed minus leader speed."""
    s_star = 2.0 + v * 1.2 + v * dv / (2 * math.sqrt(A_MAX * B_COMF))
    free = 1 - (v / max(v0, 0.1)) ** 4
    return max(A_MAX * (free - (max(s_star, 0) / max(gap, 0.1)) ** 2), -9.0)


class Traffic:
    """All vehicles of an episode. Index 0 is the ego."""

    def __init__(self, net: RoadNetwork, rng: np.random.Generator, first_come: bool = True):
        self.net = net
        self.rng = rng
        # first_come: also yield to a car from another lane that reaches the junction first,
        # and do not enter without room after it. A hold alone is taken only on entering, too
        # late: two cars from different lanes that reach the stop lines together both commit
        # (on every map; procedural towns crashed into the ego inside junctions without it).
        # False is the old rule, kept for A/B measurements (benchmarks/traffic_safety.py).
        self.first_come = first_come
        self._approaching: dict | None = None
        self.vehicles: list[Vehicle] = []
        self.holders: dict[int, set[int]] = {}  # junction -> vehicles inside, from one lane
        self._entry: dict[int, int] = {}  # vehicle -> lane it entered its junction from

    def lane(self, i: int) -> Lane:
        return self.net.lanes[i]

    def extend_route(self, v: Vehicle, n: int = 3) -> None:
        last = v.route[-1] if v.route else v.lane
        while len(v.route) < n:
            succ = self.lane(last).successors
            last = succ[int(self.rng.integers(len(succ)))] if len(succ) > 1 else succ[0]
            v.route.append(last)

    def add(self, lane: int, s: float, v0: float, truck: bool = False) -> Vehicle:
        color = CAR_COLORS[int(self.rng.integers(len(CAR_COLORS)))]
        size, tag = ((7.5, 2.5, 3.0), tags.TRUCK) if truck else ((4.5, 1.9, 1.5), tags.CAR)
        veh = Vehicle(len(self.vehicles), lane, s, v0 * 0.5, v0, size, color, tag)
        self.extend_route(veh)
        veh.x, veh.y, veh.yaw = self.lane(lane).path.pose(s)
        self.vehicles.append(veh)
        return veh

    # -- who is ahead -----------------------------------------------------------------------
    def leader_gap(self, me: Vehicle, horizon: float = 60.0) -> tuple[float, float]:
        """(gap to the car or stop line ahead on my path [m], its speed)."""
        best_gap, best_v = math.inf, 0.0
        path = [me.lane] + me.route
        on_path = set(path)
        others = [o for o in self.vehicles if o.lane in on_path and o is not me]  # in vehicle order
        offset = -me.s
        for depth, lane_id in enumerate(path):
            for o in others:
                if o.lane != lane_id:
                    continue
                d = offset + o.s
                if depth == 0 and o.s <= me.s:
                    continue
                gap = d - (me.size[0] + o.size[0]) / 2
                if gap < best_gap:
                    best_gap, best_v = gap, o.v
            lane = self.lane(lane_id)
            if best_gap < math.inf:
                break
            # Stop before a junction another direction holds.
            nxt = path[depth + 1] if depth + 1 < len(path) else None
            if nxt is not None and lane.road is not None and self.lane(nxt).road is None:
                node = self.lane(nxt).node
                holders = self.holders.get(node, set())
                blocked = bool(holders) and any(self._from_lane(h) != lane_id for h in holders if h != me.id)
                if not blocked and self.first_come:
                    blocked = self._someone_first(me, node, lane_id, offset + lane.path.length)
                if not blocked and self.first_come and depth + 2 < len(path):
                    blocked = self._no_room_after(me, path[depth + 2], offset + lane.path.length)
                if blocked:
                    gap = offset + lane.path.length - me.size[0] / 2 - 0.5
                    if gap < best_gap:
                        best_gap, best_v = gap, 0.0
                        break
            offset += lane.path.length
            if offset > horizon:
                break
        return best_gap, best_v

    def _someone_first(self, me: Vehicle, node: int | None, lane_id: int, my_dist: float) -> bool:
        """Whether a car approaching `node` from another lane arrives before me (ties: lower id)."""
        if self._approaching is None:  # who is about to enter which junction: once per tick
            self._approaching = {}
            for o in self.vehicles:
                if not o.route:
                    continue
                lane, nxt = self.lane(o.lane), self.lane(o.route[0])
                if lane.road is None or nxt.road is not None:
                    continue
                d = lane.path.length - o.s
                if d < o.v * o.v / (2 * B_COMF) + 4.0:
                    self._approaching.setdefault(nxt.node, []).append((d / max(o.v, 0.5), o.id, o.lane))
        mine = (my_dist / max(me.v, 0.5), me.id)
        return any((t, i) < mine for t, i, lane in self._approaching.get(node, ()) if lane != lane_id and i != me.id)

    def _no_room_after(self, me: Vehicle, exit_lane: int, my_dist: float) -> bool:
        """Whether the lane after the junction has no room for me (do not block the junction box).

        Room is needed for me and for every car inside a junction that heads into the same lane;
        cars on that lane take it from its start, and a lane that ends at the next junction has
        no more than its length (CARLA's towns link junctions by roads of about 10 m). Without
        this rule, cars that wait inside one junction for the next can hold both, and a ring of
        such junctions locks up for good (Town10HD.xodr did within 4000 steps).
        A car too close to its stop line to brake (at 6 m/s^2) is committed and goes on.
        """
        if my_dist < me.v * me.v / 12.0 + 0.5:
            return False
        need = me.size[0] + 1.5
        lane = self.lane(exit_lane)
        ends_at_junction = any(self.lane(n).road is None for n in lane.successors)
        # (a lane too short for one car alone takes one at a time, else nobody could ever enter)
        free = max(lane.path.length, need) if ends_at_junction and not lane.path.closed else math.inf
        for o in self.vehicles:
            if o is me:
                continue
            if o.lane == exit_lane:
                free = min(free, o.s - o.size[0] / 2)
            elif o.route and o.route[0] == exit_lane and self.lane(o.lane).road is None:
                need += o.size[0] + 1.5
        return free < need

    def _from_lane(self, vid: int) -> int:
        return self._entry.get(vid, -1)

    def curve_speed(self, me: Vehicle) -> float:
        lane = self.lane(me.lane)
        k = lane.path.curvature_ahead(me.s, 12.0)
        if lane.path.length - me.s < 15 and me.route:
            k = max(k, self.lane(me.route[0]).path.curvature_ahead(0.0, 12.0))
        return math.sqrt(A_LAT / max(k, 1e-4))

    def target_accel(self, me: Vehicle) -> float:
        gap, v_lead = self.leader_gap(me)
        v0 = min(me.v0, self.curve_speed(me))
        if gap == math.inf:
            gap = 1e3
        return idm(me.v, v0, gap, me.v - v_lead)

    # -- junction holds -----------------------------------------------------------------------
    def enter_lane(self, me: Vehicle, new_lane: int, from_lane: int) -> None:
        old = self.lane(me.lane)
        if old.road is None and old.node is not None:
            self.holders.get(old.node, set()).discard(me.id)
        me.lane = new_lane
        lane = self.lane(new_lane)
        if lane.road is None and lane.node is not None:
            self.holders.setdefault(lane.node, set()).add(me.id)
            self._entry[me.id] = from_lane

    # -- motion -------------------------------------------------------------------------------
    def step_npcs(self, dt: float) -> None:
        self._approaching = None  # the ego has moved
        accels = [self.target_accel(v) for v in self.vehicles[1:]]
        self._approaching = None
        for veh, a in zip(self.vehicles[1:], accels, strict=True):
            veh.v = max(0.0, veh.v + a * dt)
            veh.s += veh.v * dt
            while veh.s > self.lane(veh.lane).path.length:
                length = self.lane(veh.lane).path.length
                if self.lane(veh.lane).path.closed:
                    veh.s -= length
                    continue
                veh.s -= length
                prev = veh.lane
                self.enter_lane(veh, veh.route.pop(0), prev)
                self.extend_route(veh)
            veh.x, veh.y, veh.yaw = self.lane(veh.lane).path.pose(veh.s)

    def boxes(self, skip_ego: bool = True) -> Boxes:
        vs = self.vehicles[1:] if skip_ego else self.vehicles
        rows = []
        for v in vs:  # plain floats: per-vehicle numpy arrays cost more than the arithmetic
            l_, w_, h_ = v.size
            fx, fy = math.cos(v.yaw), math.sin(v.yaw)
            if v.tag == tags.TRUCK:
                k = l_ / 2 - 1.1
                rows.append(((v.x - fx * 1.2, v.y - fy * 1.2), v.yaw, (l_ - 2.4, w_, h_ - 0.4), 0.4, v.color, v.tag))
                rows.append(((v.x + fx * k, v.y + fy * k), v.yaw, (2.2, w_, 2.2), 0.4, (60, 60, 70), v.tag))
            else:
                rows.append(((v.x, v.y), v.yaw, (l_, w_, 0.85), 0.3, v.color, v.tag))
                dark = tuple(int(c * 0.55) for c in v.color)
                rows.append(((v.x - fx * 0.3, v.y - fy * 0.3), v.yaw, (2.3, w_ * 0.9, 0.55), 1.15, dark, v.tag))
        return Boxes.from_rows(rows)


def bicycle_step(x: float, y: float, yaw: float, v: float, c: Control, dt: float):
    """Kinematic bicycle: CARLA-style control (steer + is right) -> next (x, y, yaw, v)."""
    c = c.clipped()
    acc = 3.5 * c.throttle - 8.0 * c.brake - 0.02 * v - (6.0 if c.hand_brake else 0.0)
    if c.reverse:
        acc = -acc
    v = max(0.0, v + acc * dt) if not c.reverse else min(0.0, v + acc * dt)
    delta = -c.steer * MAX_STEER_RAD
    yaw = wrap_scalar(yaw + v / WHEELBASE_M * math.tan(delta) * dt)
    return x + v * math.cos(yaw) * dt, y + v * math.sin(yaw) * dt, yaw, v


def pure_pursuit(x: float, y: float, yaw: float, tx: float, ty: float) -> float:
    """CARLA steer (-1..1, + right) that arcs from the pose through the target point."""
    dx, dy = tx - x, ty - y
    return pure_pursuit_steer(math.atan2(dy, dx) - yaw, math.hypot(dx, dy))


def obb_overlap(a: tuple, b: tuple) -> bool:
    """Separating-axis test of two ground rectangles (x, y, yaw, length, width)."""
    # Centres farther apart than the two circumradii (plus 1 cm) cannot overlap: skip the axes.
    reach = (math.hypot(a[3], a[4]) + math.hypot(b[3], b[4])) / 2 + 0.01
    if (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 > reach * reach:
        return False

    def axes(r):
        c, s = math.cos(r[2]), math.sin(r[2])
        return [(c, s), (-s, c)]

    def corners(r):
        c, s = math.cos(r[2]), math.sin(r[2])
        hl, hw = r[3] / 2, r[4] / 2
        return [
            (r[0] + c * px - s * py, r[1] + s * px + c * py) for px, py in ((hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw))
        ]

    ca, cb = corners(a), corners(b)
    for ax in axes(a) + axes(b):
        pa = [p[0] * ax[0] + p[1] * ax[1] for p in ca]
        pb = [p[0] * ax[0] + p[1] * ax[1] for p in cb]
        if max(pa) < min(pb) or max(pb) < min(pa):
            return False
    return True
