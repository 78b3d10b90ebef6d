"""Lane-boundary labels from the simulator (sim/lane_instances.py) and their way through a dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from sim import tags
from sim.camera import world_to_optical
from sim.embedded.roadnet import Marking
from sim.lane_instances import frame_lanes, frame_rows
from sim.types import CameraSpec


def _straight_net(ys: list[float], kind: str = "dashed") -> SimpleNamespace:
    xs = np.arange(-20.0, 200.0, 1.0)
    marks = [Marking(np.stack([xs, np.full_like(xs, y)], 1), kind) for y in ys]
    return SimpleNamespace(markings=marks)


def _closed_form_x(spec: CameraSpec, lateral: float, row: float) -> float:
    """x of a straight ground line at `lateral` m (left +) along the ego's heading, at image `row`."""
    p = math.radians(spec.pitch_deg)
    cp, sp = math.cos(p), math.sin(p)
    t = (row - spec.height / 2) / spec.focal
    a = spec.z * (cp + t * sp) / (t * cp - sp)  # forward distance from the camera
    return spec.width / 2 - spec.focal * lateral / (a * cp - spec.z * sp)


def test_straight_road_matches_closed_form_projection() -> None:
    spec = CameraSpec(width=320, height=160, fov_deg=90, z=1.6, pitch_deg=-10.0)
    net = _straight_net([1.75, -1.75, 5.25], kind="dashed")
    fl = frame_lanes(net, 0.0, 0.0, 0.0, spec, range_m=80.0)
    assert len(fl.xs) == 3
    assert np.allclose(fl.rows, np.arange(160, 711, 10) * 160 / 720)
    lefts = {5.25: fl.xs[0], 1.75: fl.xs[1], -1.75: fl.xs[2]}  # sorted left to right at the bottom
    n_checked = 0
    for lateral, xs in lefts.items():
        for row, x in zip(fl.rows, xs, strict=True):
            if np.isfinite(x):
                assert x == pytest.approx(_closed_form_x(spec, lateral, row), abs=1e-6)
                n_checked += 1
    assert n_checked > 50
    # the far end: 80 m ahead of the camera ends the labels below the horizon row
    horizon = spec.height / 2 + spec.focal * math.tan(math.radians(spec.pitch_deg))
    top = min(r for r, x in zip(fl.rows, fl.xs[1], strict=True) if np.isfinite(x))
    assert top > horizon + 1
    # TuSimple form: -2 where absent, same length as the rows
    ts = fl.to_tusimple()
    assert all(len(x) == len(fl.rows) for x in ts) and -2.0 in ts[0]


def test_cross_streets_and_double_lines() -> None:
    spec = CameraSpec()
    xs = np.arange(-20.0, 100.0, 1.0)
    cross = Marking(np.stack([np.full_like(xs, 30.0), xs], 1), "solid")  # perpendicular: not a lane
    net = _straight_net([0.15, -0.15], kind="solid")
    net.markings.append(cross)
    net.markings.append(Marking(np.array([[5.0, 1.0], [5.0, 1.0]]), "solid"))  # zero length (OpenDRIVE has some)
    fl = frame_lanes(net, 0.0, 0.0, 0.0, spec)
    assert fl.kinds == ("double",)  # the pair is one boundary, at their middle
    ok = np.isfinite(fl.xs[0])
    assert np.allclose(fl.xs[0][ok], spec.width / 2, atol=1e-6)


def test_pose_matches_the_renderer() -> None:
    from sim.embedded.render import CameraRenderer
    from sim.embedded.town import load_town

    spec = CameraSpec(x=0.7, y=0.2, pitch_deg=-12.0, yaw_deg=3.0)
    r = CameraRenderer(spec, load_town("Town02").ground)
    for pose in [(1.0, 2.0, 0.3), (-40.0, 7.5, -2.9)]:
        a, b = r.pose(*pose), world_to_optical(spec, *pose)
        assert np.allclose(a[0], b[0]) and np.allclose(a[1], b[1])


def test_painted_boundaries_lie_on_roadline_pixels() -> None:
    """Frames of Town03: solid lines' rows hit RoadLine within 1 px; dashed ones only at dashes."""
    from scenarios.schema import load_scenario
    from sim.embedded.backend import EmbeddedBackend

    b = EmbeddedBackend()
    obs = b.reset(load_scenario("town03_clear"), seed=3)
    hit: dict[str, list[int]] = {}
    for i in range(60):
        obs = b.step(None)
        if i % 15:
            continue
        cam, e = obs.camera, obs.ego
        fl = frame_lanes(b.town.network, e.x, e.y, e.yaw, cam.spec, cam.labels)
        assert len(fl.xs) >= 2
        for xs, kind in zip(fl.xs, fl.kinds, strict=True):
            for row, x in zip(fl.rows, xs, strict=True):
                if not np.isfinite(x):
                    continue
                r, c = int(round(row)), int(round(x))
                win = cam.labels[r, max(c - 1, 0) : c + 2]
                if np.isin(win, (tags.CAR, tags.TRUCK, tags.BUS)).any():
                    continue  # behind a car: the label goes on, the paint is hidden
                hit.setdefault(kind, []).append(int((win == tags.ROAD_LINE).any()))
    b.close()
    assert np.mean(hit["solid"]) >= 0.85
    assert 0.15 <= np.mean(hit["dashed"]) <= 0.7  # drawn through the gaps: dashes are 3 m of 9


