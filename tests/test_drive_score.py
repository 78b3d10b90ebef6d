"""The driving score on constructed trajectories with known answers (no simulator)."""

from __future__ import annotations

import math

import pytest

from harness.drive.score import (
    PENALTIES,
    Infraction,
    Referee,
    Rules,
    Sample,
    Verdict,
    aggregate,
    driving_score,
    infraction_penalty,
    judge,
)

DT = 0.05


def straight(n: int, speed: float = 10.0, **kw: object) -> list[Sample]:
    """n ticks at `speed` along the route, centred in a 3.5 m lane."""
    return [Sample(t=i * DT, progress_m=i * DT * speed, speed=speed, **kw) for i in range(n)]


def test_clean_route_scores_100() -> None:
    v = judge(straight(300), length_m=100.0)
    assert v.end == "completed"
    assert v.completion == 100.0 and v.penalty == 1.0 and v.driving_score == 100.0
    assert v.counts() == dict.fromkeys(PENALTIES, 0)
    # Ends at the first tick within complete_within_m (3 m) of the end: 97 m at 10 m/s -> t = 9.7 s.
    assert v.duration_s == pytest.approx(9.7)


def test_vehicle_collision_ends_the_route_and_costs_060() -> None:
    samples = straight(300)
    samples[100] = Sample(t=100 * DT, progress_m=50.0, speed=10.0, collision="vehicle")
    v = judge(samples, length_m=100.0)
    assert v.end == "collision"
    assert v.completion == pytest.approx(50.0)
    assert v.penalty == pytest.approx(0.60)
    assert v.driving_score == pytest.approx(30.0)
    assert [e.kind for e in v.infractions] == ["collision_vehicle"]


def test_contacts_count_once_each_when_collisions_do_not_end() -> None:
    rules = Rules(end_on_collision=False)
    samples = straight(300)
    for i in (50, 51, 52, 120):  # two contacts: 50-52 and 120
        samples[i] = Sample(t=i * DT, progress_m=i * DT * 10.0, speed=10.0, collision="static")
    v = judge(samples, length_m=100.0, rules=rules)
    assert v.end == "completed"
    assert v.counts()["collision_static"] == 2
    assert v.penalty == pytest.approx(0.65**2)
    assert v.driving_score == pytest.approx(100.0 * 0.65**2)


def test_lane_departures_once_per_excursion_and_not_in_junctions() -> None:
    # 3.5 m lane, 1.95 m car, 0.30 m intrusion: out beyond |offset| > 0.775 + 0.30 = 1.075 m.
    offsets = [0.0] * 20 + [1.2] * 10 + [0.0] * 20 + [-1.1] * 5 + [0.0] * 20 + [1.05] * 10 + [0.0] * 200
    samples = [
        Sample(t=i * DT, progress_m=i * DT * 10.0, speed=10.0, lateral_offset=o, lane_width=3.5)
        for i, o in enumerate(offsets)
    ]
    # The same excursion inside a junction does not count.
    samples[5] = Sample(t=5 * DT, progress_m=2.5, speed=10.0, lateral_offset=3.0, lane_width=3.5, in_junction=True)
    v = judge(samples, length_m=100.0)
    assert v.counts()["lane_departure"] == 2  # +1.2 and -1.1; 1.05 stays inside the tolerance
    assert v.end == "completed" and v.completion == 100.0
    assert v.driving_score == pytest.approx(100.0 * 0.8 * 0.8)


def test_off_road_for_a_second_ends_the_route() -> None:
    samples = straight(300)
    for i in range(100, 300):
        samples[i] = Sample(t=i * DT, progress_m=50.0, speed=5.0, off_road=True)
    v = judge(samples, length_m=100.0)
    assert v.end == "off_road"
    # Off the road from the tick at t = 5.0 s; each tick counts its 0.05 s: 1 s is reached at the 20th, t = 5.95 s.
    assert v.duration_s == pytest.approx(5.95)
    assert v.completion == pytest.approx(50.0) and v.penalty == pytest.approx(0.70)


