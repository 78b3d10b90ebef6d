"""Small OpenDRIVE documents written by the tests: one per geometry, mark, a T and an X junction."""

from __future__ import annotations

import math

HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n<OpenDRIVE>\n<header revMajor="1" revMinor="4" name="t"/>\n'


def doc(*parts: str) -> str:
    return HEADER + "\n".join(parts) + "\n</OpenDRIVE>\n"


def mark(kind: str = "none", color: str = "standard", width: float = 0.15, s: float = 0.0, inner: str = "") -> str:
    body = f"<type name='x' width='{width}'>{inner}</type>" if inner else ""
    return f'<roadMark sOffset="{s}" type="{kind}" color="{color}" width="{width}">{body}</roadMark>'


def lane(lid: int, width: float = 3.5, kind: str = "driving", marks: str = "", link: str = "") -> str:
    return (
        f'<lane id="{lid}" type="{kind}" level="false">{link}'
        f'<width sOffset="0" a="{width}" b="0" c="0" d="0"/>{marks or mark()}</lane>'
    )


def road(
    rid: int,
    length: float,
    geometry: str,
    left: str = "",
    right: str = "",
    center_mark: str = "",
    link: str = "",
    junction: int = -1,
    offset: float = 0.0,
) -> str:
    lanes = f'<laneOffset s="0" a="{offset}" b="0" c="0" d="0"/><laneSection s="0">'
    if left:
        lanes += f"<left>{left}</left>"
    lanes += f'<center><lane id="0" type="none" level="false">{center_mark or mark()}</lane></center>'
    if right:
        lanes += f"<right>{right}</right>"
    lanes += "</laneSection>"
    return (
        f'<road name="r{rid}" length="{length}" id="{rid}" junction="{junction}">'
        f"<link>{link}</link><planView>{geometry}</planView><lanes>{lanes}</lanes></road>"
    )


def geom(s: float, x: float, y: float, hdg: float, length: float, body: str) -> str:
    return f'<geometry s="{s}" x="{x}" y="{y}" hdg="{hdg}" length="{length}">{body}</geometry>'


def two_way(rid: int, length: float, geometry: str, link: str = "") -> str:
    """A road with one driving lane each way, white edge lines and a dashed yellow centre."""
    edge = mark("solid", "white", 0.15)
    return road(
        rid,
        length,
        geometry,
        left=lane(1, marks=edge),
        right=lane(-1, marks=edge),
        center_mark=mark("broken", "yellow"),
        link=link,
    )


# -- one road per geometry type ---------------------------------------------------------------
def _param_length(bu: float, cv: float, dv: float) -> float:
    """True length of u = bu p, v = cv p^2 + dv p^3 for p in 0..1 (a fine trapezoid sum)."""
    p = [i / 200000 for i in range(200001)]
    f = [math.hypot(bu, 2 * cv * t + 3 * dv * t * t) for t in p]
    return sum((a + b) / 2 for a, b in zip(f[:-1], f[1:], strict=True)) / 200000


PP3_LENGTH = round(_param_length(38.0, 6.0, -2.0), 9)
GEOMETRIES = {
    "line": geom(0, 0, 0, 0.3, 40, "<line/>"),
    "arc": geom(0, 0, 0, 0.0, 40, '<arc curvature="0.04"/>'),
    "spiral": geom(0, 0, 0, 0.0, 40, '<spiral curvStart="0.0" curvEnd="0.05"/>'),
    "poly3": geom(0, 0, 0, 0.2, 40, '<poly3 a="0" b="0" c="0.004" d="-0.00005"/>'),
    "paramPoly3": geom(
        0,
        0,
        0,
        0.0,
        PP3_LENGTH,
        '<paramPoly3 aU="0" bU="38" cU="0" dU="0" aV="0" bV="0" cV="6" dV="-2" pRange="normalized"/>',
    ),
    "paramPoly3_arclength": geom(
        0, 5, 5, 1.0, 30, '<paramPoly3 aU="0" bU="1" cU="0" dU="0" aV="0" bV="0" cV="0.01" dV="0" pRange="arcLength"/>'
    ),
}


