"""The driving score, leaderboard style: pure functions of a trajectory, no simulator.

Per route (as the CARLA leaderboard defines it): route completion R in [0, 100] %, the
share of the route driven before the route ended; an infraction penalty P, the product of
one coefficient per infraction event (`PENALTIES`); the driving score DS = R * P. Over a
route set, each of the three is the mean over routes, and infractions are also counted per
km driven. Some infractions end the route at once (collision, off-road for `off_road_end_s`,
route deviation, agent blocked, route timeout): what is left of it counts as not completed.

`Referee` consumes one `Sample` per simulation tick and says when the route ends; `judge`
runs it over a whole trajectory (what the tests do), `aggregate` joins routes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: Coefficient per infraction event. Collisions as the CARLA leaderboard (vehicle 0.60, static
#: "layout" 0.65); off-road 0.70 and lane departure 0.80 are ours (the leaderboard cuts the route
#: completion for driving outside the route's lanes instead); the route-ending ones cost nothing
#: beyond the completion they cut, as there.
PENALTIES: dict[str, float] = {
    "collision_vehicle": 0.60,
    "collision_static": 0.65,
    "off_road": 0.70,
    "lane_departure": 0.80,
    "route_deviation": 1.0,
    "agent_blocked": 1.0,
    "route_timeout": 1.0,
    # A contact while the simulator's navigator drives a junction (not the lane keeper): the embedded
    # traffic's junction reservation lets two cars enter together (docs/lanekeeping.md). Counted, not
    # charged, and the route goes on; Rules(blame_navigator=True) charges it as a collision.
    "navigator_collision": 1.0,
}
INFRACTIONS = tuple(PENALTIES)
#: Kinds that are the agent's (the per-km total counts these).
AGENT_INFRACTIONS = tuple(k for k in INFRACTIONS if k != "navigator_collision")
#: How a route can end besides "completed" (an infraction of the same name, or a stop from outside).
ENDS = ("completed", "collision", "off_road", "route_deviation", "agent_blocked", "route_timeout", "interrupted")


@dataclass(frozen=True)
class Sample:
    """One tick of a driven route, from ground truth (scoring only, never control).

    `progress_m` is how far along the route the car is, `route_dist_m` its distance from the
    route's centre line; `collision` names what the car touches this tick (vehicle | static).
    """

    t: float
    progress_m: float
    route_dist_m: float = 0.0
    speed: float = 0.0
    lateral_offset: float | None = 0.0
    lane_width: float | None = 3.5
    in_junction: bool = False
    off_road: bool = False
    collision: str | None = None
    navigator: bool = False  # the simulator's navigator drove this tick (junctions), not the lane keeper


@dataclass(frozen=True)
class Rules:
    """When a route ends and what counts; distances [m], times [s], speeds [m/s]."""

    deviation_m: float = 20.0  # farther than this from the route: route deviation
    blocked_s: float = 30.0  # slower than blocked_speed for this long: agent blocked
    blocked_speed: float = 0.5
    off_road_end_s: float = 1.0  # off the road this long: off-road, the route ends
    timeout_base_s: float = 30.0  # time allowed: base + length / timeout_speed
    timeout_speed: float = 3.0
    complete_within_m: float = 3.0
    end_on_collision: bool = True  # the embedded world has no crash physics: a contact ends the route
    blame_navigator: bool = False  # charge collisions in the navigator's junctions to the agent
    vehicle_width_m: float = 1.95  # lane departure: a side of the car (this wide) ...
    intrusion_m: float = 0.30  # ... this far into the next lane (past the lane's edge line)

    def time_limit_s(self, length_m: float) -> float:
        return self.timeout_base_s + length_m / self.timeout_speed


@dataclass(frozen=True)
class Infraction:
    kind: str
    t: float
    progress_m: float
    detail: str = ""


@dataclass(frozen=True)
class Verdict:
    """A route's outcome: completion [%], penalty, driving score [%], infraction events, how it ended."""

    length_m: float
    driven_m: float
    completion: float
    penalty: float
    driving_score: float
    end: str
    duration_s: float
    infractions: tuple[Infraction, ...] = ()

    def counts(self) -> dict[str, int]:
        return count_infractions(self.infractions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "length_m": self.length_m,
            "driven_m": self.driven_m,
            "route_completion": self.completion,
            "infraction_penalty": self.penalty,
            "driving_score": self.driving_score,
            "end": self.end,
            "duration_s": self.duration_s,
            "infractions": self.counts(),
            "events": [
                {"kind": i.kind, "t": i.t, "progress_m": i.progress_m, "detail": i.detail} for i in self.infractions
            ],
        }


def count_infractions(events: Iterable[Infraction]) -> dict[str, int]:
    """Events per kind, every kind present (zeros included)."""
    out = dict.fromkeys(INFRACTIONS, 0)
    for e in events:
        out[e.kind] += 1
    return out


def infraction_penalty(events: Iterable[Infraction], penalties: dict[str, float] | None = None) -> float:
    """The product of one coefficient per event (1.0 without infractions)."""
    table = PENALTIES if penalties is None else penalties
    p = 1.0
    for e in events:
        p *= table[e.kind]
    return p


