"""The embedded renderer's looks: default untouched, real look seeded, labels exact, recorded per frame."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from collect import record as rec
from dataset.format import LOOK_COLUMN, read_index, read_manifest
from scenarios import Scenario, ScenarioError
from scenarios.schema import scenario_from_dict
from sim import make_backend, tags
from sim.embedded import raster as rmat
from sim.embedded.look import make_look
from sim.embedded.real_ground import real_ground
from sim.embedded.town import load_town
from sim.types import CameraSpec, Weather

CAM = CameraSpec(width=160, height=80)


def frames(sc: Scenario, steps: int = 12):
    with make_backend("embedded") as sim:
        out = [sim.reset(sc)]
        for _ in range(steps):
            out.append(sim.step())
        return out, sim.look_record()


def test_default_look_has_no_knobs_and_real_look_is_seeded():
    assert make_look("default", 3, False, CAM) is None
    a, b = make_look("real", 3, True, CAM), make_look("real", 3, True, CAM)
    assert a == b
    assert make_look("real", 4, True, CAM) != a
    assert make_look("real", 3, False, CAM).cam_fov_deg == CAM.fov_deg  # fixed look keeps the camera
    with pytest.raises(ValueError, match="unknown look 'film'"):
        make_look("film", 0, False, CAM)


def test_randomized_cameras_stay_in_sane_ranges():
    for seed in range(40):
        lk = make_look("real", seed, True, CAM)
        assert 48 <= lk.cam_fov_deg <= 95 and 1.25 <= lk.cam_z <= 2.1 and abs(lk.cam_yaw_deg) <= 3
        f = CAM.width / (2 * math.tan(math.radians(lk.cam_fov_deg) / 2))
        horizon = CAM.height / 2 + f * math.tan(math.radians(lk.cam_pitch_deg))
        assert 0.25 * CAM.height <= horizon <= 0.49 * CAM.height
        assert 0 <= lk.paint_wear <= 0.55 and 0.35 <= lk.paint_contrast <= 1


def test_real_ground_tags_follow_the_paint_left():
    town = load_town("Town01")
    lk = make_look("real", 0, False, CAM)
    lk = replace(lk, paint_wear=0.5)
    g = real_ground(town.ground, town.network, town.scenery, lk)
    tag, mat = g.data[..., 0], g.data[..., 1]
    assert np.array_equal(rmat.TAG_OF_BYTE[mat], tag)  # one material, one tag, everywhere
    paint_before = int((town.ground.data[..., 0] == tags.ROAD_LINE).sum())
    paint_after = int((tag == tags.ROAD_LINE).sum())
    assert 0.3 * paint_before < paint_after < 0.75 * paint_before  # about half the paint is worn off
    assert ((mat >> 4) == rmat.TAR).any() and ((mat >> 4) == rmat.TRACK).any()
    assert ((tag == tags.ROAD_LINE) <= (town.ground.data[..., 0] == tags.ROAD_LINE)).all()  # wear only removes


def test_repainted_dashes_keep_tags_and_materials_together():
    town = load_town("Town01")
    lk = replace(make_look("real", 0, False, CAM), paint_wear=0.0, dash_m=6.0, dash_period_m=18.0, paint_width_k=1.5)
    g = real_ground(town.ground, town.network, town.scenery, lk)
    assert np.array_equal(rmat.TAG_OF_BYTE[g.data[..., 1]], g.data[..., 0])
    before = int((town.ground.data[..., 0] == tags.ROAD_LINE).sum())
    assert int((g.data[..., 0] == tags.ROAD_LINE).sum()) > 1.2 * before  # wider lines, longer dashes


def test_real_look_is_deterministic_and_labels_only_lose_paint():
    base = Scenario(town="Town01", seed=4, cameras=(CAM,), npc_vehicles=6, weathers=(Weather.preset("ClearNoon"),))
    plain, knobs = frames(base)
    assert knobs is None
    real_a, rec_a = frames(replace(base, look="real"))
    real_b, _ = frames(replace(base, look="real"))
    for a, b in zip(real_a, real_b, strict=True):
        assert np.array_equal(a.camera.rgb, b.camera.rgb) and np.array_equal(a.camera.labels, b.camera.labels)
    assert rec_a["name"] == "real" and rec_a["seed"] == 4
    lane_real = sum(int((o.camera.labels == tags.ROAD_LINE).sum()) for o in real_a)
    assert lane_real > 0
    for p, r in zip(plain, real_a, strict=True):
        assert p.ego == r.ego  # the look never changes the drive
        assert ((r.camera.labels == tags.ROAD_LINE) <= (p.camera.labels == tags.ROAD_LINE)).all()
        assert not np.array_equal(p.camera.rgb, r.camera.rgb)


def test_scenario_look_keys_are_checked():
    sc = scenario_from_dict({"look": "real", "randomize": True})
    assert sc.look == "real" and sc.randomize
    with pytest.raises(ScenarioError, match="key 'look'"):
        scenario_from_dict({"look": "film"})


def test_record_stores_the_look_of_every_frame(tmp_path):
    out = tmp_path / "rec"
    args = ["--town", "Town01", "--look", "real", "--randomize", "--frames", "4", "--episodes", "2", "--width", "160"]
    args += ["--height", "80", "--out", str(out), "--no-progress", "--workers", "1"]
    assert rec.main(args) == 0
    rows = read_index(out)
    assert len(rows) == 4
    knobs = [json.loads(r[LOOK_COLUMN]) for r in rows]
    assert knobs[0] == knobs[1] and knobs[0] != knobs[-1]  # per episode, from its seed
    assert {"paint_wear", "cam_fov_deg", "jpeg_quality"} <= set(knobs[0])
    m = read_manifest(out)
    assert m.scenario["look"] == "real" and m.scenario["randomize"] is True


def test_record_rejects_a_look_for_carla(capsys):
    assert rec.main(["--backend", "carla", "--look", "real", "--out", "/nonexistent/x"]) == 1
    assert "embedded backend" in capsys.readouterr().err
