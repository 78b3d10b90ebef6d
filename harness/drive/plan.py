"""A route on the lane graph: start, waypoints and end (or a length) -> the lanes to take and
the route's centre line; `RouteTracker` follows a car along it (progress, distance off it).

Pure geometry over `RoadNetwork` lanes (`successors`, `path`), so the embedded simulator's
procedural towns and OpenDRIVE maps plan the same way.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.drive.route import Route, RouteError

SNAP_M = 15.0  # a waypoint farther than this from every lane is refused


@dataclass(frozen=True)
class Segment:
    lane: int
    s0: float
    s1: float


@dataclass(frozen=True)
class RoutePlan:
    """The lanes a route takes, in order (a closed lane can appear twice), and its centre line."""

    segments: tuple[Segment, ...]
    points: np.ndarray  # (N, 2) centre line, about 1 m apart
    s: np.ndarray  # (N,) arc length along it

    @property
    def length_m(self) -> float:
        return float(self.s[-1])

    @property
    def lanes(self) -> list[int]:
        return [g.lane for g in self.segments]


def _heading_change(path: Any) -> float:
    _, _, h0 = path.pose(0.0)
    _, _, h1 = path.pose(path.length)
    return abs(math.atan2(math.sin(h1 - h0), math.cos(h1 - h0)))


def _snap(net: Any, where: str, point: tuple[float, float]) -> tuple[int, float]:
    """The road lane (not a junction connector) nearest to a point, and the arc length there."""
    best: tuple[float, int, float] | None = None
    for ln in net.lanes:
        if ln.road is None:
            continue
        pts = ln.path.points
        d2 = ((pts - np.asarray(point)) ** 2).sum(1)
        if float(d2.min()) > (SNAP_M + 5.0) ** 2:
            continue
        s, lat, _ = ln.path.project(point[0], point[1])
        if best is None or abs(lat) < best[0]:
            best = (abs(lat), ln.id, s)
    if best is None or best[0] > SNAP_M:
        raise RouteError(f"{where} ({point[0]:.1f}, {point[1]:.1f}) is more than {SNAP_M:.0f} m from every lane")
    return best[1], best[2]


def _shortest(net: Any, lane: int, s: float, goal: int, goal_s: float, where: str) -> list[Segment]:
    """Segments from (lane, s) to (goal, goal_s) along successors, shortest by length (Dijkstra)."""
    lanes = net.lanes
    if lane == goal and goal_s >= s:
        return [Segment(lane, s, goal_s)]
    start_cost = lanes[lane].path.length - s
    heap: list[tuple[float, int, tuple[int, ...]]] = [(start_cost, lane, ())]
    done: set[int] = set()
    while heap:
        cost, cur, via = heapq.heappop(heap)
        for nxt in sorted(lanes[cur].successors):
            if nxt == goal:
                chain = (*via, nxt)
                segs = [Segment(lane, s, lanes[lane].path.length)]
                segs += [Segment(i, 0.0, lanes[i].path.length) for i in chain[:-1]]
                return segs + [Segment(goal, 0.0, goal_s)]
            if nxt in done or nxt == lane:
                continue
            done.add(nxt)
            heapq.heappush(heap, (cost + lanes[nxt].path.length, nxt, (*via, nxt)))
    raise RouteError(f"{where}: no way along the lanes from lane {lane} to lane {goal} (move the point)")


def _extend(net: Any, lane: int, s: float, metres: float) -> list[Segment]:
    """`metres` onward from (lane, s), taking the straightest successor at every lane end."""
    segs: list[Segment] = []
    while metres > 1e-6:
        path = net.lanes[lane].path
        take = min(path.length - s, metres)
        segs.append(Segment(lane, s, s + take))
        metres -= take
        if metres <= 1e-6:
            break
        succ = net.lanes[lane].successors
        if not succ:
            raise RouteError(
                f"the route runs into a dead end after {sum(g.s1 - g.s0 for g in segs):.0f} m (shorten length_m)"
            )
        lane = min(sorted(succ), key=lambda i: _heading_change(net.lanes[i].path))
        s = 0.0
    return segs


def _line(net: Any, segments: list[Segment]) -> tuple[np.ndarray, np.ndarray]:
    pts: list[tuple[float, float]] = []
    for g in segments:
        path = net.lanes[g.lane].path
        n = max(int(math.ceil((g.s1 - g.s0) / 1.0)), 1)
        for v in np.linspace(g.s0, g.s1, n + 1):
            x, y, _ = path.pose(float(v))
            if not pts or math.hypot(x - pts[-1][0], y - pts[-1][1]) > 1e-6:
                pts.append((x, y))
    arr = np.asarray(pts, float)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(arr, axis=0), axis=1))])
    return arr, s


def plan_route(net: Any, route: Route) -> RoutePlan:
    """The lanes from the route's start through its waypoints to its end (or for `length_m`)."""
    spawns = net.spawn_points
    where = route.source or route.name
    if not 0 <= route.start < len(spawns):
        raise RouteError(
            f"{where}: key 'start' = {route.start} but the map has {len(spawns)} spawn points (0..{len(spawns) - 1})"
        )
    lane, s = spawns[route.start]
    segs: list[Segment] = []
    targets = [(f"{where}: waypoints[{i}]", p) for i, p in enumerate(route.waypoints)]
    if route.end is not None:
        targets.append((f"{where}: end", route.end))
    for label, point in targets:
        goal, goal_s = _snap(net, label, point)
        part = _shortest(net, lane, s, goal, goal_s, label)
        segs += part
        lane, s = goal, goal_s
    if route.length_m is not None:
        done = sum(g.s1 - g.s0 for g in segs)
        if done > route.length_m:
            raise RouteError(
                f"{where}: the waypoints alone make {done:.0f} m, more than length_m = {route.length_m:.0f}"
            )
        segs += _extend(net, lane, s, route.length_m - done)
    merged: list[Segment] = []
    for g in segs:
        if g.s1 - g.s0 <= 1e-6:
            continue
        if merged and merged[-1].lane == g.lane and abs(merged[-1].s1 - g.s0) < 1e-6:
            merged[-1] = Segment(g.lane, merged[-1].s0, g.s1)  # a waypoint in mid-lane: one segment
        else:
            merged.append(g)
    segs = merged
    pts, arc = _line(net, segs)
    return RoutePlan(tuple(segs), pts, arc)


