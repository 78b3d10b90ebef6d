"""Route files (one-line errors), the plan on the lane graph, the tracker, the public route set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.drive.plan import RoutePlan, RouteTracker, Segment, plan_route
from harness.drive.route import RouteError, load_route, load_routes, route_from_dict

REPO = Path(__file__).resolve().parents[1]


def test_route_file_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text(
        'town = "Town04"\nstart = 2\nlength_m = 500\nroad = "highway"\nweather = ["ClearNight", "WetNight"]\n'
        "traffic = 7\nseed = 9\n[speed_limit_kmh]\nhighway = 120\n"
    )
    r = load_route(f)
    assert r.name == "r" and r.town == "Town04" and r.start == 2 and r.length_m == 500.0
    assert r.speed_limit_kmh == 120.0 and r.speed_limit == pytest.approx(120 / 3.6)
    sc = r.scenario()
    assert sc.target_speed == pytest.approx(120 / 3.6) and sc.npc_vehicles == 7 and sc.ego_spawn == 2
    assert sc.frames is None and sc.metres is None and [w.name for w in sc.weathers] == ["ClearNight", "WetNight"]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"name": "x", "length_m": 10, "colour": 1}, "unknown key 'colour'"),
        ({"name": "x"}, "exactly one of 'end'"),
        ({"name": "x", "length_m": 10, "end": [1, 2]}, "exactly one of 'end'"),
        ({"name": "x", "length_m": -5}, "'length_m' must be a number > 0"),
        ({"name": "x", "length_m": 10, "road": "track"}, "unknown road type 'track'"),
        ({"name": "x", "length_m": 10, "waypoints": [[1, 2, 3]]}, "'waypoints[0]' must be a point"),
        ({"name": "x", "length_m": 10, "weather": "Sunny"}, "unknown preset 'Sunny'"),
        ({"name": "x", "length_m": 10, "town": "Town03", "map": "a.xodr"}, "exclude each other"),
        ({"name": "x", "length_m": 10, "start": -1}, "'start' must be an integer >= 0"),
        ({"name": "x", "length_m": 10, "speed_limit_kmh": {"highway": 500}}, "must be 5..200 km/h"),
    ],
)
def test_bad_routes_fail_in_one_line(data: dict, needle: str) -> None:
    with pytest.raises(RouteError) as e:
        route_from_dict(data, where="f.toml")
    msg = str(e.value)
    assert needle in msg and msg.startswith("f.toml: ") and "\n" not in msg


def test_bad_toml_and_missing_folder(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("town = \n")
    with pytest.raises(RouteError, match="not valid TOML"):
        load_route(f)
    with pytest.raises(RouteError, match="no such route file or folder"):
        load_routes(tmp_path / "nope")


def test_cli_bad_route_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.drive.__main__ import main

    (tmp_path / "r.toml").write_text('town = "Town03"\nlength_m = 100\nroad = "dirt"\n')
    assert main(["--model", "oracle", "--routes", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "unknown road type 'dirt'" in err[0]


def test_public_routes_load_and_plan() -> None:
    from sim.embedded.town import load_town

    routes = load_routes(REPO / "routes")
    names = {r.name for r in routes}
    assert names >= {"highway_curves", "highway_night_rain", "urban_dense_rain", "town03_night_turns"}
    assert all(r.speed_limit_kmh >= 90 for r in routes if r.road == "highway")
    for r in routes:
        if r.town == "Town04" or r.map:
            continue  # Town04: one closed lane per direction (test_plan_on_a_loop), a slow build; file maps: below
        plan = plan_route(load_town(r.town).network, r)
        assert plan.length_m == pytest.approx(r.length_m, abs=0.5)
        steps = np.linalg.norm(np.diff(plan.points, axis=0), axis=1)
        assert steps.max() < 3.0  # a continuous centre line (no jumps between lanes)


def test_plan_through_a_waypoint_takes_the_turn() -> None:
    from sim.embedded.town import load_town

    net = load_town("Town03").network
    r = route_from_dict({"name": "t", "town": "Town03", "start": 12, "waypoints": [[61.5, 122.4]], "length_m": 300})
    plan = plan_route(net, r)
    assert plan.lanes[:3] == [12, 84, 28]  # spawn lane, the left-turn connector, the road it leads to
    assert net.lanes[84].turn == "left"
    r2 = route_from_dict({"name": "t", "town": "Town03", "start": 12, "waypoints": [[1000.0, 1000.0]], "length_m": 300})
    with pytest.raises(RouteError, match=r"waypoints\[0\] .* more than 15 m from every lane"):
        plan_route(net, r2)
    with pytest.raises(RouteError, match="spawn points"):
        plan_route(net, route_from_dict({"name": "t", "start": 999, "length_m": 10}))


def test_tracker_progress_and_distance() -> None:
    pts = np.array([[x, 0.0] for x in range(0, 101)], float)  # a straight 100 m route along x
    plan = RoutePlan((Segment(0, 0.0, 100.0),), pts, pts[:, 0].copy())
    tr = RouteTracker(plan)
    assert tr.update(10.0, 2.0) == pytest.approx((10.0, 2.0))
    assert tr.update(12.5, -1.0) == pytest.approx((12.5, 1.0))
    # A point far ahead beyond the search window is not jumped to: progress stays near the last.
    along, dist = tr.update(90.0, 0.0)
    assert along < 60.0 and dist > 30.0


def test_plan_on_a_loop() -> None:
    """A route round a closed lane (the highway loop) wraps past the lane's start."""
    from types import SimpleNamespace

    from sim.embedded.geometry import Path as LanePath

    a = np.linspace(0.0, 2 * np.pi, 629)[:-1]
    path = LanePath(np.c_[100.0 * np.cos(a), 100.0 * np.sin(a)], closed=True)
    lane = SimpleNamespace(id=0, path=path, road=0, successors=[0])
    net = SimpleNamespace(lanes=[lane], spawn_points=[(0, path.length - 30.0)])
    plan = plan_route(net, route_from_dict({"name": "loop", "length_m": 100}))
    assert plan.lanes == [0, 0]
    assert plan.segments[0].s1 == pytest.approx(path.length) and plan.segments[1].s1 == pytest.approx(70.0)
    assert plan.length_m == pytest.approx(100.0, abs=0.1)
    end = route_from_dict({"name": "loop", "end": [float(path.pose(20.0)[0]), float(path.pose(20.0)[1])]})
    assert plan_route(net, end).length_m == pytest.approx(50.0, abs=0.1)


