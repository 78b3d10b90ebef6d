"""The closed loop end to end on the embedded backend with tiny models: frames.parquet,
summary, determinism, IoU against saved masks, Ctrl-C, the real-time budget, the headless
view, CLI errors, and the lane keeper driving on the ground-truth mask."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import run_sim
from harness.contracts import LoopConfig, LoopError, ModelSlot, ViewFrame, ViewModel
from harness.drivers import GroundProjector
from harness.loop import run_loop
from harness.oracle import GroundTruthMaskPredictor, truth_backend
from harness.outputs import prepare_out
from harness.runlog import COLUMNS, FRAME_SCHEMA, FrameLog, journal_path, recover
from perception.checkpoint import CheckpointMeta, save_checkpoint
from perception.metrics import BinaryConfusion, frame_scores
from perception.models import build_model
from scenarios import load_scenario
from sim.backend import make_backend
from sim.tags import ROAD_LINE

REPO = Path(__file__).resolve().parents[1]
FAST = ["--no-compile", "--threads", "1", "--no-progress"]
ISSUE_COLUMNS = {
    "run", "model", "scenario", "seed", "frame", "sim_time", "iou", "precision", "recall", "lane_px_true",
    "lane_px_pred", "preprocess_ms", "inference_ms", "postprocess_ms", "total_ms", "deadline_missed", "speed",
    "lateral_offset", "heading_error", "steer", "lane_departure", "collision", "weather", "in_junction",
}  # fmt: skip


def _tiny_checkpoint(path: Path, seed: int) -> Path:
    """A tiny untrained U-Net whose head is scaled so it predicts some lane pixels (plumbing only)."""
    torch.manual_seed(seed)
    model = build_model("unet", base_width=4, depth=3)
    with torch.no_grad():
        model.head.weight.mul_(1000.0)
    return save_checkpoint(path, model, CheckpointMeta.for_model(model, command="tests/test_loop.py"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    return _tiny_checkpoint(root / "tiny_a.pth", 0), _tiny_checkpoint(root / "tiny_b.pth", 1)


@pytest.fixture(scope="module")
def autopilot_run(tiny: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "ap"
    rc = run_sim.main(["--model", str(tiny[0]), "--model", str(tiny[1]), "--frames", "14", "--out", str(out), *FAST])
    assert rc == 0
    return out


# ----------------------------------------------------------------------------- outputs


def test_frames_parquet_one_row_per_frame_per_model(autopilot_run: Path) -> None:
    df = pd.read_parquet(autopilot_run / "frames.parquet")
    assert ISSUE_COLUMNS <= set(df.columns)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 14 * 2
    for name in ("tiny_a", "tiny_b"):
        d = df[df["model"] == name]
        assert d["frame"].tolist() == list(range(14))
        assert np.allclose(np.diff(d["sim_time"]), 0.05)
    assert (df["scenario"] == "town03_clear").all() and (df["seed"] == 3).all()
    assert df["iou"].between(0, 1).all()  # every frame of town03_clear's start has lane pixels
    assert (df["lane_px_true"] > 0).all() and (df["lane_px_pred"] > 0).all()
    assert (df["inferred"]).all() and (df["inference_ms"] > 0).all()
    assert np.allclose(df["total_ms"], df["preprocess_ms"] + df["inference_ms"] + df["postprocess_ms"])
    assert (df["speed"] >= 0).all() and df["lateral_offset"].abs().max() < 1.0
    assert not df["collision"].any() and not df["lane_departure"].any()
    assert (df["weather"] == "ClearNoon").all()
    # The two models saw the same frames: truth pixel counts agree frame by frame.
    a, b = (df[df["model"] == n].set_index("frame") for n in ("tiny_a", "tiny_b"))
    assert (a["lane_px_true"] == b["lane_px_true"]).all() and (a["speed"] == b["speed"]).all()


def test_summary_and_report(autopilot_run: Path) -> None:
    summary = json.loads((autopilot_run / "summary.json").read_text())
    assert summary["end"] == "completed" and not summary["interrupted"] and summary["rows"] == 28
    assert [m["name"] for m in summary["models"]] == ["tiny_a", "tiny_b"]
    df = pd.read_parquet(autopilot_run / "frames.parquet")
    for m in summary["models"]:
        d = df[df["model"] == m["name"]]
        assert m["scheme"] == "float" and m["size_bytes"] > 0 and m["threads"] == 1
        assert math.isclose(m["mean_iou"], d["iou"].mean(), rel_tol=1e-9)
        lat = m["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert math.isclose(lat["p90"], float(np.percentile(d["total_ms"], 90)), rel_tol=1e-9)
        assert m["deadline_misses"] == int(d["deadline_missed"].sum())
        assert 0 <= m["dataset_iou"] <= 1 and m["fps"] > 0
    html = (autopilot_run / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 4 and "tiny_b" in html


def test_iou_written_equals_metrics_on_saved_masks(autopilot_run: Path) -> None:
    df = pd.read_parquet(autopilot_run / "frames.parquet").set_index(["model", "frame"])
    strip = json.loads((autopilot_run / "strip" / "strip.json").read_text())["frames"]
    assert strip, "the two tiny models disagree somewhere"
    for item in strip:
        truth = cv2.imread(str(autopilot_run / "strip" / item["truth"]), cv2.IMREAD_GRAYSCALE) > 0
        for name, file in item["masks"].items():
            mask = cv2.imread(str(autopilot_run / "strip" / file), cv2.IMREAD_GRAYSCALE) > 0
            scores = frame_scores(mask, truth)
            row = df.loc[(name, item["frame"])]
            assert scores.iou == row["iou"] and scores.lane_px_pred == row["lane_px_pred"]


def test_same_seed_same_iou(autopilot_run: Path, tiny: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "again"
    assert (
        run_sim.main(["--model", str(tiny[0]), "--model", str(tiny[1]), "--frames", "14", "--out", str(out), *FAST])
        == 0
    )
    a = pd.read_parquet(autopilot_run / "frames.parquet")
    b = pd.read_parquet(out / "frames.parquet")
    assert a["iou"].tolist() == b["iou"].tolist()
    assert a["lateral_offset"].tolist() == b["lateral_offset"].tolist()


def test_outputs_not_overwritten(autopilot_run: Path, tiny: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    before = (autopilot_run / "summary.json").read_bytes()
    assert run_sim.main(["--model", str(tiny[0]), "--frames", "2", "--out", str(autopilot_run), *FAST]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--overwrite" in err and "\n" not in err
    assert (autopilot_run / "summary.json").read_bytes() == before
    with pytest.raises(LoopError):
        prepare_out(autopilot_run, overwrite=False)


# ----------------------------------------------------------------------------- Ctrl-C


def _start_and_signal(tiny: tuple[Path, Path], out: Path, sig: int) -> tuple[subprocess.Popen, str, str]:
    """Start a long run_sim.py, wait until its first rows are flushed, run 1.5 s more, send `sig`."""
    cmd = [sys.executable, "run_sim.py", "--model", str(tiny[0]), "--frames", "100000", "--out", str(out), *FAST]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not journal_path(out / "frames.parquet").exists():  # the first rows are flushed a second in
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        time.sleep(1.5)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, stdout, stderr


def test_sigint_leaves_valid_parquet_and_summary(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "killed"
    proc, stdout, stderr = _start_and_signal(tiny, out, signal.SIGINT)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    table = pq.read_table(out / "frames.parquet")
    assert not journal_path(out / "frames.parquet").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["end"] == "interrupted"
    assert table.num_rows == summary["rows"] == summary["models"][0]["frames"] > 5
    assert table.column("frame").to_pylist() == list(range(table.num_rows))
    assert summary["models"][0]["episode"]["end_reason"] == "interrupted"
    assert "tiny_a" in stdout  # the per-model table is still printed


def test_sigkill_loses_at_most_the_last_second_of_frames(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "crashed"
    proc, _, _ = _start_and_signal(tiny, out, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "frames.parquet").exists() and not (out / "summary.json").exists()
    # The report recovers the flushed frames, then says what is missing.
    rc = subprocess.run([sys.executable, "-m", "harness.report", str(out)], cwd=REPO, capture_output=True, text=True)
    assert rc.returncode == 1 and "killed" in rc.stderr and "recovered" in rc.stderr
    table = pq.read_table(out / "frames.parquet")  # at least the batch whose flush the test waited for
    assert table.num_rows >= 1 and table.column("frame").to_pylist() == list(range(table.num_rows))
    assert table.schema.names == list(COLUMNS) and not journal_path(out / "frames.parquet").exists()


def test_a_killed_runs_journal_is_not_overwritten(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "crashed"
    out.mkdir()
    journal_path(out / "frames.parquet").write_bytes(b"rows of a killed run")
    with pytest.raises(LoopError, match="already holds a run"):
        prepare_out(out, overwrite=False)
    prepare_out(out, overwrite=True)
    assert not journal_path(out / "frames.parquet").exists()


def test_recover_keeps_complete_batches_of_a_torn_journal(tmp_path: Path) -> None:
    path = tmp_path / "frames.parquet"
    log = FrameLog(path, flush_every_s=1e9)
    zero = {"string": "x", "int64": 0, "double": 0.0, "bool": False}
    row = {f.name: zero[str(f.type)] for f in FRAME_SCHEMA}
    for batch in range(3):
        for i in range(4):
            log.append(row | {"frame": batch * 4 + i})
        log.flush()
    log._sink.close()  # the process "dies": no close(), then the last write is torn
    journal = journal_path(path)
    journal.write_bytes(journal.read_bytes()[:-100])
    assert recover(path) == 8
    assert pq.read_table(path).column("frame").to_pylist() == list(range(8))
    assert recover(path) is None  # nothing left to recover


# ----------------------------------------------------------------------------- real-time budget


def _run_truth(tmp_path: Path, latency_ms: float, frames: int, **kw) -> tuple[pd.DataFrame, dict]:
    """The test-only ground-truth-mask 'model' (harness.oracle) in the loop on town03_clear."""
    pred = GroundTruthMaskPredictor(latency_ms=latency_ms)
    cfg = LoopConfig(scenario=load_scenario("town03_clear"), out=tmp_path, frames=frames, strip_size=0, **kw)
    result = run_loop(cfg, [ModelSlot(pred.name, pred)], BinaryConfusion, backend_factory=truth_backend(pred))
    return pd.read_parquet(tmp_path / "frames.parquet"), result.summary["models"][0]


def test_realtime_budget_charges_latency(tmp_path: Path) -> None:
    # 120 ms per frame at 20 Hz: the model starts frames 0, 3, 6, ... and misses every deadline.
    df, summary = _run_truth(tmp_path / "slow", 120.0, 12, realtime=True)
    assert df["inferred"].tolist() == [i % 3 == 0 for i in range(12)]
    assert df["deadline_missed"].all() and summary["deadline_misses"] == 12
    assert df["total_ms"].isna().sum() == 8 and summary["inferred_frames"] == 4
    assert df["iou"].iloc[0] == df["iou"].iloc[1] == 0.0  # nothing finished yet: an empty mask is in use
    assert df["iou"].iloc[2] > 0.5  # frame 0's mask, ready at 120 ms, steers (and is scored at) frame 2
    # 30 ms fits the 50 ms budget: every frame is fresh, perfect masks.
    df, summary = _run_truth(tmp_path / "fast", 30.0, 12, realtime=True)
    assert df["inferred"].all() and not df["deadline_missed"].any() and (df["iou"] == 1.0).all()
    # Without --realtime a slow model still sees every frame; misses only say it was over budget.
    df, summary = _run_truth(tmp_path / "plain", 120.0, 6)
    assert df["inferred"].all() and (df["iou"] == 1.0).all() and df["deadline_missed"].all()


# ----------------------------------------------------------------------------- lane keeping


def test_lane_keeper_on_true_mask_drives_300m_without_departures(tmp_path: Path) -> None:
    """Geometry + controller, independent of any model: the ground-truth mask drives town03_clear.

    Holding straight on through junctions, it keeps its lane for the ~300 m the
    spawn point's road has before a T junction without a straight exit, where it leaves the
    road (the episode ends early, "off_road"). With junctions handed to the autopilot (the
    default) it keeps its lane over every road, junction after junction, behind the traffic.
    Deterministic: the same numbers every run."""
    df, summary = _run_truth(tmp_path / "hold", 1.0, 1200, drive="model", junctions="hold")
    lk = summary["lane_keeping"]
    assert lk["distance_m"] >= 300.0 and lk["lane_departures"] == 0 and lk["collisions"] == 0, lk
    assert lk["mean_abs_offset_m"] < 0.3 and summary["episode"]["end_reason"] == "off_road"
    assert df["in_junction"].sum() > 20 and not df["lane_departure"].any()  # it crossed junctions on its own
    df, summary = _run_truth(tmp_path / "nav", 1.0, 2000, drive="model", junctions="autopilot")
    lk = summary["lane_keeping"]
    assert lk["distance_m"] >= 600.0 and lk["lane_departures"] == 0 and lk["collisions"] == 0, lk
    assert summary["episode"]["end_reason"] == "completed" and df["in_junction"].sum() > 100


def test_ground_projection_matches_the_renderer() -> None:
    """Lane-marking pixels project onto the painted markings: the lane's boundaries sit at
    +-half a lane width from the true centre in front of the car on a straight stretch."""
    backend = make_backend("embedded")
    obs = backend.reset(load_scenario("town03_clear"))
    proj = GroundProjector.from_camera(obs.camera.spec)
    pts = proj.points(obs.camera.labels == ROAD_LINE)
    near = pts[(pts[:, 0] > 4) & (pts[:, 0] < 7)]
    half = obs.ego.lane_width / 2
    left = near[(near[:, 1] > 0.8) & (near[:, 1] < 2.6), 1]
    assert left.size > 20 and abs(float(np.median(left)) - half) < 0.3
    uv = proj.to_pixels(np.array([5.0]), np.array([float(np.median(left))]), image_scale=True)[0]
    assert (obs.camera.labels[int(uv[1]) - 2 : int(uv[1]) + 3, int(uv[0]) - 2 : int(uv[0]) + 3] == ROAD_LINE).any()


# ----------------------------------------------------------------------------- view


def test_view_renders_headless_and_handles_keys(tmp_path: Path) -> None:
    pygame = pytest.importorskip("pygame")
    from harness.view import FN_RGB, FP_RGB, TP_RGB, LoopView

    rgb = np.full((80, 160, 3), 90, np.uint8)
    truth = np.zeros((80, 160), bool)
    pred = np.zeros((80, 160), bool)
    truth[40:60, 20:60] = True  # TP where both, FN left of it
    pred[40:60, 40:80] = True  # FP right of it
    models = [
        ViewModel("m_a", "qat", pred, 0.33, 0.4, 5.0, 6.0, 200.0, [4.0, 5.0, 6.0, 5.5], False),
        ViewModel("m_b", "float", truth, 1.0, 1.0, 9.0, 9.5, 110.0, [9.0, 9.5], True),
    ]
    frame = ViewFrame(7, 0.35, rgb, truth, models, 8.0, -0.1, 19.5, "autopilot")
    view = LoopView(scale=2, screenshot_dir=tmp_path)
    assert view.update(frame)
    shot = cv2.cvtColor(cv2.imread(str(view.screenshot())), cv2.COLOR_BGR2RGB)
    assert shot.shape[1] >= 320 + 200

    def near(px, colour):
        return np.abs(px.astype(int) - np.array(colour) * 0.7 - 90 * 0.3).max() < 12

    assert near(shot[100, 100], TP_RGB)  # (row 50, col 50) at scale 2
    assert near(shot[100, 60], FN_RGB) and near(shot[100, 140], FP_RGB)
    assert tuple(shot[20, 20]) == (90, 90, 90)
    assert shot[:, 330:].max() > 200  # HUD text and sparkline
    # Keys: tab shows the next model, o hides overlays, q quits.
    for key in (pygame.K_TAB, pygame.K_o):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))
    assert view.update(frame) and view.shown == 1 and not view.overlays
    shot = cv2.cvtColor(cv2.imread(str(view.screenshot(tmp_path / "plain.png"))), cv2.COLOR_BGR2RGB)
    assert tuple(shot[100, 140]) == (90, 90, 90)
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_q))
    assert not view.update(frame)
    view.close()


def test_cli_view_model_drive(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "view"
    rc = run_sim.main(
        ["--model", str(tiny[0]), "--drive", "model", "--view", "--screenshot-every", "2", "--frames", "6",
         "--out", str(out), *FAST]
    )  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    df = pd.read_parquet(out / "frames.parquet")
    lane = summary["models"][0]["lane_keeping"]
    assert summary["drive"] == "model" and len(df) == 6
    assert lane["distance_m"] == df["distance"].iloc[-1] and df["distance"].is_monotonic_increasing
    shots = sorted((out / "screenshots").glob("*.png"))
    assert len(shots) == 3  # frames 2, 4, 6 of 6
    img = cv2.imread(str(shots[-1]))
    assert img.shape[0] >= 160 * 2 and img.std() > 10  # a drawn window, not a blank surface


# ----------------------------------------------------------------------------- errors


def _err(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert run_sim.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_cli_errors(tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = ["--out", str(tmp_path / "e"), *FAST]
    assert "not found" in _err(capsys, ["--model", str(tmp_path / "nope.pth"), *out])
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"not a checkpoint at all")
    assert "corrupt" in _err(capsys, ["--model", str(bad), *out])
    toml = tmp_path / "typo.toml"
    toml.write_text('town = "Town03"\nspeed = 3\n')
    assert "unknown key 'speed'" in _err(capsys, ["--model", str(tiny[0]), "--scenario", str(toml), *out])
    assert "unknown town" in _err(capsys, ["--model", str(tiny[0]), "--town", "Atlantis", *out])
    err = _err(capsys, ["--model", str(tiny[0]), "--backend", "carla", "--port", "1", "--timeout", "1", *out])
    assert "carla" in err.lower()
    assert run_sim.main(["--model", str(tiny[0]), "--screenshot-every", "5", *out]) == 2  # needs --view
    assert "--screenshot-every needs --view" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()  # failed runs leave no folder behind


def test_model_resolution_and_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_sim, "MODELS_DIR", tmp_path)
    (tmp_path / "shipped.pth").write_bytes(b"x")
    monkeypatch.chdir(tmp_path.parent)
    assert run_sim.resolve_model("shipped.pth") == tmp_path / "shipped.pth"
    with pytest.raises(run_sim.UsageError, match="models/unet_qat.pth is missing"):
        run_sim.resolve_model("unet_qat.pth")
    assert run_sim.unique_names([Path("a/m.pth"), Path("b/m.pth"), Path("c/x.pth")]) == ["a_m", "b_m", "x"]


def test_size_mismatch_is_resized_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    model = build_model("unet", base_width=4, depth=3)
    path = save_checkpoint(tmp_path / "small.pth", model, CheckpointMeta.for_model(model, input_size=(80, 160)))
    with caplog.at_level("WARNING"):
        (slot,) = run_sim.load_models([str(path)], (160, 320), threads=1, compile=False)
    assert "resized" in caplog.text
    mask, _ = slot.predictor.predict_timed(np.zeros((160, 320, 3), np.uint8))
    assert mask.shape == (160, 320)


def test_scenario_overrides() -> None:
    args = run_sim.build_parser().parse_args(["--town", "Town10HD", "--weather", "HardRainNoon", "--frames", "9"])
    sc = run_sim.build_scenario(args)
    assert sc.town == "Town10HD" and sc.weathers[0].name == "HardRainNoon" and sc.frames == 9
    base = replace(load_scenario("town03_clear"), frames=9, metres=None)
    args = run_sim.build_parser().parse_args(["--frames", "9"])
    assert run_sim.build_scenario(args) == base


def test_models_are_all_loaded_before_any_is_compiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a QAT checkpoint resets torch.compile's caches, so warming up model 1 before
    loading model 2 would make model 1 compile again on the loop's first frame."""
    import perception.predictor as predictor_mod

    events: list[str] = []
    real = predictor_mod.load_predictor

    def spy(path, **kw):
        pred = real(path, **kw)
        events.append(f"load {Path(path).stem}")
        warm = pred.warmup
        pred.warmup = lambda *a, **k: (events.append(f"warm {Path(path).stem}"), warm(*a, **k))[1]
        return pred

    monkeypatch.setattr(predictor_mod, "load_predictor", spy)
    paths = [str(_tiny_checkpoint(tmp_path / f"m{i}.pth", i)) for i in range(3)]
    slots = run_sim.load_models(paths, (160, 320), threads=1, compile=False)
    assert [s.name for s in slots] == ["m0", "m1", "m2"]
    assert events == ["load m0", "load m1", "load m2", "warm m0", "warm m1", "warm m2"]