def chain_of_geometries() -> str:
    """One road whose reference line runs through every geometry type in turn (continuous)."""
    import numpy as np

    from sim.maps.opendrive import Geometry
    from sim.maps.refline import _geometry_eval

    parts = [
        ("line", {}, 20.0),
        ("spiral", {"curvStart": 0.0, "curvEnd": 0.04}, 25.0),
        ("arc", {"curvature": 0.04}, 20.0),
        ("spiral", {"curvStart": 0.04, "curvEnd": -0.02}, 30.0),
        ("poly3", {"a": 0.0, "b": 0.0, "c": 0.002, "d": 0.0}, 25.0),
        (
            "paramPoly3",
            {"aU": 0.0, "bU": 30.0, "cU": 0.0, "dU": 0.0, "aV": 0.0, "bV": 0.0, "cV": -3.0, "dV": 1.0},
            30.0,
        ),
    ]
    x = y = h = s = 0.0
    xml = []
    for kind, params, length in parts:
        g = Geometry(s, x, y, h, length, kind, params)
        attrs = " ".join(f'{k}="{v}"' for k, v in params.items())
        if kind == "paramPoly3":
            attrs += ' pRange="normalized"'
        xml.append(geom(s, x, y, h, length, f"<{kind} {attrs}/>"))
        gx, gy, gh = _geometry_eval(g, np.array([length]))
        x, y, h, s = float(gx[0]), float(gy[0]), float(gh[0]), s + length
    edge = mark("solid", "white")
    return doc(
        road(
            1,
            s,
            "".join(xml),
            left=lane(1, marks=edge),
            right=lane(-1, marks=edge) + lane(-2, 2.0, "sidewalk"),
            center_mark=mark("solid solid", "yellow"),
        )
    )


MARK_TYPES = [
    "solid",
    "broken",
    "solid solid",
    "solid broken",
    "broken solid",
    "broken broken",
    "botts dots",
    "curb",
    "none",
]


def marks_road() -> str:
    """A straight 60 m road with one right lane per mark type, each lane's outer border so marked."""
    right = "".join(
        lane(-(i + 1), 3.0, marks=mark(k, "yellow" if i % 2 else "white", 0.15)) for i, k in enumerate(MARK_TYPES)
    )
    explicit = mark(
        "broken", "white", 0.12, inner='<line length="1.0" space="1.0" tOffset="0" sOffset="0" width="0.12"/>'
    )
    return doc(road(1, 60.0, geom(0, 0, 0, 0, 60, "<line/>"), left=lane(1, 3.0, marks=explicit), right=right))


