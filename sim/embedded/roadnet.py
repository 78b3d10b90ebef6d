"""The road network as pure geometry: roads with lanes and markings, junctions, connectors.

Right-hand traffic. A road runs from node `a` to node `b`; its forward lanes lie to the right
of the centreline. Lanes and junction connectors are `Lane` paths in one graph that vehicles
follow; markings are polylines with a type, painted by `raster.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.embedded.geometry import Path, bezier, offset, resample, tangents, wrap_angle
from sim.embedded.towns import TownRecipe

STOP_BAND = 5.0  # metres at a road end kept for the crosswalk and the stop line


@dataclass
class Marking:
    points: np.ndarray
    kind: str  # solid | dashed | double | stop | crosswalk
    color: str = "white"  # white | yellow
    width: float = 0.15


@dataclass
class Road:
    id: int
    a: int
    b: int
    center: np.ndarray  # (N, 2) from junction box of a to junction box of b
    n_fwd: int
    n_bwd: int
    lane_width: float
    closed: bool = False

    @property
    def half_width(self) -> float:
        return max(self.n_fwd, self.n_bwd) * self.lane_width


@dataclass
class Lane:
    id: int
    path: Path
    width: float
    road: int | None  # None for junction connectors
    node: int | None = None  # junction a connector crosses, or the node a road lane ends at
    successors: list[int] = field(default_factory=list)
    turn: str = "straight"


@dataclass
class Junction:
    id: int
    pos: np.ndarray
    radius: float
    polygon: np.ndarray  # road surface of the junction (convex hull of the road mouths)


@dataclass
class RoadNetwork:
    roads: list[Road]
    lanes: list[Lane]
    junctions: list[Junction]
    markings: list[Marking]
    bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax
    spawn_points: list[tuple[int, float]]  # (lane id, s)

    def lane_points(self) -> tuple[np.ndarray, np.ndarray]:
        """All lane sample points and the lane id of each, for nearest-lane queries."""
        pts = [ln.path.points for ln in self.lanes]
        ids = [np.full(len(p), ln.id) for p, ln in zip(pts, self.lanes, strict=True)]
        return np.vstack(pts), np.concatenate(ids)


def _grid_nodes(r: TownRecipe, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    nodes = []
    for j in range(r.ny):
        for i in range(r.nx):
            jit = rng.uniform(-r.jitter, r.jitter, 2) * r.spacing
            nodes.append(np.array([i * r.spacing, j * r.spacing]) + jit)
    edges = []
    for j in range(r.ny):
        for i in range(r.nx):
            k = j * r.nx + i
            if i + 1 < r.nx:
                edges.append((k, k + 1))
            if j + 1 < r.ny:
                edges.append((k, k + r.nx))
    # Drop edges for T junctions, keeping every node at degree >= 2 and the graph connected.
    order = rng.permutation(len(edges))
    target = int(round(r.drop_edges * len(edges)))
    kept = list(edges)
    for idx in order:
        if target == 0:
            break
        e = edges[idx]
        trial = [x for x in kept if x != e]
        deg = np.zeros(len(nodes), int)
        for a, b in trial:
            deg[a] += 1
            deg[b] += 1
        if deg.min() < 2 or not _connected(len(nodes), trial):
            continue
        kept = trial
        target -= 1
    return np.array(nodes), kept


def _connected(n: int, edges: list[tuple[int, int]]) -> bool:
    adj: dict[int, list[int]] = {i: [] for i in range(n)}
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    seen, stack = {0}, [0]
    while stack:
        for m in adj[stack.pop()]:
            if m not in seen:
                seen.add(m)
                stack.append(m)
    return len(seen) == n


def _road_markings(road: Road, edge_lines: bool) -> list[Marking]:
    """Centre line, lane separators and edge lines of one road, ending before stop bands."""
    c = road.center
    if not road.closed:
        s = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1))])
        keep = (s >= STOP_BAND) & (s <= s[-1] - STOP_BAND)
        c = c[keep]
        if len(c) < 2:
            return []
    w = road.lane_width
    out: list[Marking] = []
    if road.n_fwd + road.n_bwd >= 4:
        out.append(Marking(offset(c, 0.15, road.closed), "solid", "yellow"))
        out.append(Marking(offset(c, -0.15, road.closed), "solid", "yellow"))
    elif road.n_fwd >= 2 or road.n_bwd >= 2:
        out.append(Marking(c, "double", "yellow"))
    else:
        out.append(Marking(c, "dashed", "yellow" if edge_lines else "white"))
    for i in range(1, road.n_fwd):
        out.append(Marking(offset(c, -i * w, road.closed), "dashed"))
    for i in range(1, road.n_bwd):
        out.append(Marking(offset(c, i * w, road.closed), "dashed"))
    if edge_lines:
        out.append(Marking(offset(c, -road.n_fwd * w + 0.25, road.closed), "solid"))
        out.append(Marking(offset(c, road.n_bwd * w - 0.25, road.closed), "solid"))
    return out


def _end_markings(road: Road, at_end: bool) -> list[Marking]:
    """Stop line across the incoming lanes and a zebra crosswalk across the whole road."""
    c = road.center
    t = tangents(c)
    if at_end:  # forward lanes arrive at node b
        p, d, side, n_in = c[-1], t[-1], -1.0, road.n_fwd
    else:  # backward lanes arrive at node a
        p, d, side, n_in = c[0], -t[0], -1.0, road.n_bwd
    left = np.array([-d[1], d[0]])
    w = road.lane_width
    out = []
    stop_c = p - d * (STOP_BAND - 0.4)
    out.append(Marking(np.array([stop_c, stop_c + side * left * n_in * w * 0.98]), "stop", width=0.4))
    half = max(road.n_fwd, road.n_bwd) * w
    mid = p - d * 2.2
    k = np.arange(-half + 0.4, half - 0.3, 1.0)
    for off in k:
        q = mid + left * off
        out.append(Marking(np.array([q - d * 1.5, q + d * 1.5]), "crosswalk", width=0.5))
    return out


def _lane_paths(road: Road) -> list[tuple[np.ndarray, int, bool]]:
    """(points in driving direction, lane index from the centre, forward?) of a road's lanes."""
    out = []
    for i in range(road.n_fwd):
        out.append((offset(road.center, -(i + 0.5) * road.lane_width, road.closed), i, True))
    for i in range(road.n_bwd):
        pts = offset(road.center, (i + 0.5) * road.lane_width, road.closed)[::-1].copy()
        out.append((pts, i, False))
    return out