def test_recording_with_lanes_scores_like_tusimple(tmp_path: Path) -> None:
    """record --lane-labels -> validator -> evaluate --metrics real on the thin-label decoder check."""
    from collect.real_lanes import LabelLanes
    from collect.record import main as record_main
    from dataset.format import read_index, read_manifest
    from dataset.reader import LaneDataset
    from dataset.validate import validate
    from dataset.writer import DatasetWriter
    from train.real_metrics import score_set, thin_labels

    out = tmp_path / "d"
    rc = record_main(
        ["--town", "Town01", "--frames", "4", "--episodes", "1", "--split", "train=0,val=0,test=1",
         "--lane-labels", "--out", str(out), "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    assert validate(out).ok
    m = read_manifest(out)
    assert m.lane_instances["format"] == "tusimple"
    assert np.allclose(m.lane_instances["h_samples"], frame_rows(m.height))
    rows = read_index(out)
    assert all(len(json.loads(r["lanes"])) >= 1 for r in rows)
    DatasetWriter.open(out).close()  # a resume keeps the lanes of the frames it keeps
    assert [r["lanes"] for r in read_index(out)] == [r["lanes"] for r in rows]
    labels = LabelLanes(m, out)
    assert labels[rows[0]["id"]].size == (m.height, m.width)
    ds = LaneDataset([out], split="test", size=(m.height, m.width))
    r = score_set(ds, thin_labels)
    assert r["tusimple"]["accuracy"] > 0.95 and r["tusimple"]["fn"] < 0.05
    # a broken lanes column is a defect, not a crash
    import pyarrow.parquet as pq

    t = pq.read_table(out / "index.parquet")
    t = t.set_column(t.column_names.index("lanes"), "lanes", [["[[1.0]]"] * len(t)])
    pq.write_table(t, out / "index.parquet")
    assert any("lanes is not a list" in d for d in validate(out).defects)


def test_lane_labels_need_the_embedded_backend() -> None:
    from collect.record import plan_recording
    from scenarios.schema import load_scenario

    with pytest.raises(ValueError, match="embedded backend"):
        plan_recording(load_scenario("town03_clear"), backend="carla", frames=2, lane_labels=True)
    assert plan_recording(load_scenario("town03_clear"), frames=2).lane_instances is None


def test_the_boundaries_target_draws_the_lanes_through_the_gaps(tmp_path: Path) -> None:
    """`--target boundaries`: the lane boundaries as targets, stored in the checkpoint's task,
    and the same target again where the checkpoint is evaluated."""
    from collect.record import main as record_main
    from dataset.format import DatasetError
    from dataset.reader import LaneDataset, dataset_for
    from perception.checkpoint import load_checkpoint
    from perception.metadata import Task
    from train import train as train_mod

    out = tmp_path / "d"
    args = ["--town", "Town01", "--episodes", "2", "--episode-frames", "3", "--every", "4", "--width", "128"]
    args += ["--height", "64", "--split", "train=0.5,val=0.5,test=0", "--lane-labels", "--out", str(out)]
    assert record_main([*args, "--no-progress"]) == 0
    paint = LaneDataset([out], split="train")
    lines = LaneDataset([out], split="train", target="boundaries")
    assert lines.task_dict == {"kind": "binary", "tags": [24], "target": "boundaries"}
    assert paint.task_dict == {"kind": "binary", "tags": [24]}  # what paint models always stored
    painted = drawn = covered = on_paint = 0
    for i in range(len(paint)):
        p, b = paint[i][1].numpy()[0] > 0, lines[i][1].numpy()[0] > 0
        near = cv2.dilate(b.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # within 2 px of a boundary
        painted, covered = painted + p.sum(), covered + (p & near).sum()
        drawn, on_paint = drawn + b.sum(), on_paint + (b & p).sum()
    assert covered >= 0.8 * painted  # the paint lies on the boundaries ...
    assert drawn >= 1.5 * on_paint  # ... which run on through the dash gaps and behind cars
    with pytest.raises(DatasetError, match="binary RoadLine"):
        LaneDataset([out], split="train", tags=[1, 24], target="boundaries")
    plain = tmp_path / "plain"
    assert record_main([a for a in args if a != "--lane-labels"][:-1] + [str(plain), "--no-progress"]) == 0
    with pytest.raises(DatasetError, match="--lane-labels"):
        LaneDataset([plain], split="train", target="boundaries")
    with pytest.raises(ValueError, match="boundaries target"):
        Task("multiclass", (1, 24), "boundaries")
    assert Task.from_dict(Task("binary", (24,), "boundaries").to_dict()).target == "boundaries"

    run = tmp_path / "run"
    tiny = ["--epochs", "1", "--batch-size", "2", "--arch-kwargs", '{"base_width": 4, "depth": 2}', "--threads", "1"]
    rc = train_mod.main(["--data", str(out), "--out", str(run), "--target", "boundaries", "--no-progress", *tiny])
    assert rc == 0
    _, meta = load_checkpoint(run / "best.pth")
    assert meta.task.target == "boundaries"
    assert dataset_for(meta, [out], "val").target == "boundaries"  # evaluation scores what it learnt
