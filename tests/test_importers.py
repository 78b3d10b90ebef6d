"""Real-dataset importers on miniature datasets made here in each dataset's exact layout and
file formats: labels checked pixel by pixel, folders validated and read by LaneDataset, and
bad input refused with one-line errors that name the file, leaving nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from collect.cityscapes_labels import ANNOTATED_TAGS, CITYSCAPES_TO_CARLA
from collect.import_cityscapes import main as cityscapes_main
from collect.import_culane import main as culane_main
from collect.import_tusimple import main as tusimple_main
from collect.importers.lanes import lane_mask
from dataset.format import DatasetError, read_index, read_labels, read_manifest, read_rgb
from dataset.reader import IGNORE_INDEX, LaneDataset
from dataset.validate import validate
from sim.tags import IDS, ROAD_LINE

REPO = Path(__file__).resolve().parents[1]

# The expected mapping, written by class name from sim/tags.py, apart from the table under test.
CS_EXPECTED = {
    "unlabeled": "Unlabeled", "ego vehicle": "Unlabeled", "rectification border": "Unlabeled",
    "out of roi": "Unlabeled", "static": "Static", "dynamic": "Dynamic", "ground": "Ground",
    "road": "Road", "sidewalk": "Sidewalk", "parking": "Unlabeled", "rail track": "RailTrack",
    "building": "Building", "wall": "Wall", "fence": "Fence", "guard rail": "GuardRail",
    "bridge": "Bridge", "tunnel": "Unlabeled", "pole": "Pole", "polegroup": "Pole",
    "traffic light": "TrafficLight", "traffic sign": "TrafficSign", "vegetation": "Vegetation",
    "terrain": "Terrain", "sky": "Sky", "person": "Pedestrian", "rider": "Rider", "car": "Car",
    "truck": "Truck", "bus": "Bus", "caravan": "Unlabeled", "trailer": "Unlabeled", "train": "Train",
    "motorcycle": "Motorcycle", "bicycle": "Bicycle",
}  # fmt: skip
CS_IDS = {"road": 7, "sidewalk": 8, "sky": 23, "car": 26, "person": 24, "parking": 9, "building": 11}


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def _write_jpg(path: Path, rgb: np.ndarray) -> np.ndarray:
    """Write a JPEG as the datasets ship them; return the RGB pixels a reader decodes from it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _frames(out: Path) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    return [(r, read_rgb(out / r["rgb"]), read_labels(out / r["label"])) for r in read_index(out)]


def _source_of(out: Path) -> dict[str, str]:
    """Frame id -> source file, from the manifest."""
    return read_manifest(out).source["files"]


def _assert_valid(out: Path) -> None:
    report = validate(out)
    assert report.ok, report.format()
    assert not report.warnings, report.format()


def _no_leftovers(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if "importing" in p.name]


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- Cityscapes


