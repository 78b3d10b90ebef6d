"""OpenDRIVE document -> the embedded world's road network (lanes, markings, surfaces).

Every drivable lane of every lane section becomes a lane path in its driving direction;
successors come from the lane links, road links and junction connections. Runs of pieces
with one way on are merged into one lane (traffic looks three lanes ahead), and pieces that
can only end in a dead end are left out of the traffic graph (they are still painted).
Road marks become markings (RoadLine) on the lane borders; curbs stay curbs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.embedded.geometry import Path
from sim.embedded.roadnet import Junction, Lane, Marking, Road, RoadNetwork
from sim.maps.opendrive import LaneSection, OpenDrive, RoadMark
from sim.maps.opendrive import Road as XRoad
from sim.maps.refline import lane_borders, lateral, reference_line, sample_s

DRIVABLE = ("driving", "entry", "exit", "onramp", "offramp", "connectingramp")
DOUBLE_GAP = 0.15  # metres of paint-free gap between the two lines of a double mark (as our towns draw them)
STANDARD_DASH = (3.0, 6.0)  # line, gap of a "broken" mark without a <type> definition
LINK_GAP = 3.0  # a link whose ends are further apart than this is dropped (a file error)

Key = tuple[str, int, int]  # (road id, lane section index, lane id)


@dataclass
class MapMarking(Marking):
    """A painted line with its own dash pattern (`dash` metres on, `gap` off; gap 0: solid)."""

    dash: float = 0.0
    gap: float = 0.0


@dataclass
class Surface:
    polygon: np.ndarray  # (N, 2)
    lane_type: str
    junction: int | None  # index of its junction, None outside junctions


@dataclass
class MapData:
    """What the painter, the scenery and the tests need beyond the RoadNetwork."""

    network: RoadNetwork
    surfaces: list[Surface]
    curbs: list[Marking]
    junction_lanes: dict[int, list[np.ndarray]]  # junction index -> drivable connector polygons
    pieces: dict[Key, np.ndarray]  # every drivable lane piece's centre, in driving direction
    lane_pieces: list[list[Key]]  # per network lane: the pieces merged into it
    successors: dict[Key, list[Key]] = field(default_factory=dict)  # the whole piece graph, dead ends too
    dropped_links: int = 0
    outside_graph: int = 0  # drivable pieces left out of the traffic graph (they lead to dead ends)
    junction_ids: list[str] = field(default_factory=list)


def _forward(road: XRoad, lane_id: int) -> bool:
    return (lane_id < 0) == (road.rule == "RHT")


def _mark_lines(mark: RoadMark, side: float) -> list[tuple[float, str, float, float]]:
    """(lateral shift, kind, dash, gap) of each painted line of a mark; side +1 = outward is +t."""
    if mark.lines:
        return [(ln.t_offset, "dashed" if ln.space > 0 else "solid", ln.length, ln.space) for ln in mark.lines]
    w = mark.width if mark.width is not None else 0.15
    pattern = {"solid": ("solid", 0.0, 0.0), "broken": ("dashed", *STANDARD_DASH), "botts dots": ("dashed", 0.12, 1.1)}
    parts = mark.type.split()
    if mark.type in pattern:
        return [(0.0, *pattern[mark.type])]
    if len(parts) == 2 and all(p in pattern for p in parts):
        d = w / 2 + DOUBLE_GAP / 2
        # inside to outside (the centre lane: left to right); side says which way is outside
        return [(-side * d, *pattern[parts[0]]), (side * d, *pattern[parts[1]])]
    return []


class _Builder:
    def __init__(self, doc: OpenDrive):
        self.doc = doc
        self.road_index = {rid: i for i, rid in enumerate(doc.roads)}
        self.junction_ids = list(doc.junctions)
        self.junction_index = {jid: i for i, jid in enumerate(self.junction_ids)}
        self.pieces: dict[Key, np.ndarray] = {}
        self.widths: dict[Key, float] = {}
        self.surfaces: list[Surface] = []
        self.markings: list[Marking] = []
        self.curbs: list[Marking] = []
        self.junction_lanes: dict[int, list[np.ndarray]] = {}
        self.roads: list[Road] = []
        self.dropped = 0

    # -- geometry ---------------------------------------------------------------------------
    def road(self, road: XRoad) -> None:
        breaks = [
            sec.s + m.s_offset
            for sec in road.sections
            for ln in sec.lanes() + [sec.center]
            if ln is not None
            for m in ln.marks
        ]
        s_all = sample_s(road, extra=breaks)
        j = self.junction_index.get(road.junction) if road.in_junction else None
        n_fwd = n_bwd = 0
        widths = []
        centre = []
        for i, sec in enumerate(road.sections):
            s0, s1 = sec.s, road.section_end(i)
            # Each section's own ends, so that pieces meet exactly whatever the sampling merged.
            s = np.concatenate([[s0], s_all[(s_all > s0 + 1e-6) & (s_all < s1 - 1e-6)], [s1]])
            xs, ys, hs = reference_line(road, s)
            centre.append(np.stack([xs, ys], 1))
            borders = lane_borders(road, sec, s, s1)
            for lane in sec.lanes():
                t_in, t_out = borders[lane.id]
                if np.abs(t_out - t_in).max() > 0.01:
                    poly = np.vstack([lateral(xs, ys, hs, t_in), lateral(xs, ys, hs, t_out)[::-1]])
                    self.surfaces.append(Surface(poly, lane.type.lower(), j))
                    if j is not None and lane.type.lower() in DRIVABLE:
                        self.junction_lanes.setdefault(j, []).append(poly)
                if lane.type.lower() in DRIVABLE:
                    c = lateral(xs, ys, hs, 0.5 * (t_in + t_out))
                    fwd = _forward(road, lane.id)
                    self.pieces[(road.id, i, lane.id)] = c if fwd else c[::-1].copy()
                    w = float(np.mean(np.abs(t_out - t_in)))
                    self.widths[(road.id, i, lane.id)] = w
                    widths.append(w)
                    n_fwd, n_bwd = n_fwd + fwd, n_bwd + (not fwd)
                side = 1.0 if lane.id > 0 else -1.0
                self._marks(lane.marks, sec, s1, s, xs, ys, hs, t_out, side)
            if sec.center is not None:
                self._marks(sec.center.marks, sec, s1, s, xs, ys, hs, borders[0][0], -1.0)
        if not road.in_junction:
            center = np.vstack(centre)
            lw = float(np.mean(widths)) if widths else 3.5
            self.roads.append(Road(self.road_index[road.id], -1, -1, center, n_fwd, n_bwd, lw))

    def _marks(
        self, marks: list[RoadMark], sec: LaneSection, s_end: float, s: np.ndarray, x, y, h, t: np.ndarray, side: float
    ) -> None:
        for k, mark in enumerate(marks):
            a = sec.s + mark.s_offset
            b = sec.s + marks[k + 1].s_offset if k + 1 < len(marks) else s_end
            m = (s >= a - 1e-5) & (s <= b + 1e-5)
            if m.sum() < 2:
                continue
            w = mark.width if mark.width is not None else 0.15
            color = "yellow" if mark.color == "yellow" else "white"
            if mark.type == "curb":
                self.curbs.append(Marking(lateral(x[m], y[m], h[m], t[m]), "curb", "white", max(w, 0.15)))
                continue
            for shift, kind, dash, gap in _mark_lines(mark, side):
                pts = lateral(x[m], y[m], h[m], t[m] + shift)
                self.markings.append(MapMarking(pts, kind, color, w, dash, gap))

    # -- topology ---------------------------------------------------------------------------
    def _entry(self, road_id: str, contact: str | None, lane_id: int | None, exit_pt: np.ndarray) -> Key | None:
        """The piece entered at a road's contact point, by lane id (None: not drivable there)."""
        if lane_id is None:
            return None
        target = self.doc.roads[road_id]
        if contact is None:  # infer from the geometry: the end nearer to where we leave
            first = [k for k in self.pieces if k[0] == road_id]
            if not first:
                return None
            x, y, _ = reference_line(target, np.array([0.0, target.length]))
            near_start = np.hypot(x[0] - exit_pt[0], y[0] - exit_pt[1]) <= np.hypot(
                x[1] - exit_pt[0], y[1] - exit_pt[1]
            )
            contact = "start" if near_start else "end"
        sec = 0 if contact == "start" else len(target.sections) - 1
        key = (road_id, sec, lane_id)
        return key if key in self.pieces else None

    def successors(self, key: Key) -> list[Key]:
        rid, si, lid = key
        road = self.doc.roads[rid]
        sec = road.sections[si]
        lane = next(ln for ln in sec.lanes() if ln.id == lid)
        fwd = _forward(road, lid)
        exit_pt = self.pieces[key][-1]
        out: list[Key] = []
        nxt_sec = si + 1 if fwd else si - 1
        link_id = lane.successor if fwd else lane.predecessor
        if 0 <= nxt_sec < len(road.sections):
            # Within a road a lane without a link goes on in the lane of the same id, as CARLA's does.
            target = (rid, nxt_sec, lid if link_id is None else link_id)
            if target in self.pieces:
                out.append(target)
        else:
            link = road.successor if fwd else road.predecessor
            if link is not None and link.element_type == "road":
                k = self._entry(link.element_id, link.contact_point, link_id, exit_pt)
                if k is not None:
                    out.append(k)
            elif link is not None:
                out += self._through_junction(link.element_id, road, lid, fwd)
        good = []
        for k in out:
            if np.hypot(*(self.pieces[k][0] - exit_pt)) <= LINK_GAP:
                good.append(k)
            else:
                self.dropped += 1
        return good

    def _through_junction(self, jid: str, road: XRoad, lid: int, fwd: bool) -> list[Key]:
        out = []
        for c in self.doc.junctions[jid].connections:
            if c.incoming != road.id:
                continue
            conn = self.doc.roads[c.connecting]
            sec_i = 0 if c.contact_point == "start" else len(conn.sections) - 1
            if c.lane_links:
                targets = [to for frm, to in c.lane_links if frm == lid]
            else:  # no laneLinks: the connecting road's own lane links say where it comes from
                sec = conn.sections[sec_i]
                targets = [
                    ln.id
                    for ln in sec.lanes()
                    if (ln.predecessor if c.contact_point == "start" else ln.successor) == lid
                ]
            for to in targets:
                if (c.connecting, sec_i, to) in self.pieces:
                    out.append((c.connecting, sec_i, to))
        return out