def driving_score(completion: float, penalty: float) -> float:
    """DS = route completion [%] x infraction penalty, as the leaderboard."""
    return completion * penalty


@dataclass
class Referee:
    """Watches a route tick by tick: infraction events, and the reason the route ends (None: go on)."""

    length_m: float
    rules: Rules = field(default_factory=Rules)
    events: list[Infraction] = field(default_factory=list)
    progress_m: float = 0.0
    t: float = 0.0
    _out_of_lane: bool = False
    _touching: bool = False
    _off_road_s: float = 0.0
    _slow_s: float = 0.0
    _last_t: float | None = None

    def _add(self, kind: str, s: Sample, detail: str = "") -> None:
        self.events.append(Infraction(kind, s.t, s.progress_m, detail))

    def update(self, s: Sample) -> str | None:
        """Add one tick; return why the route ends now, or None."""
        r = self.rules
        dt = 0.0 if self._last_t is None else max(s.t - self._last_t, 0.0)
        self._last_t = s.t
        self.t = s.t
        self.progress_m = max(self.progress_m, min(s.progress_m, self.length_m))
        # Collisions: one event per contact (rising edge), named by what was hit.
        charged = s.collision is not None and (not s.navigator or r.blame_navigator)
        if s.collision is not None and not self._touching:
            where = "in a junction" if s.in_junction else "on a road"
            detail = f"{s.collision}, {where}, {'navigator' if s.navigator else 'lane keeper'} driving"
            self._add(f"collision_{s.collision}" if charged else "navigator_collision", s, detail)
        self._touching = s.collision is not None
        if charged and r.end_on_collision:
            return "collision"
        # Lane departures: a side of the car `intrusion_m` past its lane's edge line (into the next
        # lane or onto the shoulder), outside junctions, once per excursion.
        if not s.in_junction and s.lateral_offset is not None and s.lane_width is not None:
            out = abs(s.lateral_offset) + r.vehicle_width_m / 2.0 > s.lane_width / 2.0 + r.intrusion_m
            if out and not self._out_of_lane:
                self._add("lane_departure", s, f"{s.lateral_offset:+.2f} m")
            self._out_of_lane = out
        self._off_road_s = self._off_road_s + dt if s.off_road else 0.0
        if s.off_road and self._off_road_s >= r.off_road_end_s - 1e-9:
            self._add("off_road", s)
            return "off_road"
        if s.route_dist_m > r.deviation_m:
            self._add("route_deviation", s, f"{s.route_dist_m:.1f} m from the route")
            return "route_deviation"
        if self.progress_m >= self.length_m - r.complete_within_m:
            return "completed"
        self._slow_s = self._slow_s + dt if s.speed < r.blocked_speed else 0.0
        if self._slow_s >= r.blocked_s - 1e-9:
            self._add("agent_blocked", s)
            return "agent_blocked"
        if s.t >= r.time_limit_s(self.length_m):
            self._add("route_timeout", s)
            return "route_timeout"
        return None

    def verdict(self, end: str, penalties: dict[str, float] | None = None) -> Verdict:
        """The route's outcome so far, ended by `end`."""
        done = end == "completed"
        completion = 100.0 if done else 100.0 * self.progress_m / self.length_m if self.length_m > 0 else 0.0
        penalty = infraction_penalty(self.events, penalties)
        driven = self.length_m if done else self.progress_m
        return Verdict(
            self.length_m, driven, completion, penalty, driving_score(completion, penalty), end, self.t,
            tuple(self.events),
        )  # fmt: skip


def judge(samples: Iterable[Sample], length_m: float, rules: Rules | None = None) -> Verdict:
    """The verdict of a whole trajectory; one that stops before an end is 'interrupted'."""
    ref = Referee(length_m, rules or Rules())
    for s in samples:
        end = ref.update(s)
        if end is not None:
            return ref.verdict(end)
    return ref.verdict("interrupted")


def aggregate(verdicts: list[Verdict]) -> dict[str, Any]:
    """A route set's scores: means over routes (as the leaderboard), infractions per km driven."""
    n = len(verdicts)
    km = sum(v.driven_m for v in verdicts) / 1000.0
    counts = count_infractions(e for v in verdicts for e in v.infractions)
    mean = (lambda xs: sum(xs) / n) if n else (lambda xs: math.nan)
    return {
        "routes": n,
        "driving_score": mean([v.driving_score for v in verdicts]),
        "route_completion": mean([v.completion for v in verdicts]),
        "infraction_penalty": mean([v.penalty for v in verdicts]),
        "km": km,
        "infractions": counts,
        "infractions_per_km": {k: (c / km if km > 0 else math.nan) for k, c in counts.items()},
        "all_infractions_per_km": sum(counts[k] for k in AGENT_INFRACTIONS) / km if km > 0 else math.nan,
        "ends": {e: sum(v.end == e for v in verdicts) for e in ENDS if any(v.end == e for v in verdicts)},
    }


__all__ = [
    "AGENT_INFRACTIONS",
    "ENDS",
    "INFRACTIONS",
    "PENALTIES",
    "Infraction",
    "Referee",
    "Rules",
    "Sample",
    "Verdict",
    "aggregate",
    "count_infractions",
    "driving_score",
    "infraction_penalty",
    "judge",
]
