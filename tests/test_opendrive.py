"""OpenDRIVE reader and converter: geometry, marks, junctions, bad files, CARLA agreement, the sim on it."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xodr_samples as X

from scenarios import Scenario
from sim import make_backend, tags
from sim.backend import BackendError
from sim.maps.convert import MapMarking, build_map
from sim.maps.opendrive import OpenDriveError, parse
from sim.maps.paint import dashes, paint_map
from sim.maps.refline import reference_line
from sim.types import CameraSpec

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "opendrive"
TOWNS = ["Town01", "Town03", "Town10HD"]


def shared(town: str) -> Path:
    p = SHARED / f"{town}.xodr"
    if not p.is_file():
        pytest.skip(f"{p} absent (CARLA's towns are read from ../shared/data only)")
    return p


def carla_map(name: str, text: str):
    carla = pytest.importorskip("carla", reason="the carla extra is not installed")
    return carla.Map(name, text)


def polyline_distance(p: np.ndarray, line: np.ndarray) -> float:
    a, d = line[:-1], np.diff(line, axis=0)
    t = np.clip(((p - a) * d).sum(1) / np.maximum((d**2).sum(1), 1e-12), 0, 1)
    return float(np.sqrt((((a + t[:, None] * d) - p) ** 2).sum(1)).min())


def centre_errors(md, m, step: float = 0.5) -> np.ndarray:
    """Distance of every carla.Map driving waypoint (y negated) to our piece of the same lane."""
    out = []
    for w in m.generate_waypoints(step):
        key = (str(w.road_id), w.section_id, w.lane_id)
        assert key in md.pieces, f"carla has a driving lane we do not: {key}"
        loc = w.transform.location
        out.append(polyline_distance(np.array([loc.x, -loc.y]), md.pieces[key]))
    return np.array(out)


def carla_successors(m) -> dict:
    out: dict = {}
    for a, b in m.get_topology():
        ka, kb = (str(a.road_id), a.section_id, a.lane_id), (str(b.road_id), b.section_id, b.lane_id)
        if ka != kb:  # carla links a dead end to itself
            out.setdefault(ka, set()).add(kb)
    return out


# -- geometry against closed forms -------------------------------------------------------------
def one_road(kind: str):
    length = {"paramPoly3_arclength": 30.0, "paramPoly3": X.PP3_LENGTH}.get(kind, 40.0)
    return parse(X.doc(X.road(1, length, X.GEOMETRIES[kind], right=X.lane(-1)))).roads["1"]


def test_line_and_arc_are_exact():
    r = one_road("line")
    s = np.linspace(0, 40, 9)
    x, y, h = reference_line(r, s)
    assert np.allclose(x, s * math.cos(0.3)) and np.allclose(y, s * math.sin(0.3)) and np.allclose(h, 0.3)
    r = one_road("arc")
    x, y, h = reference_line(r, s)
    radius = 1 / 0.04  # centre at (0, 25): every point on the circle, heading = s / R
    assert np.allclose(np.hypot(x, y - radius), radius, atol=1e-9)
    assert np.allclose(h, s / radius)


def test_spiral_matches_fresnel_integrals():
    special = pytest.importorskip("scipy.special")
    r = one_road("spiral")
    s = np.linspace(0, 40, 17)
    x, y, h = reference_line(r, s)
    scale = math.sqrt(math.pi * 40 / 0.05)  # heading s^2 / (2 L / k): x = scale * C(s / scale), y = scale * S(..)
    sf, cf = special.fresnel(s / scale)
    xs, ys = scale * cf, scale * sf
    assert np.allclose(h, 0.05 * s**2 / (2 * 40))
    assert np.abs(x - xs).max() < 1e-4 and np.abs(y - ys).max() < 1e-4


def test_poly3_points_lie_on_the_cubic_and_s_is_arc_length():
    r = one_road("poly3")
    s = np.linspace(0, 40, 41)
    x, y, h = reference_line(r, s)
    c, sn = math.cos(0.2), math.sin(0.2)
    u, v = x * c + y * sn, -x * sn + y * c
    assert np.abs(v - (0.004 * u**2 - 0.00005 * u**3)).max() < 1e-6
    steps = np.hypot(np.diff(x), np.diff(y))
    assert np.allclose(steps, 1.0, atol=2e-4)  # equal arc-length steps (chords of a gentle curve)
    assert np.allclose(h, 0.2 + np.arctan(0.008 * u - 0.00015 * u**2), atol=1e-4)


@pytest.mark.parametrize("kind", ["paramPoly3", "paramPoly3_arclength"])
def test_param_poly3_follows_its_polynomials(kind):
    r = one_road(kind)
    g = r.geometries[0]
    p = g.params
    s = np.linspace(0, g.length, 31)
    x, y, _ = reference_line(r, s)
    c, sn = math.cos(g.hdg), math.sin(g.hdg)
    u, v = (x - g.x) * c + (y - g.y) * sn, -(x - g.x) * sn + (y - g.y) * c
    t = np.linspace(0, 1 if g.normalized else g.length, 20001)
    uu = p["aU"] + p["bU"] * t + p["cU"] * t**2 + p["dU"] * t**3
    vv = p["aV"] + p["bV"] * t + p["cV"] * t**2 + p["dV"] * t**3
    dense = np.stack([uu, vv], 1)
    assert max(polyline_distance(np.array([a, b]), dense) for a, b in zip(u, v, strict=True)) < 1e-3
    assert np.allclose(np.hypot(np.diff(x), np.diff(y)), g.length / 30, rtol=2e-3)


def test_every_geometry_type_agrees_with_carla():
    text = X.chain_of_geometries()
    md = build_map(parse(text))
    err = centre_errors(md, carla_map("chain", text), 0.25)
    assert len(err) > 500 and err.max() < 0.01, err.max()


# -- marks ------------------------------------------------------------------------------------
def test_each_mark_type_is_drawn_as_the_file_says():
    md = build_map(parse(X.marks_road()))
    lines = md.network.markings
    by_y: dict[float, list[MapMarking]] = {}
    for m in lines:
        by_y.setdefault(round(float(m.points[:, 1].mean()), 2), []).append(m)
    # The outer border of lane -(i+1) is at y = -3 (i+1); doubles are 0.15 m either side of it (as our towns draw them).
    expect = {
        "solid": 1,
        "broken": 1,
        "solid solid": 2,
        "solid broken": 2,
        "broken solid": 2,
        "broken broken": 2,
        "botts dots": 1,
        "curb": 0,
        "none": 0,
    }
    for i, kind in enumerate(X.MARK_TYPES):
        y = -3.0 * (i + 1)
        near = [m for m in lines if abs(float(m.points[:, 1].mean()) - y) < 0.2]
        assert len(near) == expect[kind], kind
        for m in near:
            assert m.color == ("yellow" if i % 2 else "white")
        if len(near) == 2:
            inner, outer = sorted(near, key=lambda m: -float(m.points[:, 1].mean()))  # right lanes: inside is +y
            assert float(inner.points[0, 1] - outer.points[0, 1]) == pytest.approx(0.30, abs=1e-6)
            want = kind.split()
            assert [inner.kind, outer.kind] == ["dashed" if k == "broken" else "solid" for k in want]
    curbs = [c for c in md.curbs if abs(float(c.points[:, 1].mean()) + 3.0 * (X.MARK_TYPES.index("curb") + 1)) < 0.1]
    assert len(curbs) == 1
    explicit = [m for m in lines if abs(float(m.points[:, 1].mean()) - 3.0) < 0.1]
    assert len(explicit) == 1 and (explicit[0].dash, explicit[0].gap) == (1.0, 1.0)
    broken = next(m for m in lines if abs(float(m.points[:, 1].mean()) + 6.0) < 0.1)
    assert (broken.dash, broken.gap) == (3.0, 6.0) and len(dashes(broken.points, 3.0, 6.0)) == 7  # 60 m / 9 m


def test_marks_are_road_lines_and_curbs_are_not():
    md = build_map(parse(X.marks_road()))
    g = paint_map(md, 0.05, np.random.default_rng(0))
    solid_y = -3.0 * (X.MARK_TYPES.index("solid") + 1)
    curb_y = -3.0 * (X.MARK_TYPES.index("curb") + 1)
    broken_y = -3.0 * (X.MARK_TYPES.index("broken") + 1)
    xs = np.arange(1.0, 59.0, 0.5)
    assert all(g.tag_at(x, solid_y) == tags.ROAD_LINE for x in xs)
    assert all(g.tag_at(x, curb_y) == tags.SIDEWALK for x in xs)
    on = np.array([g.tag_at(x, broken_y) == tags.ROAD_LINE for x in xs])
    assert 0.25 < on.mean() < 0.42  # 3 m on, 6 m off
    assert g.tag_at(30.0, -1.5) == tags.ROAD


# -- a T junction ------------------------------------------------------------------------------
def test_t_junction_topology_surface_and_carla_agreement():
    text = X.t_junction()
    md = build_map(parse(text))
    succ = md.successors
    assert set(succ[("1", 0, -1)]) == {("100", 0, -1), ("102", 0, -1)}  # east: straight or left
    assert set(succ[("3", 0, 1)]) == {("103", 0, -1), ("105", 0, -1)}  # south: right or left
    assert set(succ[("104", 0, -1)]) == {("3", 0, -1)}
    for a, nexts in succ.items():
        for b in nexts:
            assert np.hypot(*(md.pieces[a][-1] - md.pieces[b][0])) < 1e-6
    g = paint_map(md, 0.1, np.random.default_rng(0))
    for x, y in [(0.0, 0.0), (-4.0, 4.0), (4.0, 4.0), (0.0, -2.0), (0.0, 5.0)]:
        assert g.tag_at(x, y) in (tags.ROAD, tags.ROAD_LINE), (x, y)
    assert g.tag_at(0.0, -12.0) == tags.TERRAIN  # nothing south of a T
    assert not md.network.lanes  # every lane ends at an arm's open end: nothing for traffic to loop on
    m = carla_map("T", text)
    assert centre_errors(md, m).max() < 0.01
    ours = {k: set(v) for k, v in succ.items() if v}
    assert ours == carla_successors(m)


def test_x_junction_every_arm_reaches_the_other_three_as_carla_says():
    text = X.x_junction()
    md = build_map(parse(text))
    succ = md.successors
    for arm in "1234":
        moves = succ[(arm, 0, 1)]
        assert len(moves) == 3  # straight, left, right
        ends = {succ[m][0] for m in moves}
        assert ends == {(b, 0, -1) for b in "1234" if b != arm}
    for a, nexts in succ.items():
        for b in nexts:
            assert np.hypot(*(md.pieces[a][-1] - md.pieces[b][0])) < 1e-6
    g = paint_map(md, 0.1, np.random.default_rng(0))
    for x, y in [(0.0, 0.0), (5.0, 5.0), (-5.0, -5.0), (5.0, -5.0), (-5.0, 5.0), (0.0, -12.0)]:
        assert g.tag_at(x, y) in (tags.ROAD, tags.ROAD_LINE), (x, y)
    assert g.tag_at(20.0, 20.0) == tags.TERRAIN
    m = carla_map("X", text)
    assert centre_errors(md, m).max() < 0.01
    assert {k: set(v) for k, v in succ.items() if v} == carla_successors(m)


def test_ground_tags_follow_the_material_bytes():
    """The renderer reads a ground pixel's tag from its material byte (raster.TAG_OF_BYTE)."""
    from sim.embedded.raster import TAG_OF_BYTE

    for text in (X.x_junction(), X.marks_road()):
        d = paint_map(build_map(parse(text)), 0.05, np.random.default_rng(1)).data
        assert np.array_equal(TAG_OF_BYTE[d[..., 1]], d[..., 0])