def test_navigator_takes_the_planned_turn() -> None:
    """The embedded navigator, left to itself, would draw its turns at random; routed, it takes the plan's."""
    from harness.drive.navigate import RoutedBackend
    from sim.backend import make_backend

    r = route_from_dict({"name": "t", "town": "Town03", "start": 12, "waypoints": [[61.5, 122.4]], "length_m": 200})
    backend = RoutedBackend(make_backend("embedded"), r)
    try:
        backend.reset(r.scenario(), seed=2)  # unrouted, this seed turns right (lanes 85, 34)
        visited: list[int] = []
        for _ in range(500):
            lane = backend.inner.traffic.vehicles[0].lane
            if not visited or visited[-1] != lane:
                visited.append(lane)
            if lane == 28:
                break
            backend.step(None, render=False)
    finally:
        backend.close()
    assert visited == [12, 84, 28]


def test_the_sbend_map_is_the_generators_and_closes() -> None:
    """routes/maps/sbend_highway.xodr is what scripts/make_sbend_map.py writes: a loop that closes, halves far apart."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_sbend_map", REPO / "scripts" / "make_sbend_map.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text, clearance = mod.document()  # raises if the second half does not end where the first began
    assert clearance > 100.0
    assert text == (REPO / "routes" / "maps" / "sbend_highway.xodr").read_text()
    sbends = [r for r in load_routes(REPO / "routes") if r.map and r.map.endswith("sbend_highway.xodr")]
    assert {r.name for r in sbends} == {"sbend_highway", "sbend_night_rain"} and all(
        r.road == "highway" for r in sbends
    )