# -- a T junction ------------------------------------------------------------------------------
def t_junction(missing_road: bool = False) -> str:
    """Arms west (1), east (2) and north (3) of a junction (1000) with six connecting roads.

    Each connecting road's reference line is its lane's centre (laneOffset 1.75 for its lane -1).
    """
    r1 = two_way(1, 50, geom(0, -60, 0, 0, 50, "<line/>"), '<successor elementType="junction" elementId="1000"/>')
    r2 = two_way(2, 50, geom(0, 10, 0, 0, 50, "<line/>"), '<predecessor elementType="junction" elementId="1000"/>')
    r3 = two_way(
        3, 50, geom(0, 0, 10, math.pi / 2, 50, "<line/>"), '<predecessor elementType="junction" elementId="1000"/>'
    )
    big, small = 11.75, 8.25
    moves = [  # id, from road, its contact, to road, its contact, geometry
        (100, 1, "end", 2, "start", geom(0, -10, -1.75, 0, 20, "<line/>")),
        (101, 2, "start", 1, "end", geom(0, 10, 1.75, math.pi, 20, "<line/>")),
        (102, 1, "end", 3, "start", geom(0, -10, -1.75, 0, math.pi / 2 * big, f'<arc curvature="{1 / big}"/>')),
        (
            103,
            3,
            "start",
            1,
            "end",
            geom(0, -1.75, 10, -math.pi / 2, math.pi / 2 * small, f'<arc curvature="{-1 / small}"/>'),
        ),
        (
            104,
            2,
            "start",
            3,
            "start",
            geom(0, 10, 1.75, math.pi, math.pi / 2 * small, f'<arc curvature="{-1 / small}"/>'),
        ),
        (
            105,
            3,
            "start",
            2,
            "start",
            geom(0, -1.75, 10, -math.pi / 2, math.pi / 2 * big, f'<arc curvature="{1 / big}"/>'),
        ),
    ]
    lane_from = {(1, "end"): -1, (2, "start"): 1, (3, "start"): 1}
    lane_to = {(2, "start"): -1, (1, "end"): 1, (3, "start"): -1}
    roads, conns = [r1, r2, r3], []
    for cid, fr, fc, to, tc, g in moves:
        length = 20.0 if cid < 102 else math.pi / 2 * (big if cid in (102, 105) else small)
        link = (
            f'<predecessor elementType="road" elementId="{fr}" contactPoint="{fc}"/>'
            f'<successor elementType="road" elementId="{to}" contactPoint="{tc}"/>'
        )
        ln = lane(
            -1, link=f'<link><predecessor id="{lane_from[(fr, fc)]}"/><successor id="{lane_to[(to, tc)]}"/></link>'
        )
        roads.append(road(cid, length, g, right=ln, link=link, junction=1000, offset=1.75))
        incoming = 9999 if (missing_road and cid == 103) else fr
        conns.append(
            f'<connection id="{cid - 100}" incomingRoad="{incoming}" connectingRoad="{cid}" '
            f'contactPoint="start"><laneLink from="{lane_from[(fr, fc)]}" to="-1"/></connection>'
        )
    junction = '<junction id="1000" name="T">\n' + "\n".join(conns) + "\n</junction>"
    return doc(*roads, junction)


# -- an X junction -----------------------------------------------------------------------------
def x_junction() -> str:
    """Four arms (1 east, 2 north, 3 west, 4 south) that all start at a junction (2000), 12 moves.

    Arm k points away from the centre at angle k*90 deg; its lane 1 comes in, lane -1 goes out.
    Straight moves are 20 m lines, left turns 11.75 m arcs, right turns 8.25 m arcs.
    """
    big, small, half = 11.75, 8.25, 1.75
    arms, conns = [], []
    for k in range(4):
        t = k * math.pi / 2
        x, y = round(10 * math.cos(t), 9), round(10 * math.sin(t), 9)
        arms.append(
            two_way(
                k + 1, 50, geom(0, x, y, t, 50, "<line/>"), '<predecessor elementType="junction" elementId="2000"/>'
            )
        )
    cid = 200
    for a in range(4):
        ta = a * math.pi / 2
        start = (10 * math.cos(ta) - half * math.sin(ta), 10 * math.sin(ta) + half * math.cos(ta))
        for b in range(4):
            if a == b:
                continue
            turn = (b - a - 2) % 4  # 0 straight, 1 left, 3 right
            if turn == 0:
                length, body = 20.0, "<line/>"
            elif turn == 1:
                length, body = math.pi / 2 * big, f'<arc curvature="{1 / big}"/>'
            else:
                length, body = math.pi / 2 * small, f'<arc curvature="{-1 / small}"/>'
            link = (
                f'<predecessor elementType="road" elementId="{a + 1}" contactPoint="start"/>'
                f'<successor elementType="road" elementId="{b + 1}" contactPoint="start"/>'
            )
            ln = lane(-1, link='<link><predecessor id="1"/><successor id="-1"/></link>')
            g = geom(0, round(start[0], 9), round(start[1], 9), ta + math.pi, length, body)
            arms.append(road(cid, length, g, right=ln, link=link, junction=2000, offset=half))
            conns.append(
                f'<connection id="{cid - 200}" incomingRoad="{a + 1}" connectingRoad="{cid}" '
                f'contactPoint="start"><laneLink from="1" to="-1"/></connection>'
            )
            cid += 1
    junction = '<junction id="2000" name="X">\n' + "\n".join(conns) + "\n</junction>"
    return doc(*arms, junction)
