"""Data collection end to end on the real embedded backend: record, validate, read back,
kill -9 and resume, corruption caught by the validator, CLI errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from collect.record import assign_splits, episode_scenario, main, parse_split
from dataset.format import (
    DatasetError,
    encode_label_png,
    read_index,
    read_manifest,
    write_index,
)
from dataset.reader import IGNORE_INDEX, LaneDataset
from dataset.validate import main as validate_main
from dataset.validate import validate
from sim.backend import make_backend
from sim.tags import ROAD_LINE

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--episodes", "3", "--episode-frames", "8", "--width", "96", "--height", "48", "--seed", "7"]
# Long enough (a few seconds) that a kill lands in the middle of it.
LONG = ["--episodes", "4", "--episode-frames", "60", "--width", "96", "--height", "48", "--seed", "11"]


def _run(out: Path, *extra: str) -> int:
    return main(["--out", str(out), "--no-progress", *extra])


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for sub in ("rgb", "labels")
        for p in sorted((root / sub).rglob("*"))
        if p.is_file()
    }


def _spawn(out: Path, *extra: str, module: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "collect.record"] if module else [sys.executable, "collect/record.py"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [*cmd, "--out", str(out), "--no-progress", *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_index(out: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not (out / "index.parquet").exists():
        assert proc.poll() is None, f"recording ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "no index flushed in time"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("collect") / "small"
    assert _run(out, *SMALL) == 0
    return out


def test_record_validate_and_read_back_same_pixels(small: Path) -> None:
    report = validate(small)
    assert report.ok, report.format()
    assert report.frames == 24 and not report.warnings
    manifest = read_manifest(small)
    assert manifest.status == "complete" and manifest.counts == {"train": 8, "val": 8, "test": 8}
    # splits are by episode: each episode is in exactly one split
    rows = read_index(small)
    assert {(r["episode"], r["split"]) for r in rows} == {(p.episode, p.split) for p in manifest.episodes}

    # re-simulate episode 0 and compare with what the Dataset reads back
    plan = manifest.episodes[0]
    ds = LaneDataset(small, split=plan.split)
    assert len(ds) == plan.frames and ds.num_classes == 1
    with make_backend("embedded") as sim:
        obs = sim.reset(episode_scenario(manifest, plan), seed=plan.seed)
        for i in range(plan.frames):
            if i:
                for _ in range(manifest.every):
                    obs = sim.step(None)
            rgb, labels = ds.load(i)
            np.testing.assert_array_equal(rgb, obs.camera.rgb)
            np.testing.assert_array_equal(labels, obs.camera.labels)
            image, target = ds[i]
            expected = (obs.camera.rgb.transpose(2, 0, 1) / 255.0 - np.reshape(ds.mean, (3, 1, 1))) / np.reshape(
                ds.std, (3, 1, 1)
            )
            assert image.dtype == torch.float32 and image.shape == (3, 48, 96)
            np.testing.assert_allclose(image.numpy(), expected, atol=1e-5)
            assert target.shape == (1, 48, 96) and target.dtype == torch.float32
            np.testing.assert_array_equal(target[0].numpy(), obs.camera.labels == ROAD_LINE)
    assert sum(r["lane_pixels"] for r in rows) > 0


def test_dataset_multiclass_merge_resize_and_transform(small: Path) -> None:
    calls = []

    def flip(rgb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(1)
        return rgb[:, ::-1], labels[:, ::-1]

    ds = LaneDataset([small, small], split="all", tags=[1, 24], size=(24, 48), transform=flip)
    assert len(ds) == 48 and ds.num_classes == 2 and ds.task_dict == {"kind": "multiclass", "tags": [1, 24]}
    image, target = ds[0]
    assert image.shape == (3, 24, 48) and target.shape == (24, 48) and target.dtype == torch.int64
    assert set(target.unique().tolist()) <= {0, 1, IGNORE_INDEX} and calls == [1]
    _, labels = ds.load(0)
    import cv2

    small_labels = cv2.resize(np.ascontiguousarray(labels[:, ::-1]), (48, 24), interpolation=cv2.INTER_NEAREST)
    expected = np.full(small_labels.shape, IGNORE_INDEX)
    expected[small_labels == 1] = 0
    expected[small_labels == 24] = 1
    np.testing.assert_array_equal(target.numpy(), expected)


def test_dataset_clear_errors(small: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no manifest.json"):
        LaneDataset(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(small, broken)
    row = read_index(broken)[0]
    (broken / row["rgb"]).unlink()
    with pytest.raises(DatasetError, match="files are missing"):
        LaneDataset(broken, split=row["split"])
    with pytest.raises(DatasetError, match="unknown split"):
        LaneDataset(small, split="dev")


def _corrupt(small: Path, tmp_path: Path, how: str) -> Path:
    root = tmp_path / how
    shutil.copytree(small, root)
    rows = read_index(root)
    r = rows[3]
    if how == "deleted":
        (root / r["rgb"]).unlink()
    elif how == "truncated":
        data = (root / r["label"]).read_bytes()
        (root / r["label"]).write_bytes(data[: len(data) // 2])
    elif how == "bad_tag":
        labels = np.zeros((48, 96), np.uint8)
        labels[5, 5] = 200
        (root / r["label"]).write_bytes(encode_label_png(labels))
    elif how == "no_file":
        ghost = dict(r, id="e0000_f000999", frame=999, rgb="rgb/e0000/f000999.png", label="labels/e0000/f000999.png")
        write_index(root, rows + [ghost])
    elif how == "overlap":
        other = next(s for s in ("train", "val", "test") if s != r["split"])
        rows[3] = dict(r, split=other)
        write_index(root, rows)
    elif how == "duplicate":
        write_index(root, rows + [r])
    return root


@pytest.mark.parametrize(
    "how, message",
    [
        ("deleted", "is missing"),
        ("truncated", "not a complete PNG"),
        ("bad_tag", "outside the tag table"),
        ("no_file", "is missing"),
        ("overlap", "splits overlap"),
        ("duplicate", "appears 2 times"),
    ],
)
def test_validation_catches(small: Path, tmp_path: Path, how: str, message: str) -> None:
    root = _corrupt(small, tmp_path, how)
    report = validate(root)
    assert not report.ok
    assert any(message in d for d in report.defects), report.format()
    assert validate_main([str(root)]) == 1


def test_kill_minus_9_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    # run as a script (sys.path fix at the top of record.py), flushing the index often
    assert _run(ref, *LONG) == 0
    proc = _spawn(killed, *LONG, "--flush-every", "0.05")
    _wait_for_index(killed, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    partial = read_index(killed)
    assert 0 < len(partial) < 240, "the kill should land mid-recording (make LONG longer)"
    assert read_manifest(killed).status == "recording"
    # the index only names complete files
    for r in partial:
        assert (killed / r["rgb"]).is_file() and (killed / r["label"]).is_file()

    assert _run(killed, "--resume") == 0
    report = validate(killed)
    assert report.ok and not report.warnings, report.format()  # no partial/temporary files left
    assert _hashes(killed) == _hashes(ref)
    assert read_index(killed) == read_index(ref)
    mk, mr = read_manifest(killed).to_dict(), read_manifest(ref).to_dict()
    for m in (mk, mr):
        m.pop("created"), m.pop("updated")
    assert mk == mr
    # resuming a finished dataset does nothing
    before = _hashes(killed)
    assert _run(killed, "--resume") == 0 and _hashes(killed) == before


def test_ctrl_c_stops_cleanly_and_is_resumable(tmp_path: Path) -> None:
    out = tmp_path / "int"
    proc = _spawn(out, *LONG, "--flush-every", "0.05", module=True)
    _wait_for_index(out, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    report = validate(out)
    assert [d for d in report.defects if "unfinished" not in d] == [], report.format()
    assert len(read_index(out)) > 0


def test_refuses_to_overwrite_without_flag(small: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "again"
    shutil.copytree(small, out)
    before = (out / "manifest.json").read_text()
    assert _run(out, *SMALL) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--overwrite" in err and len(err.splitlines()) == 1
    assert (out / "manifest.json").read_text() == before
    assert _run(out, *SMALL, "--overwrite", "--seed", "8") == 0
    assert json.loads((out / "manifest.json").read_text())["seed"] == 8
    assert validate(out).ok
    # a folder of other files is never a dataset to overwrite
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert _run(other, *SMALL, "--overwrite") == 1
    assert (other / "notes.txt").read_text() == "keep me"


def test_unknown_town_one_line_error_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "town"
    proc = subprocess.run(
        [sys.executable, "-m", "collect.record", "--town", "Town99", "--out", str(out), "--no-progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Town03" in lines[0], proc.stderr
    assert not out.exists()  # nothing written before the simulator accepted the plan


def test_unknown_weather_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _run(tmp_path / "w", "--weather", "Sunny") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown weather 'Sunny'") and len(err.splitlines()) == 1
    assert not (tmp_path / "w").exists()
    with pytest.raises(SystemExit) as e:
        _run(tmp_path / "u", "--split", "train=x")
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        _run(tmp_path / "u", "--frames", "10", "--episode-frames", "5")
    assert e.value.code == 2


def test_split_assignment_by_episode() -> None:
    fr = parse_split("train=0.8,val=0.1,test=0.1")
    assert fr == pytest.approx({"train": 0.8, "val": 0.1, "test": 0.1})
    splits = assign_splits(6, fr, seed=0)
    assert sorted(splits) == ["test", "train", "train", "train", "train", "val"]
    assert splits == assign_splits(6, fr, seed=0)  # deterministic
    assert assign_splits(2, fr, seed=0).count("train") >= 1
    assert assign_splits(10, parse_split("train=1"), seed=3) == ["train"] * 10


def test_full_disk_keeps_complete_frames_and_resumes(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import errno

    import dataset.writer as writer

    real = writer.atomic_write_bytes
    calls = {"n": 0}

    def flaky(path: Path, data: bytes, fsync: bool = False) -> None:
        calls["n"] += 1
        if calls["n"] > 20:  # the disk "fills up" after 10 frames
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data, fsync)

    out = tmp_path / "full"
    monkeypatch.setattr(writer, "atomic_write_bytes", flaky)
    assert _run(out, *SMALL) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot write") and "--resume" in err and len(err.splitlines()) == 1
    rows = read_index(out)
    assert 0 < len(rows) <= 10
    assert [d for d in validate(out).defects if "unfinished" not in d] == []
    monkeypatch.setattr(writer, "atomic_write_bytes", real)
    assert _run(out, "--resume") == 0
    assert validate(out).ok and _hashes(out) == _hashes(small)


def test_preview_contact_sheet(small: Path, tmp_path: Path) -> None:
    from dataset.format import read_rgb
    from dataset.preview import main as preview_main

    sheet = tmp_path / "sheet.png"
    assert preview_main([str(small), "--out", str(sheet), "--frames", "4"]) == 0
    img = read_rgb(sheet)
    assert img.shape[1] == 3 * 96 and img.shape[0] > 4 * 48
    assert preview_main([str(small), "--out", str(sheet)]) == 1  # no overwrite without the flag
    assert preview_main([str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 1