class RouteTracker:
    """Where a car is along a plan: progress [m] and distance from the centre line [m], from its
    position only; searches a window around the last progress, so a route that passes near
    itself is not confused."""

    def __init__(self, plan: RoutePlan, behind_m: float = 10.0, ahead_m: float = 40.0) -> None:
        self.plan = plan
        self.behind_m = behind_m
        self.ahead_m = ahead_m
        self.progress_m = 0.0

    def update(self, x: float, y: float) -> tuple[float, float]:
        pts, s = self.plan.points, self.plan.s
        lo = max(int(np.searchsorted(s, self.progress_m - self.behind_m)) - 1, 0)
        hi = min(int(np.searchsorted(s, self.progress_m + self.ahead_m)) + 1, len(pts) - 1)
        if hi <= lo:
            lo, hi = max(hi - 1, 0), min(lo + 1, len(pts) - 1)
        a, b = pts[lo:hi], pts[lo + 1 : hi + 1]
        d = b - a
        l2 = np.maximum((d**2).sum(1), 1e-12)
        p = np.array([x, y])
        t = np.clip(((p - a) * d).sum(1) / l2, 0.0, 1.0)
        dist2 = (((a + t[:, None] * d) - p) ** 2).sum(1)
        k = int(np.argmin(dist2))
        along = float(s[lo + k] + t[k] * math.sqrt(l2[k]))
        self.progress_m = max(self.progress_m, along)
        return along, float(math.sqrt(dist2[k]))


__all__ = ["RoutePlan", "RouteTracker", "Segment", "plan_route"]