# -- bad files ---------------------------------------------------------------------------------
BAD = {
    "not_xml": ("<OpenDRIVE>\n<road id='1'\n", 2, "not XML"),
    "unknown_geometry": (
        X.doc(X.road(1, 10, X.geom(0, 0, 0, 0, 10, "<clothoid/>"), right=X.lane(-1))),
        4,
        "<clothoid> in road 1",
    ),
    "no_lanes": (
        X.doc(
            '<road id="7" length="10" junction="-1"><planView>'
            + X.geom(0, 0, 0, 0, 10, "<line/>")
            + "</planView><lanes></lanes></road>"
        ),
        4,
        "no lanes",
    ),
    "missing_road": (X.t_junction(missing_road=True), None, "incomingRoad='9999'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_give_one_line_naming_element_and_line(case, tmp_path):
    text, line, what = BAD[case]
    with pytest.raises(OpenDriveError) as e:
        parse(text, "bad.xodr")
    msg = str(e.value)
    assert "\n" not in msg and what in msg, msg
    got_line = int(msg.split(":")[1])
    if line is not None:
        assert got_line == line, msg
    else:
        assert text.splitlines()[got_line - 1].lstrip().startswith("<connection"), msg
    f = tmp_path / f"{case}.xodr"
    f.write_text(text)
    cp = subprocess.run([sys.executable, "-m", "sim.maps", "check", str(f)], cwd=ROOT, capture_output=True, text=True)
    assert cp.returncode == 1 and cp.stderr.startswith("error: ") and len(cp.stderr.strip().splitlines()) == 1
    assert cp.stdout == ""


def test_backend_refuses_a_bad_map_and_a_map_without_loops(tmp_path):
    f = tmp_path / "t.xodr"
    f.write_text(X.t_junction())
    for path in (f, tmp_path / "absent.xodr"):
        with make_backend("embedded") as sim, pytest.raises(BackendError) as e:
            sim.reset(Scenario(map=str(path), cameras=(CameraSpec(width=64, height=32),)))
        assert str(path) in str(e.value)


# -- CARLA's towns (shared data) ------------------------------------------------------------------
@pytest.mark.parametrize("town", TOWNS)
def test_lane_centres_and_topology_match_carla_on_the_shared_towns(town):
    p = shared(town)
    text = p.read_text()
    md = build_map(parse(text, str(p)))
    m = carla_map(town, text)
    err = centre_errors(md, m, 1.0)
    assert err.max() < 0.05, f"{town}: max centre error {err.max():.3f} m"
    ours = {k: set(v) for k, v in md.successors.items() if v}
    assert ours == carla_successors(m)
    assert md.dropped_links == 0 and len(md.network.lanes) > 100


@pytest.fixture(scope="module")
def town03_scenario():
    return Scenario(
        map=str(shared("Town03")), seed=4, npc_vehicles=16, frames=None, cameras=(CameraSpec(width=320, height=160),)
    )


def test_sim_on_town03_xodr_frames_have_road_lines_and_repeat(town03_scenario):
    def run():
        with make_backend("embedded") as sim:
            obs = [sim.reset(town03_scenario)] + [sim.step() for _ in range(40)]
        return obs

    a, b = run(), run()
    for oa, ob in zip(a, b, strict=True):
        assert np.array_equal(oa.camera.rgb, ob.camera.rgb) and np.array_equal(oa.camera.labels, ob.camera.labels)
    lines = [int((o.camera.labels == tags.ROAD_LINE).sum()) for o in a]
    assert min(lines[5:]) > 50, lines
    assert a[-1].town == "Town03.xodr"


def test_autopilot_and_traffic_stay_on_the_road_of_town03_xodr(town03_scenario):
    with make_backend("embedded") as sim:
        sim.reset(town03_scenario)
        ground = sim.town.ground
        worst, off_road = 0.0, 0
        for _ in range(1500):
            obs = sim.step(render=False)
            assert not obs.ego.collision
            worst = max(worst, abs(obs.ego.lateral_offset))
            for v in sim.traffic.vehicles:
                off_road += ground.tag_at(v.x, v.y) not in (tags.ROAD, tags.ROAD_LINE)
        assert obs.ego.distance > 400 and worst < 1.2 and off_road == 0, (obs.ego.distance, worst, off_road)


def test_traffic_on_town10hd_xodr_does_not_lock_up():
    """Short roads link Town10HD's junctions: cars must not enter one without room after it.

    Before the no-room rule, seed 2 locked up for good at 1.25 km (every car stopped).
    """
    sc = Scenario(
        map=str(shared("Town10HD")), seed=2, npc_vehicles=16, frames=None, cameras=(CameraSpec(width=64, height=32),)
    )
    with make_backend("embedded") as sim:
        obs = sim.reset(sc)
        collisions = 0
        for _ in range(9000):
            obs = sim.step(render=False)
            collisions += obs.ego.collision
        moving = sum(v.v > 0.3 for v in sim.traffic.vehicles)
    assert obs.ego.distance > 1800.0 and moving >= 8 and collisions == 0
