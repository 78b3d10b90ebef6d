"""Real-frame lane metrics (perception.lane_metrics), the mask-to-lanes decoder
(perception.mask_lanes) and their use on imported TuSimple / CULane folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.lane_metrics import (
    TUSIMPLE_ROWS,
    CULaneScore,
    TolerantScore,
    TuSimpleScore,
    culane_frame,
    draw_lane,
    lane_x_at_rows,
    max_matching,
    tolerant_counts,
    tusimple_frame,
)
from perception.mask_lanes import LaneFitParams, mask_to_lanes, row_runs, scale_lanes

ROWS = np.asarray(TUSIMPLE_ROWS, dtype=np.float64)


def _vertical(h: int, w: int, cols: list[int], width: int = 1) -> np.ndarray:
    m = np.zeros((h, w), bool)
    for c in cols:
        m[:, c : c + width] = True
    return m


# ----------------------------------------------------------------------------- tolerant pixels


def test_tolerant_pixels_shifts_and_empty() -> None:
    label = _vertical(40, 80, [20, 50])
    perfect = tolerant_counts(label, label)
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)
    near = tolerant_counts(np.roll(label, 2, axis=1), label)  # 2 px off: within 3 px
    assert (near.precision, near.recall) == (1.0, 1.0)
    edge = tolerant_counts(np.roll(label, 3, axis=1), label)  # exactly 3 px: still counts
    assert edge.f1 == 1.0
    far = tolerant_counts(np.roll(label, 25, axis=1), label)
    assert (far.precision, far.recall, far.f1) == (0.0, 0.0, 0.0)
    # diagonal: (2, 2) is 2.83 px away, counts; (3, 3) is 4.24 px away, does not
    dot = np.zeros((20, 20), bool)
    dot[5, 5] = True
    assert tolerant_counts(np.roll(dot, (2, 2), axis=(0, 1)), dot).f1 == 1.0
    assert tolerant_counts(np.roll(dot, (3, 3), axis=(0, 1)), dot).f1 == 0.0

    half = tolerant_counts(_vertical(40, 80, [20]), label)  # one of two lanes: recall 1/2
    assert half.precision == 1.0 and half.recall == pytest.approx(0.5) and half.f1 == pytest.approx(2 / 3)
    none = np.zeros_like(label)
    empty_pred = tolerant_counts(none, label)
    assert math.isnan(empty_pred.precision) and empty_pred.recall == 0.0 and math.isnan(empty_pred.f1)
    empty_label = tolerant_counts(label, none)
    assert empty_label.precision == 0.0 and math.isnan(empty_label.recall)
    both = tolerant_counts(none, none)
    assert math.isnan(both.precision) and math.isnan(both.recall) and math.isnan(both.f1)


def test_tolerant_score_pools_pixels() -> None:
    label = _vertical(40, 80, [20])
    score = TolerantScore()
    score.update(label, label)  # 40 right of 40
    score.update(np.roll(label, 10, axis=1), label)  # 0 of 40
    r = score.compute()
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        tolerant_counts(label, label[:10])


# ----------------------------------------------------------------------------- TuSimple


def _ts_lanes() -> list[np.ndarray]:
    return [np.full(len(ROWS), 400.0), 900 - 0.5 * (ROWS - 160)]


def test_tusimple_perfect_shifted_missing_extra() -> None:
    gt = _ts_lanes()
    perfect = tusimple_frame(gt, gt, ROWS, 1280)
    assert (perfect.accuracy, perfect.fp, perfect.fn) == (1.0, 0.0, 0.0)
    near = tusimple_frame([x + 2 for x in gt], gt, ROWS, 1280)
    assert (near.accuracy, near.fp, near.fn) == (1.0, 0.0, 0.0)
    far = tusimple_frame([x + 25 for x in gt], gt, ROWS, 1280)
    assert (far.accuracy, far.fp, far.fn) == (0.0, 1.0, 1.0)
    missing = tusimple_frame(gt[:1], gt, ROWS, 1280)
    assert (missing.accuracy, missing.fp, missing.fn) == (0.5, 0.0, 0.5)
    extra = tusimple_frame([*gt, np.full(len(ROWS), 100.0)], gt, ROWS, 1280)
    assert extra.accuracy == 1.0 and extra.fp == pytest.approx(1 / 3) and extra.fn == 0.0
    assert (extra.false_positives, extra.found) == (1, 2)


def test_tusimple_empty_prediction_and_label() -> None:
    gt = _ts_lanes()
    nothing = [np.full(len(ROWS), np.nan)]  # a lane without points is no lane
    empty_pred = tusimple_frame(nothing, gt, ROWS, 1280)
    assert (empty_pred.accuracy, empty_pred.fp, empty_pred.fn, empty_pred.pred_lanes) == (0.0, 0.0, 1.0, 0)
    empty_label = tusimple_frame(gt, [], ROWS, 1280)
    assert math.isnan(empty_label.accuracy) and (empty_label.fp, empty_label.fn) == (1.0, 0.0)
    both = tusimple_frame([], [], ROWS, 1280)
    assert math.isnan(both.accuracy) and (both.fp, both.fn) == (0.0, 0.0)


def test_tusimple_points_threshold_angle_and_width() -> None:
    gt = [np.full(len(ROWS), 400.0)]
    # 85 % of the points: the lane is found only when at least that share is right
    n = len(ROWS)
    for right, found in ((math.ceil(0.85 * n), 1), (math.ceil(0.85 * n) - 1, 0)):
        pred = gt[0].copy()
        pred[right:] += 50
        f = tusimple_frame([pred], gt, ROWS, 1280)
        assert f.accuracy == pytest.approx(right / n) and f.found == found
    # a missing predicted point is a wrong one
    short = gt[0].copy()
    short[: n // 2] = np.nan
    assert tusimple_frame([short], gt, ROWS, 1280).accuracy == pytest.approx((n - n // 2) / n)
    # 22 px off: wrong on a vertical lane (20 px), right on a 45 degree one (20 / cos 45 = 28.3 px)
    assert tusimple_frame([gt[0] + 22], gt, ROWS, 1280).accuracy == 0.0
    slanted = [300 + (ROWS - 160)]
    assert tusimple_frame([slanted[0] + 22], slanted, ROWS, 1280).accuracy == 1.0
    # the 20 px scale with the image width: 12 px off is wrong at 640 px (10 px), right at 1280
    assert tusimple_frame([gt[0] + 12], gt, ROWS, 640).accuracy == 0.0
    assert tusimple_frame([gt[0] + 12], gt, ROWS, 1280).accuracy == 1.0
    with pytest.raises(ValueError):
        tusimple_frame([gt[0][:5]], gt, ROWS, 1280)


def test_tusimple_score_means_over_frames() -> None:
    gt = _ts_lanes()
    score = TuSimpleScore()
    score.update(gt, gt, ROWS, 1280)
    score.update(gt[:1], gt, ROWS, 1280)
    score.update(gt, [], ROWS, 1280)  # no label lane: no accuracy, all FP
    r = score.compute()
    assert r["accuracy"] == pytest.approx(0.75)
    assert r["fp"] == pytest.approx(1 / 3) and r["fn"] == pytest.approx(0.5 / 3)
    assert (r["frames"], r["label_lanes"], r["found"]) == (3, 4, 3)


def test_lane_x_at_rows_interpolates_without_extrapolating() -> None:
    lane = np.array([[10.0, 100.0], [30.0, 120.0]])
    x = lane_x_at_rows(lane[::-1], [90, 100, 110, 120, 130])
    assert np.isnan(x[0]) and np.isnan(x[4]) and np.allclose(x[1:4], [10, 20, 30])


# ----------------------------------------------------------------------------- CULane


def _cu_lanes() -> list[np.ndarray]:
    ys = np.arange(590, 250, -10, dtype=np.float64)
    return [np.stack([500 + 0.8 * (590 - ys), ys], 1), np.stack([1100 - 0.8 * (590 - ys), ys], 1)]


def test_culane_perfect_shifted_missing_extra_empty() -> None:
    gt, size = _cu_lanes(), (590, 1640)
    assert culane_frame(gt, gt, size) == (2, 0, 0)
    assert culane_frame([g + [2, 0] for g in gt], gt, size) == (2, 0, 0)  # 30 px lines 2 px apart
    assert culane_frame([g + [25, 0] for g in gt], gt, size) == (0, 2, 2)  # 25 px apart: IoU < 0.5
    assert culane_frame(gt[:1], gt, size) == (1, 0, 1)
    assert culane_frame([*gt, gt[0] + [300, 0]], gt, size) == (2, 1, 0)
    assert culane_frame([gt[0], gt[0]], gt[:1], size) == (1, 1, 0)  # one to one
    assert culane_frame([], gt, size) == (0, 0, 2)
    assert culane_frame(gt, [], size) == (0, 2, 0)
    # the 30 px scale with the width: at 820 px lines are 15 px wide, 10 px apart is IoU 0.2
    half = [g / 2 for g in gt]
    assert culane_frame([h + [10, 0] for h in half], half, (295, 820)) == (0, 2, 2)
    score = CULaneScore()
    score.update(gt, gt, size)
    score.update(gt[:1], gt, size)
    score.update([gt[0] + [300, 0]], [], size)
    r = score.compute()
    assert (r["tp"], r["fp"], r["fn"]) == (3, 1, 1) and r["f1"] == pytest.approx(0.75)
    assert math.isnan(CULaneScore().compute()["f1"])


def test_draw_lane_width_and_matching() -> None:
    line = draw_lane(np.array([[50.0, 0.0], [50.0, 99.0]]), (100, 100), 30)
    assert 29 <= line[50].sum() <= 31
    assert draw_lane(np.array([[20.0, 20.0]]), (40, 40), 10).sum() > 50  # a single point: a disc
    # greedy would give row 0 to column 0 and leave row 1 unmatched; the maximum is 2
    assert max_matching(np.array([[True, True], [True, False]])) == 2
    assert max_matching(np.zeros((0, 3), bool)) == 0


# ----------------------------------------------------------------------------- mask -> lanes


def _drawn(h: int = 160, w: int = 320) -> tuple[np.ndarray, list[np.ndarray]]:
    """Three lanes as a model would mark them, 2 px wide: slanted left, curved dashed centre, slanted right."""
    ys = np.arange(60, h, dtype=np.float64)
    lanes = [
        np.stack([160 - (ys - 60) * 1.5, ys], 1),
        np.stack([168 + 0.004 * (ys - 60) ** 2, ys], 1),
        np.stack([176 + (ys - 60) * 1.4, ys], 1),
    ]
    mask = np.zeros((h, w), np.uint8)
    for k, lane in enumerate(lanes):
        pts = np.round(lane).astype(np.int32)
        pieces = [pts[s : s + 10] for s in range(0, len(pts), 25)] if k == 1 else [pts]  # dashes 10 on, 15 off
        for piece in pieces:
            cv2.polylines(mask, [piece.reshape(-1, 1, 2)], False, 1, 2)
    return mask.astype(bool), lanes


def test_mask_to_lanes_finds_drawn_lanes() -> None:
    mask, truth = _drawn()
    found = mask_to_lanes(mask)
    assert len(found) == 3
    for lane, want in zip(found, truth, strict=True):  # ordered left to right at the bottom
        x = lane_x_at_rows(lane, want[:, 1])
        ok = np.isfinite(x)
        assert ok.all()  # the dashed lane carries on past its last dash to the image's bottom
        assert np.max(np.abs(x[ok] - want[ok, 0])) < 1.5
    dashes_only = mask_to_lanes(mask, LaneFitParams(extend_down=False, extend_up=False))
    assert dashes_only[1][-1, 1] < 150  # without the extension it ends with its last dash (rows 135-145)
    # the same at another resolution: parameters are shares of the size
    small = cv2.resize(mask.astype(np.uint8), (160, 80), interpolation=cv2.INTER_NEAREST).astype(bool)
    assert len(mask_to_lanes(small)) == 3


def test_a_lane_seen_as_one_dash_runs_through_the_gaps() -> None:
    """Lane labels run through dash gaps: one dash of a straight lane is decoded as the whole lane,
    down to the image's edge and up to the highest lane's top, and off the image it stops."""
    h, w = 160, 320
    ys = np.arange(h, dtype=np.float64)
    left, centre = 160 - (ys - 60) * 2.0, 168 + (ys - 60) * 0.5  # the left line leaves the image at row 140
    mask = np.zeros((h, w), np.uint8)
    for xs, rows in ((left, slice(60, h)), (centre, slice(100, 120))):  # a solid line, one dash
        pts = np.stack([xs[rows], ys[rows]], 1).round().astype(np.int32)
        cv2.polylines(mask, [pts.reshape(-1, 1, 2)], False, 1, 2)
    solid, dash = mask_to_lanes(mask.astype(bool))
    assert dash[0, 1] == solid[0, 1] <= 60 and dash[-1, 1] == h - 1  # up to the solid line's top, down to the bottom
    assert np.max(np.abs(dash[:, 0] - centre[dash[:, 1].astype(int)])) < 1.5
    short_solid, short = mask_to_lanes(mask.astype(bool), LaneFitParams(extend_down=False, extend_up=False))
    assert solid[-1, 1] == short_solid[-1, 1] <= 142  # the solid line leaves the image: nothing to add below
    assert short[0, 1] >= 99 and short[-1, 1] <= 120


def test_mask_to_lanes_rejects_blobs_specks_and_empty() -> None:
    assert mask_to_lanes(np.zeros((160, 320), bool)) == []
    blob = np.zeros((160, 320), bool)
    blob[60:120, 100:180] = True  # a car-sized blob: runs 80 px wide
    assert mask_to_lanes(blob) == []
    rng = np.random.default_rng(0)
    specks = rng.random((160, 320)) < 0.002
    assert len(mask_to_lanes(specks)) <= 1
    mask, _ = _drawn()
    assert len(mask_to_lanes(mask, LaneFitParams(max_lanes=2))) == 2
    with pytest.raises(ValueError):
        mask_to_lanes(np.zeros((2, 3, 4), bool))


def test_row_runs_and_scale() -> None:
    m = np.zeros((2, 8), bool)
    m[0, 1:3] = m[0, 5] = m[1, 7] = True
    rows, centres, widths = row_runs(m)
    assert rows.tolist() == [0, 0, 1] and centres.tolist() == [1.5, 5.0, 7.0] and widths.tolist() == [2, 1, 1]
    lane = [np.array([[0.0, 0.0], [319.0, 159.0]])]
    big = scale_lanes(lane, (160, 320), (720, 1280))[0]
    assert np.allclose(big, [[1.5, 1.75], [1277.5, 717.25]])  # pixel centres map to pixel centres
    assert np.allclose(scale_lanes([big], (720, 1280), (160, 320))[0], lane[0])


# ----------------------------------------------------------------------------- imported folders


def _tusimple_source(root: Path) -> Path:
    """A TuSimple test_set-like folder: two 1280x720 frames with three labelled lanes each."""
    rows = list(TUSIMPLE_ROWS)
    lines = []
    for k in range(2):
        raw = f"clips/0601/{k}/20.jpg"
        (root / raw).parent.mkdir(parents=True)
        cv2.imwrite(str(root / raw), np.full((720, 1280, 3), 80 + k, np.uint8))
        lanes = [[round(640 - s * (y - 160)) if y >= 260 else -2 for y in rows] for s in (1.2, 0.0, -1.2)]
        lines.append(json.dumps({"lanes": lanes, "h_samples": rows, "raw_file": raw}))
    (root / "test_label.json").write_text("\n".join(lines) + "\n")
    return root


def _culane_source(root: Path) -> tuple[Path, Path]:
    """A CULane-like folder (one video, two 1640x590 frames with two lanes) and its list file."""
    video = root / "driver_1" / "a.MP4"
    video.mkdir(parents=True)
    names = []
    for k in range(2):
        cv2.imwrite(str(video / f"{k:05d}.jpg"), np.full((590, 1640, 3), 60, np.uint8))
        lanes = [" ".join(f"{820 + s * (590 - y):.1f} {y}" for y in range(590, 280, -10)) for s in (-1.5, 1.5)]
        (video / f"{k:05d}.lines.txt").write_text("\n".join(lanes) + "\n")
        names.append(f"/driver_1/a.MP4/{k:05d}.jpg")
    (root / "list.txt").write_text("\n".join(names) + "\n")
    return root, root / "list.txt"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from collect.importers.culane import import_culane
    from collect.importers.tusimple import import_tusimple

    tmp = tmp_path_factory.mktemp("real")
    ts = import_tusimple(_tusimple_source(tmp / "ts_src"), tmp / "ts", size=(160, 320)).out
    cu_root, cu_list = _culane_source(tmp / "cu_src")
    cu = import_culane(cu_root, tmp / "cu", "list.txt", size=(160, 320)).out
    return {"tusimple": ts, "culane": cu}


@pytest.mark.parametrize("name", ["tusimple", "culane"])
def test_perfect_prediction_on_imported_folder(imported: dict[str, Path], name: str) -> None:
    """The imported mask as the prediction: every pixel score is 1, every label lane is found."""
    from dataset.reader import LaneDataset
    from sim.tags import ROAD_LINE
    from train.real_metrics import real_scorer

    ds = LaneDataset(imported[name], split="test", size=(160, 320))
    scorer, why = real_scorer(ds, "binary", "auto")
    assert scorer is not None and why == ""
    for i in range(len(ds)):
        label = ds.load(i)[1] == ROAD_LINE
        scorer.update(i, label, label)
    r = scorer.compute()
    assert r["pixel"]["iou"] == 1.0 and r["tolerant"]["f1"] == 1.0
    assert r["tusimple"]["found"] == r["tusimple"]["label_lanes"] == 2 * (3 if name == "tusimple" else 2)
    assert r["tusimple"]["accuracy"] > 0.95 and r["tusimple"]["fp"] == 0.0
    assert r["culane"]["f1"] == 1.0
    assert (r["culane"]["fp"], r["culane"]["fn"]) == (0, 0)


def test_label_lanes_come_from_the_source(imported: dict[str, Path], tmp_path: Path) -> None:
    from collect.real_lanes import LabelLanes, LaneLabelError, image_size
    from dataset.format import read_manifest

    ts = LabelLanes(read_manifest(imported["tusimple"]), imported["tusimple"])
    frame = ts["e0000_f000000"]
    assert frame.size == (720, 1280) and len(frame.lanes) == 3
    assert np.isnan(frame.xs[0][0]) and frame.xs[1][-1] == 640  # TuSimple's -2 is no point
    cu = LabelLanes(read_manifest(imported["culane"]), imported["culane"])
    assert cu["e0000_f000001"].size == (590, 1640) and len(cu["e0000_f000001"].lanes) == 2
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), np.zeros((7, 11), np.uint8))
    assert image_size(png) == (7, 11)
    gone = read_manifest(imported["tusimple"])
    gone.source = {**gone.source, "origin": str(tmp_path / "moved")}
    with pytest.raises(LaneLabelError, match="source folder"):
        LabelLanes(gone)


def test_evaluate_metrics_option(imported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--metrics auto adds the real lane lines on imported lane folders, pixel leaves them out,
    real refuses a folder whose source is gone."""
    import shutil

    import torch

    from perception.checkpoint import CheckpointMeta, binary_task, save_checkpoint
    from perception.models import build_model
    from train import evaluate

    torch.manual_seed(0)
    model = build_model("unet", num_classes=1, depth=2, base_width=4)
    meta = CheckpointMeta.for_model(model, task=binary_task(), input_size=(32, 64))
    save_checkpoint(tmp_path / "bin.pth", model, meta)
    capsys.readouterr()
    args = ["--model", str(tmp_path / "bin.pth"), "--no-progress"]
    assert evaluate.main([*args, "--data", str(imported["culane"]), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "TuSimple accuracy" in out and "CULane F1" in out and "F1 @3px" in out
    assert set(json.loads((tmp_path / "r.json").read_text())["real_lanes"]) >= {"tusimple", "culane", "tolerant"}
    assert evaluate.main([*args, "--data", str(imported["culane"]), "--metrics", "pixel"]) == 0
    assert "TuSimple accuracy" not in capsys.readouterr().out
    copy = tmp_path / "orphan"
    shutil.copytree(imported["tusimple"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["source"]["origin"] = str(tmp_path / "nowhere")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert evaluate.main([*args, "--data", str(copy)]) == 0
    assert "no real lane metrics" in capsys.readouterr().out
    assert evaluate.main([*args, "--data", str(copy), "--metrics", "real"]) == 1
    assert "source folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- shared dev frames


def test_dev_frames_decoder_check(tmp_path: Path) -> None:
    """On the shared real dev frames: the LaneNet instances become TuSimple lanes on the label
    mask, and the label lanes drawn thin decode back to (nearly) every lane."""
    from collect.real_dev import dev_root, import_dev_sets, instance_lanes

    root = dev_root()
    if root is None:
        pytest.skip("no ../shared/data/real-lanes-dev (real dev frames are not part of the project)")
    instance = cv2.imread(str(root / "tusimple-lanenet" / "gt_instance_image" / "0000.png"), cv2.IMREAD_GRAYSCALE)
    binary = cv2.imread(str(root / "tusimple-lanenet" / "gt_binary_image" / "0000.png"), cv2.IMREAD_GRAYSCALE)
    lanes = instance_lanes(instance)
    assert 3 <= len(lanes) <= 6
    for xs in lanes:
        pts = [(round(x), y) for x, y in zip(xs, TUSIMPLE_ROWS, strict=True) if x >= 0]
        assert len(pts) >= 10 and all(binary[y, x] for x, y in pts)

    from dataset.reader import LaneDataset
    from train.real_metrics import score_set, thin_labels

    for name, folder in import_dev_sets(tmp_path, root).items():
        r = score_set(LaneDataset(folder, split="test", size=(160, 320)), thin_labels)
        assert r["tusimple"]["accuracy"] > 0.95 and r["culane"]["f1"] > 0.95, name
