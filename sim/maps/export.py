"""Write a procedural town as OpenDRIVE 1.4 that carla.Map and our reader both read.

Reference lines are the towns' own centre polylines, joined by cubic Hermite pieces
(paramPoly3, normalized) through every sample with the sample's heading, so lane centres
offset from them pass exactly through our lane points (the polylines' discrete normals are
the curves' normals there). Straight runs become one <line>. Junction connectors become
connecting roads whose reference line is the connector itself (laneOffset = half a lane).
Ids come from one number space: roads 1..R, connecting roads R+1..C, junctions C+1..;
CARLA's parser confuses a junction whose id equals a road's.

Kept: lanes, widths, centre/separator/edge marks (type, colour, width, the 5 m stop bands
without marks), curb and sidewalk bands, links and junction connections. Not kept: stop
lines and crosswalks (OpenDRIVE has them as objects and signals), scenery.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import quoteattr

import numpy as np

from sim.embedded.geometry import tangents
from sim.embedded.roadnet import STOP_BAND, Lane, Road, RoadNetwork
from sim.embedded.town import load_town
from sim.embedded.towns import TownRecipe

CURB_W = 0.3  # the procedural curb band beyond the asphalt
EDGE_INSET = 0.25  # the procedural edge line sits this far inside the road edge
GL_X, GL_W = np.polynomial.legendre.leggauss(8)


def _f(v: float) -> str:
    return f"{v:.12g}"


def _hermite(p0: np.ndarray, h0: float, p1: np.ndarray, h1: float) -> tuple[dict[str, float], float]:
    """paramPoly3 coefficients (local frame of p0) of the cubic from p0 to p1 with those headings."""
    c, s = math.cos(h0), math.sin(h0)
    d = p1 - p0
    cu, cv = c * d[0] + s * d[1], -s * d[0] + c * d[1]
    chord = math.hypot(cu, cv)
    dh = math.atan2(math.sin(h1 - h0), math.cos(h1 - h0))
    m0 = np.array([chord, 0.0])
    m1 = chord * np.array([math.cos(dh), math.sin(dh)])
    cc = np.array([cu, cv])
    b, c2, d3 = m0, -2 * m0 + 3 * cc - m1, m0 - 2 * cc + m1
    p = (GL_X + 1) / 2
    du = b[0] + 2 * c2[0] * p + 3 * d3[0] * p**2
    dv = b[1] + 2 * c2[1] * p + 3 * d3[1] * p**2
    length = float(np.sum(GL_W / 2 * np.hypot(du, dv)))
    coef = {"aU": 0.0, "bU": b[0], "cU": c2[0], "dU": d3[0], "aV": 0.0, "bV": b[1], "cV": c2[1], "dV": d3[1]}
    return coef, length


def plan_view(points: np.ndarray, headings: np.ndarray) -> tuple[str, np.ndarray]:
    """<planView> XML through the points with the headings, and the s of every point."""
    out, s_nodes = [], [0.0]
    s = 0.0
    i, n = 0, len(points)
    while i < n - 1:
        j = i
        # a straight run: headings equal and the points on the line
        while j < n - 1 and abs(math.remainder(headings[j + 1] - headings[i], math.tau)) < 1e-7:
            d = points[j + 1] - points[i]
            if abs(-math.sin(headings[i]) * d[0] + math.cos(headings[i]) * d[1]) > 1e-6:
                break
            j += 1
        if j > i:
            length = float(np.linalg.norm(points[j] - points[i]))
            x, y = points[i]
            out.append(
                f'<geometry s="{_f(s)}" x="{_f(x)}" y="{_f(y)}" hdg="{_f(headings[i])}" '
                f'length="{_f(length)}"><line/></geometry>'
            )
            seg = np.linalg.norm(np.diff(points[i : j + 1], axis=0), axis=1)
            s_nodes += list(s + np.cumsum(seg))
            s += length
            i = j
            continue
        coef, length = _hermite(points[i], headings[i], points[i + 1], headings[i + 1])
        x, y = points[i]
        attrs = " ".join(f'{k}="{_f(v)}"' for k, v in coef.items())
        out.append(
            f'<geometry s="{_f(s)}" x="{_f(x)}" y="{_f(y)}" hdg="{_f(headings[i])}" length="{_f(length)}">'
            f'<paramPoly3 {attrs} pRange="normalized"/></geometry>'
        )
        s += length
        s_nodes.append(s)
        i += 1
    return "<planView>" + "".join(out) + "</planView>", np.array(s_nodes)


def _mark(s: float, kind: str, color: str = "white", width: float = 0.15, t_offset: float | None = None) -> str:
    body = ""
    if t_offset is not None:  # a line off the lane border (our edge lines sit inside the road)
        body = (
            f'<type name="edge" width="{_f(width)}"><line length="0" space="0" tOffset="{_f(t_offset)}" '
            f'sOffset="0" rule="none" width="{_f(width)}"/></type>'
        )
    return (
        f'<roadMark sOffset="{_f(s)}" type="{kind}" weight="standard" color="{color}" width="{_f(width)}" '
        f'laneChange="none">{body}</roadMark>'
    )


def _banded(band: tuple[float, float] | None, kind: str, color: str = "white", t_offset: float | None = None) -> str:
    """A mark painted only between the stop bands (band: its s range; None: the whole road)."""
    if band is None:
        return _mark(0.0, kind, color, t_offset=t_offset)
    if band[1] <= band[0]:
        return _mark(0.0, "none")
    return _mark(0.0, "none") + _mark(band[0], kind, color, t_offset=t_offset) + _mark(band[1], "none")


def _stop_bands(center: np.ndarray, s_nodes: np.ndarray) -> tuple[float, float]:
    """The s range our towns paint marks on: from the first centre sample 5 m in to the last."""
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(center, axis=0), axis=1))])
    keep = np.nonzero((s >= STOP_BAND) & (s <= s[-1] - STOP_BAND))[0]
    if len(keep) < 2:
        return (0.0, 0.0)
    return float(s_nodes[keep[0]]), float(s_nodes[keep[-1]])


def _lane(lid: int, kind: str, width: float, marks: str, pred: int | None = None, succ: int | None = None) -> str:
    link = ""
    if pred is not None or succ is not None:
        link = (
            "<link>"
            + (f'<predecessor id="{pred}"/>' if pred is not None else "")
            + (f'<successor id="{succ}"/>' if succ is not None else "")
            + "</link>"
        )
    return (
        f'<lane id="{lid}" type="{kind}" level="false">{link}'
        f'<width sOffset="0" a="{_f(width)}" b="0" c="0" d="0"/>{marks}</lane>'
    )


def _road_lanes(road: Road, r: TownRecipe, band: tuple[float, float] | None, links: bool) -> str:
    """Lane section of a procedural road: driving lanes, curb band and sidewalk, marks as painted."""
    w = road.lane_width
    n4 = road.n_fwd + road.n_bwd >= 4
    if n4 or road.n_fwd >= 2 or road.n_bwd >= 2:
        centre = _banded(band, "solid solid", "yellow")
    else:
        centre = _banded(band, "broken", "yellow" if r.edge_lines else "white")
    sides = []
    for side, n in ((1, road.n_bwd), (-1, road.n_fwd)):
        lanes = []
        for i in range(n):
            lid = side * (i + 1)
            if i < n - 1:
                marks = _banded(band, "broken")
            elif r.edge_lines:
                marks = _banded(band, "solid", t_offset=-side * EDGE_INSET)
            else:
                marks = _mark(0.0, "none")
            own = lid if links else None
            lanes.append(_lane(lid, "driving", w, marks, own, own))
        k = n
        if r.sidewalk > 0:
            lanes.append(_lane(side * (k + 1), "border", CURB_W, _mark(0.0, "none")))
            lanes.append(_lane(side * (k + 2), "sidewalk", r.sidewalk - CURB_W, _mark(0.0, "none")))
        sides.append(lanes)
    left, right = sides
    return (
        f'<lanes><laneOffset s="0" a="0" b="0" c="0" d="0"/><laneSection s="0"><left>{"".join(left)}</left>'
        f'<center><lane id="0" type="none" level="false">{centre}</lane></center>'
        f"<right>{''.join(right)}</right></laneSection></lanes>"
    )


def _lane_id(road: Road, lane: Lane) -> tuple[int, bool]:
    """(OpenDRIVE lane id, forward?) of a procedural road lane (turn 'f0', 'b1', ...)."""
    fwd = lane.turn[0] == "f"
    i = int(lane.turn[1:])
    return (-(i + 1), True) if fwd else (i + 1, False)


def export_network(net: RoadNetwork, r: TownRecipe, name: str) -> str:
    """OpenDRIVE text of a procedural network."""
    roads_xml: list[str] = []
    next_id = 1
    if r.kind == "loop":
        road = net.roads[0]
        pts = road.center
        heads = np.arctan2(*tangents(pts, closed=True).T[::-1])
        # Three roads in a ring: CARLA's next() fails where two roads link to each other at both ends.
        cut = [0, len(pts) // 3, 2 * len(pts) // 3, len(pts)]
        ext_p, ext_h = np.vstack([pts, pts[:1]]), np.concatenate([heads, heads[:1]])
        for k in range(3):
            p, h = ext_p[cut[k] : cut[k + 1] + 1], ext_h[cut[k] : cut[k + 1] + 1]
            pv, s_nodes = plan_view(p, h)
            prev, nxt = (k - 1) % 3 + 1, (k + 1) % 3 + 1
            link = (
                f'<link><predecessor elementType="road" elementId="{prev}" contactPoint="end"/>'
                f'<successor elementType="road" elementId="{nxt}" contactPoint="start"/></link>'
            )
            roads_xml.append(
                f'<road name="loop{k}" length="{_f(s_nodes[-1])}" id="{k + 1}" junction="-1">{link}'
                f"{pv}{_road_lanes(road, r, None, True)}</road>"
            )
        return _document(name, roads_xml, [])
    road_id = {rd.id: next_id + i for i, rd in enumerate(net.roads)}
    next_id += len(net.roads)
    conn_lanes = [ln for ln in net.lanes if ln.road is None]
    conn_id = {ln.id: next_id + i for i, ln in enumerate(conn_lanes)}
    next_id += len(conn_lanes)
    junction_id = {j.id: next_id + i for i, j in enumerate(net.junctions)}
    pred_of = {}
    for ln in net.lanes:
        for s in ln.successors:
            pred_of[s] = ln.id
    for rd in net.roads:
        pv, s_nodes = plan_view(rd.center, np.arctan2(*tangents(rd.center).T[::-1]))
        link = (
            f'<link><predecessor elementType="junction" elementId="{junction_id[rd.a]}"/>'
            f'<successor elementType="junction" elementId="{junction_id[rd.b]}"/></link>'
        )
        roads_xml.append(
            f'<road name="road{rd.id}" length="{_f(s_nodes[-1])}" id="{road_id[rd.id]}" junction="-1">'
            f"{link}{pv}{_road_lanes(rd, r, _stop_bands(rd.center, s_nodes), False)}</road>"
        )
    connections: dict[int, list[str]] = {}
    for ln in conn_lanes:
        src, dst = net.lanes[pred_of[ln.id]], net.lanes[ln.successors[0]]
        src_id, src_fwd = _lane_id(net.roads[src.road], src)
        dst_id, dst_fwd = _lane_id(net.roads[dst.road], dst)
        pts = ln.path.points
        pv, s_nodes = plan_view(pts, np.arctan2(*tangents(pts).T[::-1]))
        link = (
            f'<link><predecessor elementType="road" elementId="{road_id[src.road]}" '
            f'contactPoint="{"end" if src_fwd else "start"}"/>'
            f'<successor elementType="road" elementId="{road_id[dst.road]}" '
            f'contactPoint="{"start" if dst_fwd else "end"}"/></link>'
        )
        lanes = (
            f'<lanes><laneOffset s="0" a="{_f(ln.width / 2)}" b="0" c="0" d="0"/><laneSection s="0">'
            f'<center><lane id="0" type="none" level="false">{_mark(0, "none")}</lane></center><right>'
            f"{_lane(-1, 'driving', ln.width, _mark(0, 'none'), src_id, dst_id)}</right></laneSection></lanes>"
        )
        jid = junction_id[ln.node]
        roads_xml.append(
            f'<road name="{ln.turn}" length="{_f(s_nodes[-1])}" id="{conn_id[ln.id]}" '
            f'junction="{jid}">{link}{pv}{lanes}</road>'
        )
        connections.setdefault(jid, []).append(
            f'<connection id="{len(connections[jid])}" incomingRoad="{road_id[src.road]}" '
            f'connectingRoad="{conn_id[ln.id]}" contactPoint="start"><laneLink from="{src_id}" to="-1"/></connection>'
        )
    junctions = [f'<junction id="{jid}" name="junction{jid}">{"".join(c)}</junction>' for jid, c in connections.items()]
    return _document(name, roads_xml, junctions)


def _document(name: str, roads: list[str], junctions: list[str]) -> str:
    head = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<OpenDRIVE>\n<header revMajor="1" revMinor="4" '
        f'name={quoteattr(name)} version="1" vendor="laneloop"/>\n'
    )
    return head + "\n".join(roads + junctions) + "\n</OpenDRIVE>\n"


def export_town(name: str) -> str:
    """OpenDRIVE text of a procedural town by name (e.g. 'Town03')."""
    town = load_town(name)
    return export_network(town.network, town.recipe, name)
