"""OpenDRIVE 1.4-1.6 reader: the file as plain dataclasses, checked, with line numbers in errors.

Our own small parser (expat through xml.etree's TreeBuilder), because the candidates either
need CARLA's large wheel or fail on CARLA's towns. It reads what the embedded world draws and
drives on: the plan view, lane offsets, lane sections with widths, road marks, links and
junctions. Elevation, superelevation, objects and signals are skipped (the world is flat).
Coordinates are OpenDRIVE's own (x east, y north, counter-clockwise headings), which is also
the embedded world's right-handed frame; CARLA's frame is (x, -y).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

GEOMETRY_KINDS = ("line", "arc", "spiral", "poly3", "paramPoly3")


class OpenDriveError(ValueError):
    """A file that cannot be used; the one-line message names the file, the line and the element."""


@dataclass
class Poly:
    """A cubic a + b*ds + c*ds^2 + d*ds^3, valid from `s` (absolute or relative, as its owner says)."""

    s: float
    a: float
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0


@dataclass
class Geometry:
    s: float
    x: float
    y: float
    hdg: float
    length: float
    kind: str  # one of GEOMETRY_KINDS
    params: dict[str, float] = field(default_factory=dict)
    normalized: bool = True  # paramPoly3: pRange normalized (p in 0..1) or arcLength (p in 0..length)
    line: int = 0


@dataclass
class MarkLine:
    """One line of a detailed <roadMark><type>: its dash pattern and lateral offset."""

    length: float
    space: float
    t_offset: float = 0.0
    s_offset: float = 0.0
    width: float | None = None


@dataclass
class RoadMark:
    s_offset: float  # from the start of the lane section
    type: str  # none, solid, broken, solid solid, solid broken, broken solid, broken broken, curb, ...
    color: str = "standard"
    width: float | None = None
    lane_change: str | None = None
    lines: list[MarkLine] = field(default_factory=list)


@dataclass
class Lane:
    id: int
    type: str
    widths: list[Poly] = field(default_factory=list)  # s relative to the section start
    borders: list[Poly] = field(default_factory=list)
    marks: list[RoadMark] = field(default_factory=list)
    predecessor: int | None = None
    successor: int | None = None
    line: int = 0


@dataclass
class LaneSection:
    s: float
    left: list[Lane]  # ids 1, 2, ... (inside out)
    center: Lane | None
    right: list[Lane]  # ids -1, -2, ... (inside out)
    line: int = 0

    def lanes(self) -> list[Lane]:
        return self.left + self.right


@dataclass
class RoadLink:
    element_type: str  # road | junction
    element_id: str
    contact_point: str | None = None  # start | end
    line: int = 0


@dataclass
class Road:
    id: str
    name: str
    length: float
    junction: str  # "-1" outside junctions
    geometries: list[Geometry]
    lane_offsets: list[Poly]  # absolute s
    sections: list[LaneSection]
    predecessor: RoadLink | None = None
    successor: RoadLink | None = None
    rule: str = "RHT"
    line: int = 0

    @property
    def in_junction(self) -> bool:
        return self.junction != "-1"

    def section_end(self, i: int) -> float:
        return self.sections[i + 1].s if i + 1 < len(self.sections) else self.length


@dataclass
class Connection:
    id: str
    incoming: str
    connecting: str
    contact_point: str
    lane_links: list[tuple[int, int]]
    line: int = 0


@dataclass
class Junction:
    id: str
    name: str
    connections: list[Connection]
    line: int = 0


@dataclass
class OpenDrive:
    rev: tuple[int, int]
    name: str
    roads: dict[str, Road]
    junctions: dict[str, Junction]
    source: str = "<string>"


# -- XML with line numbers --------------------------------------------------------------------
def _parse_xml(data: bytes, source: str) -> tuple[ET.Element, dict[int, int]]:
    tb = ET.TreeBuilder()
    lines: dict[int, int] = {}
    p = expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        lines[id(tb.start(tag, attrs))] = p.CurrentLineNumber

    p.StartElementHandler = start
    p.EndElementHandler = tb.end
    try:
        p.Parse(data, True)
        root = tb.close()
    except expat.ExpatError as e:
        raise OpenDriveError(f"{source}:{e.lineno}: not XML ({expat.ErrorString(e.code)})") from None
    except AssertionError:  # TreeBuilder on an empty document
        raise OpenDriveError(f"{source}:1: not XML (no element found)") from None
    return root, lines


class _Reader:
    def __init__(self, root: ET.Element, lines: dict[int, int], source: str):
        self.root, self.lines, self.source = root, lines, source

    def line(self, el: ET.Element) -> int:
        return self.lines.get(id(el), 0)

    def fail(self, el: ET.Element, what: str, where: str = "") -> OpenDriveError:
        """`file:line: <tag id=..> in <where>: what` (where: the road or junction it belongs to)."""
        name = f"<{el.tag} id={el.get('id')!r}>" if el.get("id") is not None else f"<{el.tag}>"
        if where:
            name += f" in {where}"
        return OpenDriveError(f"{self.source}:{self.line(el)}: {name}: {what}")

    def num(self, el: ET.Element, key: str, default: float | None = None, where: str = "") -> float:
        raw = el.get(key)
        if raw is None:
            if default is None:
                raise self.fail(el, f"missing attribute {key!r}", where)
            return default
        try:
            return float(raw)
        except ValueError:
            raise self.fail(el, f"attribute {key}={raw!r} is not a number", where) from None

    def integer(self, el: ET.Element, key: str, where: str = "") -> int:
        raw = el.get(key)
        try:
            return int(float(raw)) if raw is not None else int("x")
        except ValueError:
            raise self.fail(el, f"attribute {key}={raw!r} must be an integer", where) from None

    def poly(self, el: ET.Element, s_key: str, where: str) -> Poly:
        n = self.num
        return Poly(
            n(el, s_key, 0.0, where),
            n(el, "a", 0.0, where),
            n(el, "b", 0.0, where),
            n(el, "c", 0.0, where),
            n(el, "d", 0.0, where),
        )

    # -- elements ---------------------------------------------------------------------------
    def geometry(self, el: ET.Element, where: str) -> Geometry:
        n = self.num
        kids = [k for k in el if k.tag in GEOMETRY_KINDS or not k.tag.startswith("userData")]
        if not kids:
            raise self.fail(el, "no geometry type inside (expected one of: " + ", ".join(GEOMETRY_KINDS) + ")", where)
        k = kids[0]
        if k.tag not in GEOMETRY_KINDS:
            raise self.fail(k, f"unknown geometry type (expected one of: {', '.join(GEOMETRY_KINDS)})", where)
        g = Geometry(
            n(el, "s", where=where),
            n(el, "x", where=where),
            n(el, "y", where=where),
            n(el, "hdg", where=where),
            n(el, "length", where=where),
            k.tag,
            line=self.line(el),
        )
        if g.length < 0:
            raise self.fail(el, f"negative length {g.length}", where)
        if k.tag == "arc":
            g.params = {"curvature": n(k, "curvature", where=where)}
        elif k.tag == "spiral":
            g.params = {"curvStart": n(k, "curvStart", where=where), "curvEnd": n(k, "curvEnd", where=where)}
        elif k.tag == "poly3":
            g.params = {c: n(k, c, 0.0, where) for c in "abcd"}
        elif k.tag == "paramPoly3":
            g.params = {f"{c}{ax}": n(k, f"{c}{ax}", 0.0, where) for ax in "UV" for c in "abcd"}
            rng = k.get("pRange", "normalized")
            if rng not in ("normalized", "arcLength"):
                raise self.fail(k, f"pRange={rng!r} (expected normalized or arcLength)", where)
            g.normalized = rng == "normalized"
        return g

    def link(self, el: ET.Element | None, where: str) -> RoadLink | None:
        if el is None:
            return None
        kind = el.get("elementType", "road")
        if kind not in ("road", "junction"):
            raise self.fail(el, f"elementType={kind!r} (expected road or junction)", where)
        eid = el.get("elementId")
        if eid is None:
            raise self.fail(el, "missing attribute 'elementId'", where)
        cp = el.get("contactPoint")
        if cp not in (None, "start", "end"):
            raise self.fail(el, f"contactPoint={cp!r} (expected start or end)", where)
        return RoadLink(kind, eid, cp, self.line(el))

    def lane(self, el: ET.Element, where: str) -> Lane:
        lid = self.integer(el, "id", where)
        w = f"{where}, lane {lid}"
        lane = Lane(lid, el.get("type", "none"), line=self.line(el))
        lane.widths = sorted((self.poly(x, "sOffset", w) for x in el.findall("width")), key=lambda p: p.s)
        lane.borders = sorted((self.poly(x, "sOffset", w) for x in el.findall("border")), key=lambda p: p.s)
        for m in el.findall("roadMark"):
            width = m.get("width")
            mark = RoadMark(
                self.num(m, "sOffset", 0.0, w),
                m.get("type", "none").strip().lower(),
                (m.get("color") or "standard").lower(),
                self.num(m, "width", where=w) if width is not None else None,
                m.get("laneChange"),
            )
            t = m.find("type")
            for ln in t.findall("line") if t is not None else []:
                lw = ln.get("width")
                mark.lines.append(
                    MarkLine(
                        self.num(ln, "length", 0.0, w),
                        self.num(ln, "space", 0.0, w),
                        self.num(ln, "tOffset", 0.0, w),
                        self.num(ln, "sOffset", 0.0, w),
                        self.num(ln, "width", where=w) if lw is not None else None,
                    )
                )
            lane.marks.append(mark)
        lane.marks.sort(key=lambda m: m.s_offset)
        ln = el.find("link")
        if ln is not None:
            for tag in ("predecessor", "successor"):
                x = ln.find(tag)
                if x is not None:
                    setattr(lane, tag, self.integer(x, "id", w))
        return lane

    def section(self, el: ET.Element, where: str) -> LaneSection:
        s = self.num(el, "s", 0.0, where)
        sides = {}
        for side in ("left", "center", "right"):
            node = el.find(side)
            sides[side] = [self.lane(x, where) for x in node.findall("lane")] if node is not None else []
        for side, sign in (("left", 1), ("right", -1)):
            for lane in sides[side]:
                if lane.id * sign <= 0:
                    raise self.fail(el, f"lane {lane.id} is on the {side} side (left ids > 0, right < 0)", where)
        left = sorted(sides["left"], key=lambda x: x.id)
        right = sorted(sides["right"], key=lambda x: -x.id)
        for side_lanes in (left, right):
            ids = [abs(x.id) for x in side_lanes]
            if ids != list(range(1, len(ids) + 1)):
                raise self.fail(el, f"lane ids {ids} are not 1..n without gaps", where)
        center = sides["center"][0] if sides["center"] else None
        return LaneSection(s, left, center, right, self.line(el))

    def road(self, el: ET.Element) -> Road:
        rid = el.get("id")
        if rid is None:
            raise self.fail(el, "missing attribute 'id'")
        where = f"road {rid}"
        pv = el.find("planView")
        geoms = [self.geometry(g, where) for g in pv.findall("geometry")] if pv is not None else []
        if not geoms:
            raise self.fail(el, "no <planView> geometry (a road needs a reference line)")
        geoms.sort(key=lambda g: g.s)
        lanes_el = el.find("lanes")
        sections = [self.section(x, where) for x in lanes_el.findall("laneSection")] if lanes_el is not None else []
        if not sections or not any(sec.lanes() for sec in sections):
            bad = lanes_el if lanes_el is not None else el
            raise self.fail(
                bad,
                "road with no lanes (needs a <laneSection> with a left or right lane)",
                where if bad is not el else "",
            )
        sections.sort(key=lambda x: x.s)
        offsets = sorted((self.poly(x, "s", where) for x in lanes_el.findall("laneOffset")), key=lambda p: p.s)
        link = el.find("link")
        length = self.num(el, "length", where=where)
        rule = el.get("rule", "RHT")
        if rule not in ("RHT", "LHT"):
            raise self.fail(el, f"rule={rule!r} (expected RHT or LHT)")
        return Road(
            rid,
            el.get("name", ""),
            length,
            el.get("junction", "-1"),
            geoms,
            offsets,
            sections,
            self.link(link.find("predecessor") if link is not None else None, where),
            self.link(link.find("successor") if link is not None else None, where),
            rule,
            self.line(el),
        )

    def junction(self, el: ET.Element) -> Junction:
        jid = el.get("id")
        if jid is None:
            raise self.fail(el, "missing attribute 'id'")
        conns = []
        for c in el.findall("connection"):
            missing = [k for k in ("incomingRoad", "connectingRoad") if c.get(k) is None]
            if missing:
                raise self.fail(c, f"missing attribute {missing[0]!r}", f"junction {jid}")
            cp = c.get("contactPoint", "start")
            if cp not in ("start", "end"):
                raise self.fail(c, f"contactPoint={cp!r} (expected start or end)", f"junction {jid}")
            links = [(self.integer(x, "from"), self.integer(x, "to")) for x in c.findall("laneLink")]
            conns.append(
                Connection(
                    c.get("id", str(len(conns))),
                    c.get("incomingRoad"),
                    c.get("connectingRoad"),
                    cp,
                    links,
                    self.line(c),
                )
            )
        return Junction(jid, el.get("name", ""), conns, self.line(el))

    def check_references(self, doc: OpenDrive, road_els: dict[str, ET.Element]) -> None:
        for j in doc.junctions.values():
            for c in j.connections:
                for key, rid in (("incomingRoad", c.incoming), ("connectingRoad", c.connecting)):
                    if rid not in doc.roads:
                        raise OpenDriveError(
                            f"{self.source}:{c.line}: <connection id={c.id!r}> in junction "
                            f"{j.id}: {key}={rid!r} is not a road in the file"
                        )
        for r in doc.roads.values():
            if r.in_junction and r.junction not in doc.junctions:
                raise self.fail(road_els[r.id], f"junction={r.junction!r} is not a junction in the file")
            for link in (r.predecessor, r.successor):
                if link is None:
                    continue
                table = doc.roads if link.element_type == "road" else doc.junctions
                if link.element_id not in table:
                    raise OpenDriveError(
                        f"{self.source}:{link.line}: <{'successor' if link is r.successor else 'predecessor'}> "
                        f"in road {r.id}: "
                        f"{link.element_type} {link.element_id!r} is not in the file"
                    )


def parse(data: str | bytes, source: str = "<string>") -> OpenDrive:
    """Parse and check an OpenDRIVE document; raises OpenDriveError with a one-line message."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    root, lines = _parse_xml(raw, source)
    rd = _Reader(root, lines, source)
    if root.tag != "OpenDRIVE":
        raise rd.fail(root, "not an OpenDRIVE file (the root element must be <OpenDRIVE>)")
    header = root.find("header")
    rev = (1, 4)
    name = ""
    if header is not None:
        rev = (int(rd.num(header, "revMajor", 1.0)), int(rd.num(header, "revMinor", 4.0)))
        name = header.get("name", "")
    roads: dict[str, Road] = {}
    road_els: dict[str, ET.Element] = {}
    for el in root.findall("road"):
        r = rd.road(el)
        if r.id in roads:
            raise rd.fail(el, "duplicate road id")
        roads[r.id], road_els[r.id] = r, el
    if not roads:
        raise rd.fail(root, "no <road> in the file")
    junctions: dict[str, Junction] = {}
    for el in root.findall("junction"):
        j = rd.junction(el)
        if j.id in junctions:
            raise rd.fail(el, "duplicate junction id")
        junctions[j.id] = j
    doc = OpenDrive(rev, name, roads, junctions, source)
    rd.check_references(doc, road_els)
    return doc


def read(path: str | Path) -> OpenDrive:
    """Read an .xodr file (errors name the file by its path)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise OpenDriveError(f"{p}: cannot read ({e.strerror or e})") from None
    return parse(data, str(p))
