"""Scenario files: the shipped ones load, bad ones fail with one line naming the key."""

from __future__ import annotations

import pytest

from scenarios import ScenarioError, list_scenarios, load_scenario
from sim import tags


def write(tmp_path, text: str):
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


def test_shipped_scenarios_load():
    names = list_scenarios()
    assert {"town03_clear", "town03_night", "town10_rain", "highway_curves"} <= set(names)
    for name in names:
        sc = load_scenario(name)
        assert sc.name == name and sc.frames and sc.cameras


def test_weather_cycle_and_custom(tmp_path):
    sc = load_scenario(
        write(
            tmp_path,
            """
town = "Town01"
weather = ["ClearNoon", {name = "dusk", sun_altitude_angle = 5.0, fog_density = 20}]
weather_every = 10
metres = 500
[[camera]]
width = 64
height = 32
""",
        )
    )
    assert sc.weather_at(0).name == "ClearNoon" and sc.weather_at(10).name == "dusk"
    assert sc.weather_at(20).name == "ClearNoon"
    assert sc.frames is None and sc.is_done(0, 500.0) and not sc.is_done(10**6, 10.0)
    assert sc.cameras[0].width == 64


@pytest.mark.parametrize(
    "text, match",
    [
        ('twon = "Town03"', "unknown key 'twon'.*allowed: name, town"),
        ("seed = 'one'", "key 'seed' must be int, got str"),
        ("frames = true", "key 'frames' must be int"),
        ('weather = "Sunny"', "unknown preset 'Sunny'.*ClearNoon"),
        ("weather = [{sunshine = 3}]", "unknown weather parameter 'sunshine'"),
        ("[[camera]]\nzoom = 2", "unknown key 'camera.zoom'"),
        ("[[camera]]\nwidth = 4", "too small"),
        ("[ego]\nspawn = 'there'", "ego.spawn"),
        ("dt = 2.0", "key 'dt' must be between"),
        ("npc_vehicles = -1", "must be >= 0"),
        ("town = [", "not valid TOML"),
    ],
)
def test_bad_files_name_the_key(tmp_path, text, match):
    with pytest.raises(ScenarioError, match=match) as e:
        load_scenario(write(tmp_path, text))
    assert "\n" not in str(e.value)


def test_missing_scenario_lists_shipped_ones():
    with pytest.raises(ScenarioError, match="not found.*town03_clear"):
        load_scenario("nope")


def test_tag_table_and_legacy_remap():
    import numpy as np

    assert tags.ROAD_LINE == 24 and tags.NAMES[1] == "Road" and tags.PALETTE[24].tolist() == [157, 234, 50]
    legacy = np.array([[6, 7, 10]], np.uint8)
    assert tags.remap_legacy(legacy).tolist() == [[24, 1, 14]]
    assert tags.parse_tags("Road,24") == (1, 24)
    with pytest.raises(ValueError, match="unknown tag"):
        tags.parse_tags("Lane")