def _cityscapes_label(h: int, w: int, k: int) -> np.ndarray:
    """Known polygons on 2x2-pixel blocks, so that a 2x nearest downscale has one right answer."""
    lab = np.full((h, w), CS_IDS["road"], np.uint8)
    lab[: h // 4] = CS_IDS["sky"]
    lab[h // 4 : h // 2, : w // 4] = CS_IDS["building"]
    lab[h // 2 :, : w // 8] = CS_IDS["sidewalk"]
    lab[20:30, 40 + 2 * k : 60 + 2 * k] = CS_IDS["car"]
    lab[36:44, 90:94] = CS_IDS["person"]
    lab[50:56, 100:120] = CS_IDS["parking"]
    yy, xx = np.mgrid[:h, :w]
    lab[(yy // 2 >= 28) & (xx // 2 >= 30) & (xx // 2 - 30 <= yy // 2 - 28)] = CS_IDS["car"]  # a triangle
    if k == 0:  # every Cityscapes id somewhere, for the whole table
        lab[-2:, : 2 * 34] = np.repeat(np.arange(34, dtype=np.uint8), 2)
    return lab


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cs") / "cityscapes"
    h, w = 64, 128  # the 1:2 shape of the real 1024x2048
    for c, city in enumerate(("aachen", "bonn")):
        for k in range(2):
            stem = f"{city}_{c:06d}_{19 + k:06d}"
            _write_png(root / "leftImg8bit/val" / city / f"{stem}_leftImg8bit.png", _rgb(h, w, 10 * c + k)[..., ::-1])
            _write_png(root / "gtFine/val" / city / f"{stem}_gtFine_labelIds.png", _cityscapes_label(h, w, k))
            _write_png(root / "gtFine/val" / city / f"{stem}_gtFine_color.png", _rgb(h, w, 99))  # ignored
    return root


def test_cityscapes_table_is_the_documented_one() -> None:
    table = {name: tag for _, name, tag in CITYSCAPES_TO_CARLA}
    assert [cs for cs, _, _ in CITYSCAPES_TO_CARLA] == list(range(34))
    assert table == {name: IDS[tag] for name, tag in CS_EXPECTED.items()}
    assert ROAD_LINE not in ANNOTATED_TAGS and IDS["Road"] in ANNOTATED_TAGS


@pytest.mark.parametrize("size", [None, (32, 64)])
def test_cityscapes_import_pixel_by_pixel(cityscapes: Path, tmp_path: Path, size: tuple[int, int] | None) -> None:
    out = tmp_path / "cs_val"
    argv = [str(cityscapes), "--out", str(out), "--no-progress"]
    if size:
        argv += ["--size", f"{size[0]}x{size[1]}"]
    assert cityscapes_main(argv) == 0
    _assert_valid(out)
    _no_leftovers(tmp_path)
    m = read_manifest(out)
    assert m.annotated_tags == list(ANNOTATED_TAGS) and m.backend == "cityscapes"
    assert [e.split for e in m.episodes] == ["val", "val"] and m.counts["val"] == 4
    lut = {cs: IDS[CS_EXPECTED[name]] for cs, name in enumerate(CS_EXPECTED)}
    files = _source_of(out)
    frames = _frames(out)
    assert len(frames) == 4
    for row, rgb, labels in frames:
        src = cityscapes / files[row["id"]]
        city = src.parent.name
        assert row["town"] == city and src.name.startswith(city)
        raw = cv2.imread(
            str(cityscapes / "gtFine/val" / city / src.name.replace("_leftImg8bit", "_gtFine_labelIds")),
            cv2.IMREAD_UNCHANGED,
        )
        want = np.vectorize(lut.get)(raw).astype(np.uint8)
        if size is None:
            assert np.array_equal(rgb, cv2.imread(str(src))[..., ::-1])
        else:  # nearest neighbour: the source pixel under each output pixel's centre
            rows = ((np.arange(size[0]) + 0.5) * raw.shape[0] / size[0]).astype(int)
            cols = ((np.arange(size[1]) + 0.5) * raw.shape[1] / size[1]).astype(int)
            want = want[rows][:, cols]
            assert rgb.shape == (*size, 3)
        assert np.array_equal(labels, want), f"{row['id']}: {np.argwhere(labels != want)[:5]}"
        assert row["lane_pixels"] == 0 and row["speed"] is None


def test_cityscapes_in_lanedataset(cityscapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "cs"
    assert cityscapes_main([str(cityscapes), "--out", str(out), "--size", "32x64", "--no-progress"]) == 0
    with pytest.raises(DatasetError, match=r"RoadLine \(24\).*no lane-marking class"):
        LaneDataset(out, split="val")  # the default binary lane task
    tags = (IDS["Road"], IDS["Sky"], IDS["Car"])
    ds = LaneDataset(out, split="val", tags=tags)
    assert len(ds) == 4 and ds.task == "multiclass"
    image, target = ds[0]
    labels = ds.load(0)[1]
    assert image.shape == (3, 32, 64) and target.dtype == torch.int64
    for i, tag in enumerate(tags):
        assert torch.equal(target == i, torch.from_numpy(labels == tag))
    assert torch.equal(target == IGNORE_INDEX, torch.from_numpy(~np.isin(labels, tags)))
    with pytest.raises(DatasetError, match="RoadLine"):
        LaneDataset(out, split="val", tags=(IDS["Road"], ROAD_LINE))


def _copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_cityscapes_errors(cityscapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    # wrong layout: ROOT one level too deep, or a split that is not there
    assert cityscapes_main([str(cityscapes / "leftImg8bit"), "--out", str(out), "--no-progress"]) == 1
    assert "leftImg8bit/val not found" in _error(capsys)
    assert cityscapes_main([str(cityscapes), "--split", "train", "--out", str(out), "--no-progress"]) == 1
    assert "leftImg8bit/train" in _error(capsys)
    # a missing label file
    bad = _copy_tree(cityscapes, tmp_path / "missing")
    gone = next((bad / "gtFine/val/bonn").glob("*_labelIds.png"))
    gone.unlink()
    assert cityscapes_main([str(bad), "--out", str(out), "--no-progress"]) == 1
    assert str(gone) in _error(capsys)
    # an unknown label id in the last frame: found after others were converted, nothing kept
    bad = _copy_tree(cityscapes, tmp_path / "unknown")
    last = sorted((bad / "gtFine/val/bonn").glob("*_labelIds.png"))[-1]
    lab = cv2.imread(str(last), cv2.IMREAD_UNCHANGED)
    lab[5, 5] = 200
    _write_png(last, lab)
    assert cityscapes_main([str(bad), "--out", str(out), "--no-progress"]) == 1
    err = _error(capsys)
    assert str(last) in err and "200" in err
    assert not out.exists()
    _no_leftovers(tmp_path)
    # a colour image where a labelIds one belongs
    _write_png(last, _rgb(64, 128, 3))
    assert cityscapes_main([str(bad), "--out", str(out), "--no-progress"]) == 1
    assert str(last) in _error(capsys) and not out.exists()
    # an existing dataset is kept unless --overwrite, and kept when the replacement fails
    assert cityscapes_main([str(cityscapes), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    before = (out / "index.parquet").read_bytes()
    assert cityscapes_main([str(cityscapes), "--out", str(out), "--no-progress"]) == 1
    assert "--overwrite" in _error(capsys)
    assert cityscapes_main([str(bad), "--out", str(out), "--overwrite", "--no-progress"]) == 1
    _error(capsys)
    assert (out / "index.parquet").read_bytes() == before
    _assert_valid(out)
    assert cityscapes_main([str(cityscapes), "--out", str(out), "--overwrite", "--size", "32x64"]) == 0
    assert read_manifest(out).width == 64
    _assert_valid(out)
    _no_leftovers(tmp_path)
    with pytest.raises(SystemExit) as e:
        cityscapes_main([str(cityscapes), "--out", str(out), "--size", "64"])
    assert e.value.code == 2


# ----------------------------------------------------------------------------- lanes


def _expected_vertical(
    lanes: list[tuple[float, float, float]], src: tuple[int, int], size: tuple[int, int], width: float
) -> np.ndarray:
    """Mask of vertical lanes (x, y_top, y_bottom): output pixels whose centre, in source pixels,
    is within width/2 of the segment (the documented rule, for the one shape where it is plain)."""
    v = ((np.arange(size[0]) + 0.5) * src[0] / size[0] - 0.5)[:, None]
    u = ((np.arange(size[1]) + 0.5) * src[1] / size[1] - 0.5)[None, :]
    hit = np.zeros(size, bool)
    for x, y0, y1 in lanes:
        dy = np.maximum(0, np.maximum(y0 - v, v - y1))
        hit |= (u - x) ** 2 + dy**2 <= (width / 2) ** 2
    return np.where(hit, ROAD_LINE, 0).astype(np.uint8)


def test_lane_mask_rules() -> None:
    # Width 3 around pixel centres: a box one pixel beyond the ends (round caps reach the corners).
    m = lane_mask([np.array([[5.0, 2.0], [5.0, 8.0]])], (12, 12), (12, 12), 3)
    want = np.zeros((12, 12), np.uint8)
    want[1:10, 4:7] = ROAD_LINE
    assert np.array_equal(m, want)
    # The same lane lying down is the transposed mask; a 45-degree line is symmetric about its diagonal.
    assert np.array_equal(lane_mask([np.array([[2.0, 5.0], [8.0, 5.0]])], (12, 12), (12, 12), 3), want.T)
    d = lane_mask([np.array([[1.0, 1.0], [10.0, 10.0]])], (12, 12), (12, 12), 2)
    assert np.array_equal(d, d.T) and d[5, 5] == ROAD_LINE and d[5, 7] == 0
    # Off-image points clip; no lanes is an empty mask; width is in source pixels at any size.
    assert lane_mask([np.array([[-50.0, -50.0], [-40.0, -40.0]])], (12, 12), (12, 12), 3).max() == 0
    assert lane_mask([], (12, 12), (6, 6), 3).max() == 0
    lanes = [(10.0, 0.0, 47.0), (30.0, 10.0, 30.0)]
    pts = [np.array([[x, y0], [x, y1]]) for x, y0, y1 in lanes]
    for size in [(48, 64), (24, 32), (16, 40), (96, 128)]:
        assert np.array_equal(lane_mask(pts, (48, 64), size, 6), _expected_vertical(lanes, (48, 64), size, 6))


TS_H, TS_W = 72, 128  # 1/10 of TuSimple's 720x1280
TS_H_SAMPLES = [30, 40, 50, 60]


@pytest.fixture(scope="module")
def tusimple(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """train_set-like folder: clips/<date>/<clip>/20.jpg, label_data_*.json; -> root, raw_file -> (rgb, mask)."""
    root = tmp_path_factory.mktemp("ts") / "train_set"
    want: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    # Lanes, width 3, drawn by hand as the boxes the rule gives (see test_lane_mask_rules).
    labels = {
        "clips/0313-1/6040/20.jpg": (
            [[20, 20, 20, 20], [-2, 60, 60, -2], [-2, -2, -2, 100], [-2, -2, -2, -2]],
            [(slice(29, 62), slice(19, 22)), (slice(39, 52), slice(59, 62)), (slice(59, 62), slice(99, 102))],
        ),
        "clips/0313-1/6060/20.jpg": (
            [[80, -2, 80, 80]],  # a missing point breaks the lane: a dot, a gap, a segment
            [(slice(29, 32), slice(79, 82)), (slice(49, 62), slice(79, 82))],
        ),
        "clips/0531/1492626047222176976_0/20.jpg": ([], []),  # a frame without lanes
    }
    files = {"label_data_0313.json": list(labels)[:2], "label_data_0531.json": list(labels)[2:]}
    for k, (raw_file, (_lanes, boxes)) in enumerate(labels.items()):
        rgb = _write_jpg(root / raw_file, _rgb(TS_H, TS_W, k))
        mask = np.zeros((TS_H, TS_W), np.uint8)
        for box in boxes:
            mask[box] = ROAD_LINE
        want[raw_file] = (rgb, mask)
    for name, raws in files.items():
        lines = [json.dumps({"lanes": labels[r][0], "h_samples": TS_H_SAMPLES, "raw_file": r}) for r in raws]
        (root / name).write_text("\n".join(lines) + "\n")
    return root, want


def test_tusimple_import_pixel_by_pixel(tusimple, tmp_path: Path) -> None:
    root, want = tusimple
    out = tmp_path / "ts"
    assert tusimple_main([str(root), "--out", str(out), "--line-width", "3", "--no-progress"]) == 0
    _assert_valid(out)
    m = read_manifest(out)
    assert m.annotated_tags == [ROAD_LINE] and m.counts["test"] == 3 and len(m.episodes) == 3
    files = _source_of(out)
    assert sorted(files.values()) == sorted(want)
    for row, rgb, labels in _frames(out):
        rgb_want, mask_want = want[files[row["id"]]]
        assert np.array_equal(rgb, rgb_want)
        assert np.array_equal(labels, mask_want), f"{files[row['id']]}: {np.argwhere(labels != mask_want)[:5]}"
        assert row["lane_pixels"] == int((mask_want == ROAD_LINE).sum())
    # Read as the binary lane task: target 1 exactly on the lanes.
    ds = LaneDataset(out, split="test")
    for i in range(len(ds)):
        _, target = ds[i]
        assert torch.equal(target[0] > 0.5, torch.from_numpy(ds.load(i)[1] == ROAD_LINE))
    with pytest.raises(DatasetError, match=r"Road \(1\)"):
        LaneDataset(out, split="test", tags=(1, ROAD_LINE))


def test_tusimple_resized_and_selected(tusimple, tmp_path: Path) -> None:
    root, _ = tusimple
    out = tmp_path / "ts_small"
    argv = [str(root), "--json", "label_data_0313.json", "--size", "36x64", "--split", "train", "--out", str(out)]
    assert tusimple_main([*argv, "--no-progress"]) == 0
    _assert_valid(out)
    files = _source_of(out)
    assert sorted(files.values()) == ["clips/0313-1/6040/20.jpg", "clips/0313-1/6060/20.jpg"]
    lanes = {  # (x, top, bottom) of each vertical piece, width 20 (the default)
        "clips/0313-1/6040/20.jpg": [(20, 30, 60), (60, 40, 50), (100, 60, 60)],
        "clips/0313-1/6060/20.jpg": [(80, 30, 30), (80, 50, 60)],
    }
    for row, rgb, labels in _frames(out):
        assert row["split"] == "train" and rgb.shape == (36, 64, 3)
        want = _expected_vertical(lanes[files[row["id"]]], (TS_H, TS_W), (36, 64), 20)
        assert np.array_equal(labels, want)


def test_tusimple_errors(tusimple, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = tusimple
    out = tmp_path / "out"

    def run(label_text: str, *extra: str) -> str:
        (root.parent / "bad.json").write_text(label_text)
        assert tusimple_main([str(root), "--json", "../bad.json", "--out", str(out), "--no-progress", *extra]) == 1
        assert not out.exists()
        return _error(capsys)

    good = json.dumps({"lanes": [[1, 2, 3, 4]], "h_samples": TS_H_SAMPLES, "raw_file": "clips/0313-1/6040/20.jpg"})
    err = run(good + "\n" + '{"lanes": [[1, 2], "h_samples": [1, 2]\n')
    assert "bad.json line 2: malformed JSON" in err
    assert "no 'raw_file'" in run(json.dumps({"lanes": [], "h_samples": []}))
    assert "lane 0 has 2 x values for 4 h_samples" in run(good.replace("[1, 2, 3, 4]", "[1, 2]"))
    err = run(good.replace("6040", "9999"))
    assert "clips/0313-1/9999/20.jpg is missing" in err and "bad.json line 1" in err
    assert "labelled twice" in run(good + "\n" + good)
    assert tusimple_main([str(root), "--json", "nope_*.json", "--out", str(out), "--no-progress"]) == 1
    assert "nope_*.json: no such label file" in _error(capsys)
    assert tusimple_main([str(root / "clips"), "--out", str(out), "--no-progress"]) == 1
    assert "no label_data_*.json or test_label.json" in _error(capsys)
    # Images of different sizes need --size.
    odd = _copy_tree(root, tmp_path / "odd")
    _write_jpg(odd / "clips/0531/1492626047222176976_0/20.jpg", _rgb(TS_H, TS_W + 2, 5))
    assert tusimple_main([str(odd), "--out", str(out), "--no-progress"]) == 1
    assert "pass --size" in _error(capsys) and not out.exists()
    _no_leftovers(tmp_path)
    assert tusimple_main([str(odd), "--out", str(out), "--size", "36x64", "--no-progress"]) == 0
    with pytest.raises(SystemExit) as e:
        tusimple_main([str(root), "--out", str(out), "--line-width", "-3"])
    assert e.value.code == 2


CU_H, CU_W = 59, 164  # 1/10 of CULane's 590x1640


@pytest.fixture(scope="module")
def culane(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[tuple[float, float, float]]]]:
    """CULane-like folder: driver_*_30frame/<video>.MP4/NNNNN.jpg + .lines.txt, list/test.txt."""
    root = tmp_path_factory.mktemp("cu") / "CULane"
    lanes = {  # image -> vertical lanes (x, top, bottom), written bottom-up as CULane does
        "driver_100_30frame/05251517_0433.MP4/00000.jpg": [(20.0, 20.0, 58.0), (100.5, 10.0, 50.0)],
        "driver_100_30frame/05251517_0433.MP4/00030.jpg": [(150.0, 0.0, 58.0)],
        "driver_37_30frame/05190028_0452.MP4/00120.jpg": [],  # an empty lines file: no lanes
    }
    for k, (name, ls) in enumerate(lanes.items()):
        image = root / name
        _write_jpg(image, _rgb(CU_H, CU_W, 20 + k))
        text = "".join(f"{x} {y1} {x} {(y0 + y1) / 2} {x} {y0} \n" for x, y0, y1 in ls)
        image.with_name(image.stem + ".lines.txt").write_text(text)
    (root / "list").mkdir()
    (root / "list/test.txt").write_text("".join(f"/{name}\n" for name in lanes))
    (root / "list/train_gt.txt").write_text(
        "".join(f"/{n} /laneseg_label_w16/{n[:-4]}.png 1 1 0 0\n" for n in list(lanes)[:2])
    )
    return root, lanes


@pytest.mark.parametrize("width,size", [(3, None), (30, (32, 80))])
def test_culane_import_pixel_by_pixel(culane, tmp_path: Path, width: int, size: tuple[int, int] | None) -> None:
    root, lanes = culane
    out = tmp_path / "cu"
    argv = [str(root), "--list", "list/test.txt", "--out", str(out), "--no-progress"]
    argv += ["--line-width", str(width)] if width != 30 else []  # 30 is the default
    argv += ["--size", f"{size[0]}x{size[1]}"] if size else []
    assert culane_main(argv) == 0
    _assert_valid(out)
    m = read_manifest(out)
    assert m.annotated_tags == [ROAD_LINE] and len(m.episodes) == 2 and m.counts["test"] == 3
    files = _source_of(out)
    for row, rgb, labels in _frames(out):
        name = files[row["id"]]
        assert row["town"] == name.split("/")[0]
        want = _expected_vertical(lanes[name], (CU_H, CU_W), size or (CU_H, CU_W), width)
        if size is None:
            assert np.array_equal(rgb, cv2.cvtColor(cv2.imread(str(root / name)), cv2.COLOR_BGR2RGB))
            if width == 3 and name.endswith("00000.jpg"):  # the same, by hand: boxes one pixel past the ends
                box = np.zeros_like(want)
                box[19:59, 19:22] = ROAD_LINE
                box[9:52, 99:103] = ROAD_LINE  # x = 100.5: columns 99..102 lie within 1.5
                box[9, 99] = box[9, 102] = box[51, 99] = box[51, 102] = 0  # outside the round caps
                assert np.array_equal(want, box)
        assert np.array_equal(labels, want), f"{name}: {np.argwhere(labels != want)[:5]}"
    ds = LaneDataset(out, split="test", size=(32, 80))
    assert len(ds) == 3 and ds[0][1].shape == (1, 32, 80)


def test_culane_train_gt_list_and_cli(culane, tmp_path: Path) -> None:
    root, _ = culane
    out = tmp_path / "cu_train"
    proc = subprocess.run(
        [sys.executable, "-m", "collect.import_culane", str(root), "--list", "list/train_gt.txt", "--split", "train"]
        + ["--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "imported 2 frames" in proc.stdout
    _assert_valid(out)
    assert read_manifest(out).counts == {"train": 2, "val": 0, "test": 0}


def test_culane_errors(culane, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, lanes = culane
    out = tmp_path / "out"
    bad = _copy_tree(root, tmp_path / "bad")
    assert culane_main([str(bad), "--list", "list/nope.txt", "--out", str(out), "--no-progress"]) == 1
    assert "list/nope.txt: no such list file" in _error(capsys)
    first = bad / next(iter(lanes))
    first.with_name(first.stem + ".lines.txt").unlink()
    assert culane_main([str(bad), "--list", "list/test.txt", "--out", str(out), "--no-progress"]) == 1
    assert "00000.lines.txt is missing" in _error(capsys)
    first.with_name(first.stem + ".lines.txt").write_text("10 20 30\n")
    assert culane_main([str(bad), "--list", "list/test.txt", "--out", str(out), "--no-progress"]) == 1
    err = _error(capsys)
    assert "00000.lines.txt line 1" in err and "x y pairs" in err
    first.with_name(first.stem + ".lines.txt").write_text("10 20 abc 40\n")
    assert culane_main([str(bad), "--list", "list/test.txt", "--out", str(out), "--no-progress"]) == 1
    assert "not a list of numbers" in _error(capsys)
    first.unlink()
    assert culane_main([str(bad), "--list", "list/test.txt", "--out", str(out), "--no-progress"]) == 1
    assert f"{first} is missing" in _error(capsys)
    assert not out.exists()
    _no_leftovers(tmp_path)


def test_one_cli_for_every_source_and_the_old_commands_forward(
    tusimple, culane, cityscapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m collect.importers NAME` offers each registered source; the old per-dataset
    commands write the very same folder (manifest timestamps aside)."""
    from collect.importers.cli import main as importers_main
    from collect.importers.registry import SOURCES

    assert sorted(SOURCES) == ["cityscapes", "culane", "tusimple"]
    runs = {
        "tusimple": (tusimple_main, [str(tusimple[0]), "--size", "36x64"]),
        "culane": (culane_main, [str(culane[0]), "--list", "list/test.txt"]),
        "cityscapes": (cityscapes_main, [str(cityscapes), "--size", "32x64"]),
    }
    for name, (old_main, argv) in runs.items():
        new, old = tmp_path / f"{name}_new", tmp_path / f"{name}_old"
        assert importers_main([name, *argv, "--out", str(new), "--no-progress"]) == 0
        assert old_main([*argv, "--out", str(old), "--no-progress"]) == 0
        files = sorted(p.relative_to(new) for p in new.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(old) for p in old.rglob("*") if p.is_file())
        for rel in files:
            if rel.name != "manifest.json":
                assert (new / rel).read_bytes() == (old / rel).read_bytes(), rel
        a, b = read_manifest(new).to_dict(), read_manifest(old).to_dict()
        for d in (a, b):
            d.pop("created"), d.pop("updated")
        assert a == b and a["source"]["importer"] == f"collect.import_{name}"
        _assert_valid(new)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        importers_main(["kitti", str(cityscapes), "--out", str(tmp_path / "k")])
    assert e.value.code == 2 and "invalid choice: 'kitti'" in capsys.readouterr().err


def test_interrupt_leaves_nothing_and_overwrite_keeps_foreign_files(tusimple, tmp_path: Path) -> None:
    import argparse

    from collect.importers.cli import run_import_cli
    from collect.importers.convert import import_frames
    from collect.importers.source import SourceFrame

    root, _ = tusimple
    out = tmp_path / "ts"
    image = next(root.rglob("*.jpg"))

    def labels(src: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
        raise KeyboardInterrupt  # Ctrl-C in the middle of a frame

    frames = [SourceFrame(f"f{k}.jpg", "e", "t", image, labels) for k in range(3)]
    kw = {"dataset": "x", "split": "test", "annotated_tags": (ROAD_LINE,), "source": {}}
    args = argparse.Namespace(out=out, debug=False)
    assert run_import_cli(args, lambda: import_frames(frames, out, **kw)) == 130
    assert not out.exists()
    _no_leftovers(tmp_path)
    # A dataset folder may hold files of the user's: --overwrite replaces the dataset, keeps them.
    assert tusimple_main([str(root), "--out", str(out), "--no-progress"]) == 0
    (out / "notes.txt").write_text("mine")
    assert tusimple_main([str(root), "--out", str(out), "--overwrite", "--size", "36x64", "--no-progress"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and read_manifest(out).height == 36
    _assert_valid(out)
    _no_leftovers(tmp_path)


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_accepts_imported_folders(
    cityscapes: Path, tusimple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Binary lane evaluation on TuSimple, multi-class on Cityscapes' tags; the lane task on
    Cityscapes is refused with the importer's reason."""
    evaluate = pytest.importorskip("train.evaluate")
    from perception.checkpoint import CheckpointMeta, binary_task, multiclass_task, save_checkpoint
    from perception.models import build_model

    cs, ts = tmp_path / "cs", tmp_path / "ts"
    assert cityscapes_main([str(cityscapes), "--out", str(cs), "--size", "32x64", "--no-progress"]) == 0
    assert tusimple_main([str(tusimple[0]), "--out", str(ts), "--size", "32x64", "--no-progress"]) == 0
    torch.manual_seed(0)
    for name, task in (("bin", binary_task()), ("multi", multiclass_task([1, 11, 14]))):
        model = build_model("unet", num_classes=task.num_classes, depth=2, base_width=4)
        meta = CheckpointMeta.for_model(model, task=task, input_size=(32, 64))
        save_checkpoint(tmp_path / f"{name}.pth", model, meta)
    capsys.readouterr()
    assert evaluate.main(["--model", str(tmp_path / "bin.pth"), "--data", str(ts), "--split", "test"]) == 0
    assert "dataset IoU" in capsys.readouterr().out
    assert evaluate.main(["--model", str(tmp_path / "multi.pth"), "--data", str(cs), "--split", "val"]) == 0
    assert "mean IoU" in capsys.readouterr().out
    assert evaluate.main(["--model", str(tmp_path / "bin.pth"), "--data", str(cs), "--split", "val"]) == 1
    assert "no lane-marking class" in _error(capsys)
