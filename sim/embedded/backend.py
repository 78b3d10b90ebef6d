"""The embedded simulator behind the Backend protocol: the default, CPU-only, deterministic."""

from __future__ import annotations

import math

import numpy as np

from scenarios.schema import Scenario
from sim.backend import BackendBase, BackendError
from sim.embedded import real_props
from sim.embedded.geometry import wrap_scalar
from sim.embedded.look import make_look
from sim.embedded.props import Boxes, Scenery
from sim.embedded.real_ground import real_ground
from sim.embedded.render import CameraRenderer
from sim.embedded.town import Town, load_town
from sim.embedded.towns import town_names
from sim.embedded.traffic import Traffic, Vehicle, bicycle_step, obb_overlap, pure_pursuit
from sim.maps.load import load_xodr_town
from sim.maps.opendrive import OpenDriveError
from sim.types import CameraFrame, Control, EgoState, Observation

EGO_SIZE = (4.6, 1.95, 1.5)


class EmbeddedBackend(BackendBase):
    """Procedural towns or OpenDRIVE maps (`scenario.map`), lane-following traffic and a
    raster/box renderer, all in-process.

    Same scenario and seed give the same frames bit for bit. `step(None)` lets the
    built-in autopilot drive (lane following, curve speeds, queueing, turns at junctions).
    """

    def __init__(self) -> None:
        self.scenario: Scenario | None = None
        self.town: Town | None = None
        self._renderers: dict[str, CameraRenderer] = {}
        self._closed = False

    # -- protocol ---------------------------------------------------------------------------
    def reset(self, scenario: Scenario, seed: int | None = None) -> Observation:
        if self._closed:
            raise BackendError("the embedded backend was closed (make a new one with make_backend)")
        try:
            self.town = load_xodr_town(scenario.map) if scenario.map else load_town(scenario.town)
        except OpenDriveError as e:
            raise BackendError(f"{e} (fix the file or choose another map)") from None
        except KeyError:
            raise BackendError(
                f"unknown town {scenario.town!r} for the embedded simulator (choose one of: {', '.join(town_names())})"
            ) from None
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else int(seed)
        rng = np.random.default_rng([self.seed, 1])
        net = self.town.network
        self.traffic = Traffic(net, np.random.default_rng([self.seed, 2]))
        spawns = net.spawn_points
        k = scenario.ego_spawn if scenario.ego_spawn is not None else int(rng.integers(len(spawns)))
        lane, s = spawns[k % len(spawns)]
        ego = self.traffic.add(lane, s, scenario.target_speed)
        ego.v = 0.0
        self.look = make_look(scenario.look, self.seed, scenario.randomize, scenario.cameras[0])
        npcs = scenario.npc_vehicles if self.look is None else int(round(scenario.npc_vehicles * self.look.traffic))
        self._spawn_npcs(rng, npcs, scenario.target_speed)
        self.frame = 0
        self.sim_time = 0.0
        self.distance = 0.0
        self.collided = False
        self._set_look(scenario)
        self._static = self._static_obstacles()
        return self._observe(False)

    def step(self, control: Control | None = None, *, render: bool = True) -> Observation:
        if self.scenario is None:
            raise BackendError("step() before reset() (call reset(scenario, seed) first)")
        dt = self.scenario.dt
        ego = self.traffic.vehicles[0]
        ctrl = self.autopilot() if control is None else control
        x0, y0 = ego.x, ego.y
        ego.x, ego.y, ego.yaw, ego.v = bicycle_step(ego.x, ego.y, ego.yaw, ego.v, ctrl, dt)
        self._steer = ctrl.steer
        self.distance += math.hypot(ego.x - x0, ego.y - y0)
        self._track(ego)
        self.traffic.step_npcs(dt)
        self.frame += 1
        self.sim_time = self.frame * dt
        return self._observe(self._collision(ego), render)

    def close(self) -> None:
        self._closed = True
        self._renderers = {}

    # -- autopilot --------------------------------------------------------------------------
    def autopilot(self) -> Control:
        """Lane following by pure pursuit along the route, IDM speed, queueing at junctions."""
        ego = self.traffic.vehicles[0]
        look = min(max(4.0 + 0.7 * ego.v, 6.0), 16.0)
        tx, ty = self._point_ahead(ego, look)
        steer = pure_pursuit(ego.x, ego.y, ego.yaw, tx, ty)
        a = self.traffic.target_accel(ego)
        if a >= 0:
            return Control(throttle=min(a / 3.5 + 0.02 * ego.v / 3.5, 1.0), steer=steer)
        return Control(brake=min(-a / 8.0, 1.0), steer=steer)

    def _point_ahead(self, v: Vehicle, dist: float) -> tuple[float, float]:
        s = v.s + dist
        lanes = [v.lane] + v.route
        for lane_id in lanes:
            path = self.traffic.lane(lane_id).path
            if s <= path.length or path.closed:
                x, y, _ = path.pose(s)
                return x, y
            s -= path.length
        x, y, _ = self.traffic.lane(lanes[-1]).path.pose(1e9)
        return x, y

    # -- ego on the lane graph --------------------------------------------------------------
    def _track(self, ego: Vehicle) -> None:
        """Keep the ego's lane and arc length up to date, whoever drives."""
        tr = self.traffic
        path = tr.lane(ego.lane).path
        s, lat, _ = path.project(ego.x, ego.y, s_hint=ego.s)
        if path.closed and s < ego.s - path.length / 2:
            pass  # wrapped round a loop: keep the projection
        ego.s = s
        if not path.closed and s >= path.length - 0.05:
            # Past the lane end: take the successor that fits the ego's position best.
            best = None
            for cand in tr.lane(ego.lane).successors:
                cs, clat, ch = tr.lane(cand).path.project(ego.x, ego.y, s_hint=0.0)
                score = abs(clat) + 2.0 * abs(wrap_scalar(ego.yaw - ch))
                if best is None or score < best[0]:
                    best = (score, cand, cs)
            if best is not None:
                planned = ego.route[0] if ego.route else None
                prev = ego.lane
                tr.enter_lane(ego, best[1], prev)
                ego.s = best[2]
                ego.route = ego.route[1:] if planned == best[1] else []
                tr.extend_route(ego)
        if abs(lat) > 8.0:
            self._relocalise(ego)

    def _relocalise(self, ego: Vehicle) -> None:
        town = self.town
        d2 = (town.lane_xy[:, 0] - ego.x) ** 2 + (town.lane_xy[:, 1] - ego.y) ** 2
        order = np.argsort(d2)[:50]
        best = None
        for i in order:
            lane_id = int(town.lane_of_point[i])
            s, lat, h = self.traffic.lane(lane_id).path.project(ego.x, ego.y)
            score = abs(lat) + 4.0 * abs(wrap_scalar(ego.yaw - h))
            if best is None or score < best[0]:
                best = (score, lane_id, s)
        if best is not None and best[1] != ego.lane:
            self.traffic.enter_lane(ego, best[1], ego.lane)
            ego.s = best[2]
            ego.route = []
            self.traffic.extend_route(ego)

    # -- world ------------------------------------------------------------------------------
    def _spawn_npcs(self, rng: np.random.Generator, n: int, speed: float) -> None:
        net = self.town.network
        ego = self.traffic.vehicles[0]
        taken = [(ego.x, ego.y)]
        tries = 0
        road_lanes = [ln.id for ln in net.lanes if ln.road is not None]
        while len(self.traffic.vehicles) - 1 < n and tries < n * 30:
            tries += 1
            lane_id = road_lanes[int(rng.integers(len(road_lanes)))]
            path = net.lanes[lane_id].path
            if path.length < 20:
                continue
            s = float(rng.uniform(5.0, path.length - 10.0))
            x, y, _ = path.pose(s)
            if min(math.hypot(x - a, y - b) for a, b in taken) < 18.0:
                continue
            taken.append((x, y))
            v0 = speed * float(rng.uniform(0.75, 1.1))
            self.traffic.add(lane_id, s, v0, truck=bool(rng.random() < 0.15))

    def _set_look(self, scenario: Scenario) -> None:
        """Renderers for the episode's look; the default look renders the town's own raster."""
        town = self.town
        self.scenery = town.scenery
        ground = town.ground
        if self.look is not None:
            ground = real_ground(town.ground, town.network, town.scenery, self.look)
            extra = real_props.barriers(town.network, town.recipe.sidewalk if town.recipe else 0.0, self.look)
            boxes = real_props.concat(town.scenery.boxes, extra)
            self.scenery = Scenery(boxes, town.scenery.spheres, real_props.street_lamps(town.scenery.boxes))
        self._renderers = {}
        for cam in scenario.cameras:
            spec = self.look.camera(cam) if self.look is not None and scenario.randomize else cam
            self._renderers[cam.name] = CameraRenderer(spec, ground, seed=self.seed, look=self.look)

    def look_record(self) -> dict | None:
        """How this episode's frames look (None for the default look), for a dataset index."""
        return None if self.look is None else self.look.record()

    def _static_obstacles(self) -> Boxes:
        sc = self.town.scenery.boxes
        return sc

    def _collision(self, ego: Vehicle) -> bool:
        me = (ego.x, ego.y, ego.yaw, EGO_SIZE[0], EGO_SIZE[1])
        for o in self.traffic.vehicles[1:]:
            if abs(o.x - ego.x) < 9 and abs(o.y - ego.y) < 9:
                if obb_overlap(me, (o.x, o.y, o.yaw, o.size[0], o.size[1])):
                    return True
        st = self._static
        near = np.nonzero((np.abs(st.xy[:, 0] - ego.x) < 25) & (np.abs(st.xy[:, 1] - ego.y) < 25))[0]
        for i in near:
            if obb_overlap(me, (st.xy[i, 0], st.xy[i, 1], st.yaw[i], st.size[i, 0], st.size[i, 1])):
                return True
        return False

    def _observe(self, collision: bool, render: bool = True) -> Observation:
        sc = self.scenario
        ego = self.traffic.vehicles[0]
        lane = self.traffic.lane(ego.lane)
        _, lat, heading = lane.path.project(ego.x, ego.y, s_hint=ego.s)
        gap, lead_v = self.traffic.leader_gap(ego)
        lead = (float(gap), float(lead_v)) if gap < 80.0 else (None, None)
        state = EgoState(
            x=ego.x,
            y=ego.y,
            z=0.0,
            yaw=ego.yaw,
            speed=ego.v,
            steer=getattr(self, "_steer", 0.0),
            lane_id=ego.lane,
            lane_width=lane.width,
            lateral_offset=lat,
            heading_error=wrap_scalar(ego.yaw - heading),
            distance=self.distance,
            collision=collision,
            in_junction=lane.road is None,
            lead_distance=lead[0],
            lead_speed=lead[1],
        )
        weather = sc.weather_at(self.frame)
        cams = {}
        dynamic = self.traffic.boxes() if render else None
        for name, r in self._renderers.items() if render else ():
            rgb, labels = r.render(ego.x, ego.y, ego.yaw, self.scenery, dynamic, weather, self.frame)
            cams[name] = CameraFrame(r.spec, rgb, labels)
        return Observation(self.frame, self.sim_time, state, cams, weather.name, self.town.name)