def test_route_deviation_ends_without_a_penalty() -> None:
    samples = [Sample(t=i * DT, progress_m=min(i * 0.5, 40.0), route_dist_m=max(0.0, i * 0.5 - 40.0), speed=10.0)
               for i in range(400)]  # fmt: skip
    v = judge(samples, length_m=100.0)
    assert v.end == "route_deviation"
    assert v.completion == pytest.approx(40.0) and v.penalty == 1.0 and v.driving_score == pytest.approx(40.0)
    # 20 m off at progress 40 -> i*0.5 - 40 > 20 first at i = 121
    assert v.duration_s == pytest.approx(121 * DT)


def test_blocked_after_30_s_below_half_a_metre_per_second() -> None:
    samples = [Sample(t=i * DT, progress_m=min(i * DT * 10.0, 25.0), speed=10.0 if i * DT < 2.5 else 0.0)
               for i in range(2000)]  # fmt: skip
    v = judge(samples, length_m=100.0)
    assert v.end == "agent_blocked"
    assert v.duration_s == pytest.approx(2.5 + 30.0 - DT)  # 600 ticks at a standstill, the first at 2.5 s
    assert v.completion == pytest.approx(25.0) and v.driving_score == pytest.approx(25.0)


def test_timeout_from_the_route_length() -> None:
    rules = Rules(timeout_base_s=10.0, timeout_speed=5.0, blocked_s=1e9)
    # 100 m allowed 10 + 100/5 = 30 s; the car crawls at 1 m/s and has done 30 m.
    samples = [Sample(t=i * DT, progress_m=i * DT * 1.0, speed=1.0) for i in range(1000)]
    v = judge(samples, length_m=100.0, rules=rules)
    assert v.end == "route_timeout"
    assert v.duration_s == pytest.approx(30.0)
    assert v.completion == pytest.approx(30.0)


def test_penalties_multiply() -> None:
    ev = [Infraction("collision_vehicle", 0, 0), Infraction("lane_departure", 1, 1), Infraction("off_road", 2, 2)]
    assert infraction_penalty(ev) == pytest.approx(0.60 * 0.80 * 0.70)
    assert infraction_penalty([]) == 1.0
    assert driving_score(80.0, 0.5) == 40.0


def test_progress_never_goes_back_and_is_capped_at_the_length() -> None:
    ref = Referee(100.0)
    ref.update(Sample(0.0, 40.0, speed=5.0))
    ref.update(Sample(0.05, 30.0, speed=5.0))
    assert ref.progress_m == 40.0
    assert ref.verdict("interrupted").completion == pytest.approx(40.0)
    assert judge([Sample(0.0, 150.0)], 100.0).completion == 100.0


def test_aggregate_means_over_routes_and_per_km() -> None:
    a = Verdict(1000.0, 1000.0, 100.0, 0.8, 80.0, "completed", 60.0, (Infraction("lane_departure", 1, 1),))
    b = Verdict(1000.0, 500.0, 50.0, 0.6, 30.0, "collision", 30.0, (Infraction("collision_vehicle", 1, 1),))
    agg = aggregate([a, b])
    assert agg["driving_score"] == pytest.approx(55.0)
    assert agg["route_completion"] == pytest.approx(75.0)
    assert agg["infraction_penalty"] == pytest.approx(0.7)
    assert agg["km"] == pytest.approx(1.5)
    assert agg["infractions"]["lane_departure"] == 1 and agg["infractions"]["collision_vehicle"] == 1
    assert agg["all_infractions_per_km"] == pytest.approx(2 / 1.5)
    assert agg["ends"] == {"completed": 1, "collision": 1}
    assert math.isnan(aggregate([])["driving_score"])


def test_a_collision_while_the_navigator_drives_is_counted_not_charged() -> None:
    samples = straight(300)
    for i in (100, 101):
        samples[i] = Sample(
            t=i * DT, progress_m=50.0, speed=10.0, collision="vehicle", in_junction=True, navigator=True
        )
    v = judge(samples, length_m=100.0)
    assert v.end == "completed" and v.driving_score == 100.0
    assert v.counts()["navigator_collision"] == 1 and v.counts()["collision_vehicle"] == 0
    assert aggregate([v])["all_infractions_per_km"] == 0.0
    strict = judge(samples, length_m=100.0, rules=Rules(blame_navigator=True))
    assert strict.end == "collision" and strict.driving_score == pytest.approx(50.0 * 0.6)