def _loop_center(r: TownRecipe, rng: np.random.Generator) -> np.ndarray:
    th = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    ph = rng.uniform(0, 2 * np.pi, 2)
    rad = r.radius * (1 + 0.12 * np.sin(3 * th + ph[0]) + 0.05 * np.sin(5 * th + ph[1]))
    pts = np.stack([1.35 * rad * np.cos(th), rad * np.sin(th)], axis=1)
    return resample(pts, 1.0, closed=True)


def build_network(r: TownRecipe, rng: np.random.Generator) -> RoadNetwork:
    """Generate the whole network of a town recipe from one random generator."""
    roads: list[Road] = []
    lanes: list[Lane] = []
    junctions: list[Junction] = []
    markings: list[Marking] = []

    if r.kind == "loop":
        center = _loop_center(r, rng)
        n = r.lanes[0]
        road = Road(0, -1, -1, center, n, n, r.lane_width, closed=True)
        roads.append(road)
        markings += _road_markings(road, r.edge_lines)
        for pts, _i, _fwd in _lane_paths(road):
            lane = Lane(len(lanes), Path(pts, closed=True), r.lane_width, road=0)
            lane.successors = [lane.id]
            lanes.append(lane)
    else:
        nodes, edges = _grid_nodes(r, rng)
        lanes_of_road = {}
        deg = np.zeros(len(nodes), int)
        for a, b in edges:
            deg[a] += 1
            deg[b] += 1
        n_choice = [int(rng.choice(r.lanes)) for _ in edges]
        node_half = np.zeros(len(nodes))
        for (a, b), n in zip(edges, n_choice, strict=True):
            node_half[a] = max(node_half[a], n * r.lane_width)
            node_half[b] = max(node_half[b], n * r.lane_width)
        radius = node_half + 4.0
        for (a, b), n in zip(edges, n_choice, strict=True):
            pa, pb = nodes[a], nodes[b]
            d = (pb - pa) / np.linalg.norm(pb - pa)
            p0, p3 = pa + d * radius[a], pb - d * radius[b]
            length = np.linalg.norm(p3 - p0)
            bend = rng.uniform(-r.bend, r.bend) if r.bend > 0 and length > 60 else 0.0
            left = np.array([-d[1], d[0]])
            k = length / 3
            # Straight for a few metres at each end so junction mouths are square.
            q0, q3 = p0 + d * 6, p3 - d * 6
            mid = bezier(q0, q0 + d * k + left * bend, q3 - d * k + left * bend, q3, 1.0)
            center = resample(np.vstack([p0, mid, p3]), 1.0)
            road = Road(len(roads), a, b, center, n, n, r.lane_width)
            roads.append(road)
            markings += _road_markings(road, r.edge_lines)
            markings += _end_markings(road, at_end=True) + _end_markings(road, at_end=False)
            ids = []
            for pts, i, fwd in _lane_paths(road):
                node = b if fwd else a
                lane = Lane(len(lanes), Path(pts), r.lane_width, road=road.id, node=node)
                lane.turn = f"{'f' if fwd else 'b'}{i}"
                lanes.append(lane)
                ids.append((lane.id, i, fwd))
            lanes_of_road[road.id] = ids
        for j, p in enumerate(nodes):
            mouths = []
            for road in roads:
                if road.a == j:
                    c, t = road.center[0], tangents(road.center)[0]
                elif road.b == j:
                    c, t = road.center[-1], -tangents(road.center)[-1]
                else:
                    continue
                left = np.array([-t[1], t[0]])
                hw = road.half_width
                mouths += [c + left * hw, c - left * hw]
            poly = _convex_hull(np.array(mouths))
            junctions.append(Junction(j, p, float(radius[j]), poly))
        _connect(roads, lanes, lanes_of_road, nodes)

    xy = np.vstack([rd.center for rd in roads])
    margin = 60.0
    bounds = (xy[:, 0].min() - margin, xy[:, 1].min() - margin, xy[:, 0].max() + margin, xy[:, 1].max() + margin)
    spawns = []
    for lane in lanes:
        if lane.road is not None and lane.path.length > 30:
            spawns.append((lane.id, lane.path.length * 0.35))
    return RoadNetwork(roads, lanes, junctions, markings, bounds, spawns)