def _leading_on(succ: dict[Key, list[Key]]) -> set[Key]:
    """Pieces from which traffic can drive on for ever: dead ends removed until none is left."""
    preds: dict[Key, list[Key]] = {k: [] for k in succ}
    for k, nexts in succ.items():
        for n in nexts:
            preds[n].append(k)
    left = {k: len(set(v)) for k, v in succ.items()}
    dead = [k for k, n in left.items() if n == 0]
    gone: set[Key] = set()
    while dead:
        k = dead.pop()
        if k in gone:
            continue
        gone.add(k)
        for p in set(preds[k]):
            left[p] -= 1
            if left[p] == 0:
                dead.append(p)
    return set(succ) - gone


def _merge(keys: list[Key], succ: dict[Key, list[Key]], junction: dict[Key, str]) -> list[list[Key]]:
    """Chains of pieces with one way on and one way in, in one junction or outside; in file order."""
    pred_n: dict[Key, int] = {k: 0 for k in keys}
    for k in keys:
        for s in succ[k]:
            pred_n[s] += 1
    nxt: dict[Key, Key | None] = {}
    for a in keys:
        b = succ[a][0] if len(succ[a]) == 1 else None
        ok = b is not None and b != a and pred_n[b] == 1 and junction[a] == junction[b]
        nxt[a] = b if ok else None
    has_prev = {b for b in nxt.values() if b is not None}
    chains: list[list[Key]] = []
    seen: set[Key] = set()
    for heads_only in (True, False):  # chains from their heads, then what is left: pure loops
        for k in keys:
            if k in seen or (heads_only and k in has_prev):
                continue
            chain = [k]
            seen.add(k)
            while nxt[chain[-1]] is not None and nxt[chain[-1]] not in seen:
                chain.append(nxt[chain[-1]])
                seen.add(chain[-1])
            chains.append(chain)
    return chains


