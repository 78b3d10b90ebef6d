"""Keeps the embedded simulator's ego on a planned route, and names what a collision hit.

The embedded backend's navigator (its autopilot, which takes the junctions) follows the ego's
`route` of upcoming lanes, drawn at random at every lane end; at a junction the backend picks
the connector that fits the car's pose, and all connectors of a lane start at the same point.
`RoutedBackend` wraps the backend and after every tick puts the ego on the plan: the planned
connector when the backend picked a sibling, and the plan's next lanes as its route. It reads
the embedded backend's traffic (`traffic.vehicles[0]`, `enter_lane`), so routes run on the
embedded simulator only. Scoring only: the lane keeper never sees any of it.
"""

from __future__ import annotations

import math
from typing import Any

from harness.drive.plan import RoutePlan, plan_route
from harness.drive.route import Route
from sim.embedded.backend import EGO_SIZE
from sim.embedded.traffic import obb_overlap
from sim.types import Control, Observation


class RoutedBackend:
    """A backend whose ego follows `route`'s plan through junctions (see the module doc)."""

    def __init__(self, backend: Any, route: Route) -> None:
        self._backend = backend
        self.route = route
        self.plan: RoutePlan | None = None
        self._i = 0  # index of the ego's segment in the plan

    @property
    def inner(self) -> Any:
        """The embedded backend itself (an oracle wrapper in between is looked through)."""
        b = self._backend
        while not hasattr(b, "traffic") and hasattr(b, "_backend"):
            b = b._backend
        return b

    def reset(self, scenario: Any, seed: int | None = None) -> Observation:
        obs = self._backend.reset(scenario, seed=seed)
        inner = self.inner
        if not hasattr(inner, "traffic"):
            raise RuntimeError("routes run on the embedded simulator only (use --backend embedded)")
        self.plan = plan_route(inner.town.network, self.route)
        self._i = 0
        self._sync()
        return obs

    def step(self, control: Control | None = None, **kwargs: Any) -> Observation:
        obs = self._backend.step(control, **kwargs)
        self._sync()
        return obs

    def close(self) -> None:
        self._backend.close()

    def _sync(self) -> None:
        """Put the ego on the plan's connector if the backend picked a sibling; set its route to the plan."""
        assert self.plan is not None
        tr = self.inner.traffic
        ego = tr.vehicles[0]
        lanes = self.plan.lanes
        for j in range(self._i, min(self._i + 3, len(lanes))):
            if lanes[j] == ego.lane:
                self._i = j
                break
        else:
            nxt = self._i + 1
            if nxt < len(lanes):
                prev = lanes[self._i]
                planned = lanes[nxt]
                here = tr.lane(ego.lane)
                if here.road is None and tr.lane(planned).road is None and planned in tr.lane(prev).successors:
                    tr.enter_lane(ego, planned, prev)
                    ego.s, _, _ = tr.lane(planned).path.project(ego.x, ego.y, s_hint=0.0)
                    self._i = nxt
                else:
                    return  # off the plan: the route deviation will be scored
            else:
                return
        rest = [ln for ln in lanes[self._i + 1 :]]
        if rest and rest[0] == ego.lane:  # a closed lane driven on round its loop
            rest = rest[1:]
        ego.route = rest[:4]
        tr.extend_route(ego)

    def collision_kind(self) -> str:
        """What the ego touches now: 'vehicle' when it overlaps a car, else 'static' (scenery)."""
        tr = self.inner.traffic
        ego = tr.vehicles[0]
        me = (ego.x, ego.y, ego.yaw, EGO_SIZE[0], EGO_SIZE[1])
        for o in tr.vehicles[1:]:
            if math.hypot(o.x - ego.x, o.y - ego.y) < 12 and obb_overlap(me, (o.x, o.y, o.yaw, o.size[0], o.size[1])):
                return "vehicle"
        return "static"


__all__ = ["RoutedBackend"]