def _connect(roads, lanes, lanes_of_road, nodes) -> None:
    """Junction connectors: straight from any lane, left from the inner, right from the outer."""
    for lane in list(lanes):
        if lane.road is None or lane.node is None:
            continue
        end = lane.path.points[-1]
        t_in = tangents(lane.path.points)[-1]
        h_in = np.arctan2(t_in[1], t_in[0])
        src_road = roads[lane.road]
        fwd_in = lane.turn[0] == "f"
        idx_in = int(lane.turn[1:])
        n_in = src_road.n_fwd if fwd_in else src_road.n_bwd
        options = []
        for road in roads:
            if road.id == src_road.id or lane.node not in (road.a, road.b):
                continue
            outgoing_fwd = road.a == lane.node
            for lid, i, fwd in lanes_of_road[road.id]:
                if fwd != outgoing_fwd:
                    continue
                out = lanes[lid]
                t_out = tangents(out.path.points)[0]
                turn = float(wrap_angle(np.arctan2(t_out[1], t_out[0]) - h_in))
                kind = "straight" if abs(turn) < 0.6 else ("left" if turn > 0 else "right")
                n_out = road.n_fwd if fwd else road.n_bwd
                options.append((kind, i, n_out, out, t_out))
        chosen = []
        for kind, i, n_out, out, t_out in options:
            if kind == "straight" and i == min(idx_in, n_out - 1):
                chosen.append((kind, out, t_out))
            elif kind == "left" and idx_in == 0 and i == 0:
                chosen.append((kind, out, t_out))
            elif kind == "right" and idx_in == n_in - 1 and i == n_out - 1:
                chosen.append((kind, out, t_out))
        if not chosen and options:  # e.g. a middle lane at a T: turn into the nearest lane
            kind, i, n_out, out, t_out = min(options, key=lambda o: abs(o[1] - idx_in))
            chosen.append((kind, out, t_out))
        for kind, out, t_out in chosen:
            start = out.path.points[0]
            k = 0.45 * float(np.linalg.norm(start - end))
            pts = bezier(end, end + t_in * k, start - t_out * k, start, 0.5)
            conn = Lane(len(lanes), Path(pts), lane.width, road=None, node=lane.node, turn=kind)
            conn.successors = [out.id]
            lanes.append(conn)
            lane.successors.append(conn.id)


def _convex_hull(pts: np.ndarray) -> np.ndarray:
    pts = sorted(map(tuple, pts))
    if len(pts) < 3:
        return np.array(pts)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])