def build_map(doc: OpenDrive, margin: float = 30.0) -> MapData:
    """Build the network, surfaces and marks of a parsed file (deterministic: file order)."""
    b = _Builder(doc)
    for road in doc.roads.values():
        b.road(road)
    keys = list(b.pieces)
    full = {k: b.successors(k) for k in keys}
    strong = _leading_on(full)
    kept = [k for k in keys if k in strong]
    succ = {k: [s for s in full[k] if s in strong] for k in kept}
    junction = {k: doc.roads[k[0]].junction for k in kept}
    chains = _merge(kept, succ, junction)
    lane_of = {k: i for i, chain in enumerate(chains) for k in chain}
    lanes: list[Lane] = []
    for i, chain in enumerate(chains):
        pts = [b.pieces[chain[0]]] + [b.pieces[k][1:] for k in chain[1:]]
        first = doc.roads[chain[0][0]]
        jn = b.junction_index[first.junction] if first.in_junction else None
        end = doc.roads[chain[-1][0]]
        lane = Lane(
            i,
            Path(np.vstack(pts)),
            float(np.mean([b.widths[k] for k in chain])),
            road=None if jn is not None else b.road_index[first.id],
            node=jn,
        )
        lane.successors = sorted({lane_of[s] for s in succ[chain[-1]]})
        if jn is None and end.successor is not None and end.successor.element_type == "junction":
            lane.node = b.junction_index.get(end.successor.element_id)
        lanes.append(lane)
    junctions = []
    for jid, ji in b.junction_index.items():
        polys = b.junction_lanes.get(ji, [])
        pts = np.vstack(polys) if polys else np.zeros((1, 2))
        centre = pts.mean(0)
        radius = float(np.hypot(*(pts - centre).T).max()) if polys else 0.0
        junctions.append(Junction(ji, centre, radius, pts))
        del jid
    allpts = np.vstack([s.polygon for s in b.surfaces] or [np.zeros((1, 2))])
    bounds = (
        float(allpts[:, 0].min() - margin),
        float(allpts[:, 1].min() - margin),
        float(allpts[:, 0].max() + margin),
        float(allpts[:, 1].max() + margin),
    )
    spawns = [(ln.id, 0.35 * ln.path.length) for ln in lanes if ln.road is not None and ln.path.length > 20.0]
    if not spawns and lanes:
        spawns = [(ln.id, 0.5 * ln.path.length) for ln in lanes]
    net = RoadNetwork(b.roads, lanes, junctions, b.markings, bounds, spawns)
    return MapData(
        net,
        b.surfaces,
        b.curbs,
        b.junction_lanes,
        b.pieces,
        chains,
        full,
        b.dropped,
        len(keys) - len(kept),
        b.junction_ids,
    )
