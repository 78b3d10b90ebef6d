"""Training and evaluation on a tiny dataset recorded here with the real embedded backend:
losses, paired augmentation, the training CLI (loss goes down, resume is bit-identical,
NaN stops cleanly, errors are one line) and evaluate's numbers against perception.metrics."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train.train as train_mod
from collect.record import main as record_main
from dataset.reader import IGNORE_INDEX, LaneDataset
from perception.checkpoint import Task, build_from_checkpoint, load_checkpoint
from perception.metrics import BinaryConfusion
from train.augment import AugmentConfig, AugmentedDataset, PairedAugment, affine_theta, warp_pair
from train.evaluate import evaluate_checkpoint
from train.evaluate import main as evaluate_main
from train.losses import BCELoss, DiceLoss, build_loss

REPO = Path(__file__).resolve().parents[1]
TINY = ["--arch-kwargs", '{"base_width": 4, "depth": 3}', "--batch-size", "4", "--lr", "1e-2", "--threads", "1"]
NO_AUG = AugmentConfig(
    flip_p=0.0,
    scale=(1.0, 1.0),
    translate=0.0,
    rotate_deg=0.0,
    brightness=0.0,
    contrast=0.0,
    saturation=0.0,
    hue=0.0,
    blur_p=0.0,
    noise_p=0.0,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 episodes x 8 frames at 64x128: 16 train, 8 val, 8 test frames."""
    out = tmp_path_factory.mktemp("train") / "tiny"
    args = ["--episodes", "4", "--episode-frames", "8", "--every", "3", "--width", "128", "--height", "64"]
    args += ["--seed", "5", "--split", "train=0.5,val=0.25,test=0.25", "--out", str(out), "--no-progress"]
    assert record_main(args) == 0
    return out


def _train(data: Path, out: Path, *extra: str) -> int:
    return train_mod.main(["--data", str(data), "--out", str(out), "--no-progress", *TINY, *extra])


def _log(out: Path) -> list[dict[str, str]]:
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run3(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 3-epoch run with augmentation."""
    out = tmp_path_factory.mktemp("runs") / "full"
    assert _train(data, out, "--epochs", "3") == 0
    return out


# ----------------------------------------------------------------------------- losses


def test_bce_and_pos_weight() -> None:
    target = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    perfect = (target * 2 - 1) * 30
    assert float(BCELoss()(perfect, target)) < 1e-6
    logits = torch.zeros_like(target)
    ones = torch.ones_like(target)
    assert math.isclose(float(BCELoss(4.0)(logits, ones)), 4 * float(BCELoss()(logits, ones)), rel_tol=1e-6)
    assert math.isclose(float(BCELoss(4.0)(logits, ones * 0)), float(BCELoss()(logits, ones * 0)), rel_tol=1e-6)


def test_dice_binary() -> None:
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:8, 2:12] = 1
    perfect = (target * 2 - 1) * 30
    dice = DiceLoss()
    assert float(dice(perfect, target)) < 1e-3
    assert float(dice(-perfect, target)) > 0.95
    assert float(dice(torch.full_like(target, -30), torch.zeros_like(target))) < 1e-3  # empty vs empty
    both = build_loss("bce+dice")(perfect * 0.1, target)
    assert math.isclose(
        float(both), float(BCELoss()(perfect * 0.1, target) + dice(perfect * 0.1, target)), rel_tol=1e-6
    )


def test_multiclass_losses_ignore_pixels() -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    target[:, :2] = IGNORE_INDEX
    logits = torch.randn(2, 3, 8, 8, generator=g)
    changed = logits.clone()
    changed[:, :, :2] = 100 * torch.randn(2, 3, 2, 8, generator=g)  # only the ignored rows differ
    for name in ("ce", "ce+dice"):
        loss = build_loss(name, "multiclass")
        assert torch.allclose(loss(logits, target), loss(changed, target))
    perfect = torch.nn.functional.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 40
    assert float(DiceLoss()(perfect, target)) < 1e-3


def test_build_loss_errors() -> None:
    with pytest.raises(KeyError, match="available: bce, dice"):
        build_loss("focal")
    with pytest.raises(ValueError, match="multiclass task"):
        build_loss("ce", "binary")
    with pytest.raises(ValueError, match="BCE only"):
        build_loss("dice", pos_weight=3.0)
    with pytest.raises(ValueError, match="one logit channel"):
        build_loss("bce")(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))


# ----------------------------------------------------------------------------- augmentation


def _blocks(seed: int, h: int = 64, w: int = 128) -> torch.Tensor:
    """HxW class map of 8x8 blocks of classes 0..2."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 3, (h // 8, w // 8), generator=g).repeat_interleave(8, 0).repeat_interleave(8, 1)


COLOURS = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9]])  # class -> RGB in [0, 1]


def test_flip_twice_is_identity() -> None:
    aug = PairedAugment([0.5] * 3, [0.25] * 3, AugmentConfig(**{**NO_AUG.__dict__, "flip_p": 1.0}))
    image, target = (torch.rand(3, 16, 32) - 0.5) / 0.25, (torch.rand(1, 16, 32) > 0.5).float()
    g = torch.Generator().manual_seed(0)
    once = aug(image, target, g)
    twice = aug(*once, g)
    assert not torch.equal(once[1], target)
    assert torch.allclose(twice[0], image, atol=1e-5) and torch.equal(twice[1], target)


def test_geometry_keeps_colour_and_label_aligned() -> None:
    """An image whose colour encodes the class: after flip/zoom/shift/rotation, the class
    read back from the colour must agree with the warped label (up to blended edges)."""
    mean, std = [0.5] * 3, [0.25] * 3
    cfg = AugmentConfig(**{**NO_AUG.__dict__, "flip_p": 0.5, "scale": (0.8, 1.25), "translate": 0.1, "rotate_deg": 8})
    aug = PairedAugment(mean, std, cfg)
    for seed in range(6):
        classes = _blocks(seed)
        image = (COLOURS[classes].permute(2, 0, 1) - 0.5) / 0.25
        for multiclass in (True, False):
            target = classes if multiclass else (classes == 1).float()[None]
            out_img, out_t = aug(image, target, torch.Generator().manual_seed(seed))
            rgb = out_img * 0.25 + 0.5
            decoded = torch.cdist(rgb.permute(1, 2, 0).reshape(-1, 3), COLOURS).argmin(1).reshape(64, 128)
            dark = rgb.sum(0) < 0.3  # border brought in from outside the frame
            if multiclass:
                assert out_t.dtype == torch.int64
                inside = out_t != IGNORE_INDEX
                assert set(out_t.unique().tolist()) <= {0, 1, 2, IGNORE_INDEX}
                agree = (decoded == out_t)[inside & ~dark].float().mean()
                assert ((~inside) == dark).float().mean() > 0.97
            else:
                assert set(out_t.unique().tolist()) <= {0.0, 1.0}
                agree = ((decoded == 1) == (out_t[0] > 0))[~dark].float().mean()
            assert agree > 0.97, (seed, multiclass, float(agree))


def test_warp_identity_and_photometric_leaves_label() -> None:
    image, target = torch.rand(3, 16, 32), (torch.rand(1, 16, 32) > 0.5).float()
    same = warp_pair(image, target, affine_theta(16, 32), multiclass=False)
    assert torch.allclose(same[0], image, atol=1e-5) and torch.equal(same[1], target)
    photo = PairedAugment([0.5] * 3, [0.25] * 3, AugmentConfig(flip_p=0, scale=(1, 1), translate=0, rotate_deg=0))
    out_img, out_t = photo(image, target, torch.Generator().manual_seed(3))
    assert torch.equal(out_t, target) and not torch.allclose(out_img, image)


def test_augmentation_is_deterministic_per_sample(data: Path) -> None:
    ds = LaneDataset(data, "train")
    aug = AugmentedDataset(ds, PairedAugment(ds.mean, ds.std), seed=3)
    aug.set_epoch(2)
    forward = [aug[i] for i in range(4)]
    backward = [aug[i] for i in reversed(range(4))][::-1]
    for (a, b), (c, d) in zip(forward, backward, strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)
    aug.set_epoch(3)
    assert not torch.equal(aug[0][0], forward[0][0])


# ----------------------------------------------------------------------------- training


def test_training_reduces_loss_and_writes_checkpoints(run3: Path, data: Path) -> None:
    rows = _log(run3)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert set(rows[0]) == set(train_mod.CSV_FIELDS)
    for name in ("last.pth", "best.pth"):
        torch.load(run3 / name, weights_only=True)  # the safe loader reads both
        model, meta = build_from_checkpoint(run3 / name)
        assert meta.arch == "unet" and meta.arch_kwargs["base_width"] == 4
        assert meta.task == Task("binary", (24,))
        assert tuple(meta.input_size) == (64, 128)
        assert meta.normalisation.to_dict() == LaneDataset(data, "train").normalisation
        assert meta.data["roots"] == [str(data)] and str(data) in meta.data["manifests"]
        assert meta.data["train"]["frames"] == 16 and meta.data["val"]["frames"] == 8
        assert meta.command.startswith("python train/train.py --data")
    best_iou = max(float(r["val_iou"]) for r in rows)
    _, best_meta = load_checkpoint(run3 / "best.pth")
    assert math.isclose(best_meta.metrics["val_iou"], best_iou, rel_tol=1e-5)


def test_resume_is_bit_identical(run3: Path, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "killed"
    real = train_mod.train_one_epoch
    calls = []

    def killed_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", killed_in_epoch_3)
    assert _train(data, out, "--epochs", "3") == 130
    assert [r["epoch"] for r in _log(out)] == ["1", "2"]
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    # Flags other than --out are ignored on resume: the run's own settings are stored.
    assert train_mod.main(["--resume", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    full, resumed = load_checkpoint(run3 / "last.pth")[0], load_checkpoint(out / "last.pth")[0]
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
    timed = ("seconds", "train_cpu_s")  # clocks differ between runs; everything else is bit-identical
    assert _log(out) == [{**r, **{k: s[k] for k in timed}} for r, s in zip(_log(run3), _log(out), strict=True)]


def test_nan_loss_stops_and_keeps_last_good(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_build = train_mod.build_loss
    steps = []

    def nan_from_step_5(*args, **kwargs):
        loss = real_build(*args, **kwargs)

        def wrapped(logits, target):
            value = loss(logits, target)
            if logits.requires_grad:  # training steps only (4 per epoch here)
                steps.append(1)
                if len(steps) >= 5:
                    return value * float("nan")
            return value

        return wrapped

    monkeypatch.setattr(train_mod, "build_loss", nan_from_step_5)
    out = tmp_path / "nan"
    assert _train(data, out, "--epochs", "3", "--no-augment") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: training loss became nan at epoch 2, batch 1") and "last.pth" in err
    _, meta = load_checkpoint(out / "last.pth")
    assert meta.metrics["epoch"] == 1 and [r["epoch"] for r in _log(out)] == ["1"]


def test_multiclass_run(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "multi"
    assert _train(data, out, "--epochs", "1", "--tags", "1,24,14", "--loss", "ce") == 0
    _, meta = load_checkpoint(out / "last.pth")
    assert meta.task.to_dict() == {"kind": "multiclass", "tags": [1, 24, 14]} and meta.arch_kwargs["num_classes"] == 3
    result = evaluate_checkpoint(out / "last.pth", [str(data)], "test")
    assert len(result["per_class_iou"]) == 3 and 0 <= result["iou"] <= 1


def test_cli_errors(data: Path, run3: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "a")], "manifest"),
        (["--data", str(data), "--out", str(run3)], "already holds a run"),
        (["--resume", "--out", str(tmp_path / "b")], "nothing to resume"),
        (["--data", str(data), "--out", str(tmp_path / "c"), "--arch", "vgg"], "available: "),
        (["--data", str(data), "--out", str(tmp_path / "d"), "--size", "60x100"], "not divisible by 16"),
        (["--data", str(data), "--out", str(tmp_path / "e"), "--loss", "ce"], "multiclass task"),
    ]
    for argv, fragment in cases:
        assert train_mod.main([*argv, "--no-progress"]) == 1, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and fragment in err, err
    for argv in (["--data", str(data), "--size", "big"], ["--data", str(data), "--arch-kwargs", "{bad"]):
        with pytest.raises(SystemExit) as exc:
            train_mod.main([*argv, "--out", str(tmp_path / "u")])
        assert exc.value.code == 2


def test_script_entry_points(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "train/train.py", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and res.stderr.startswith("error: ") and len(res.stderr.splitlines()) == 1
    res = subprocess.run([sys.executable, "-m", "train.evaluate", "--help"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0 and "examples:" in res.stdout


# ----------------------------------------------------------------------------- evaluation


def test_evaluate_matches_perception_metrics(run3: Path, data: Path, tmp_path: Path) -> None:
    ckpt = run3 / "best.pth"
    result = evaluate_checkpoint(ckpt, [str(data)], "test", batch_size=3)
    model, meta = build_from_checkpoint(ckpt)
    ds = LaneDataset(data, "test", size=tuple(meta.input_size))
    conf = BinaryConfusion()
    preds, truths = [], []
    with torch.no_grad():
        for i in range(len(ds)):
            image, target = ds[i]
            pred = (model(image[None])[0, 0] > 0).numpy()
            truth = target[0].numpy() > 0.5
            conf.update(pred, truth)
            preds.append(pred)
            truths.append(truth)
    expected = conf.compute()
    for k in ("tp", "fp", "fn", "tn", "frames", "empty_frames"):
        assert result[k] == expected[k], k
    for k in ("iou", "mean_frame_iou", "precision", "recall", "f1"):
        assert math.isclose(result[k], expected[k], rel_tol=1e-9) or (math.isnan(result[k]) and math.isnan(expected[k]))
    p, t = np.stack(preds), np.stack(truths)  # pooled IoU, independently
    union = np.logical_or(p, t).sum()
    assert math.isclose(result["iou"], np.logical_and(p, t).sum() / union if union else math.nan, rel_tol=1e-9)

    pred_dir, out_json = tmp_path / "pred", tmp_path / "eval.json"
    argv = ["--model", str(ckpt), "--data", str(data), "--save-predictions", str(pred_dir), "--json", str(out_json)]
    assert evaluate_main(argv) == 0
    assert len(list(pred_dir.glob("*_pred.png"))) == len(ds) == len(list(pred_dir.glob("*_overlay.png")))
    saved = json.loads(out_json.read_text())
    assert saved["tp"] == expected["tp"] and saved["frames"] == len(ds)
    assert evaluate_main(argv) == 1  # the JSON exists: not overwritten without --overwrite


def test_evaluate_onnx_runtime_agrees_with_torch(run3: Path, data: Path) -> None:
    pytest.importorskip("onnxruntime")
    ckpt = run3 / "best.pth"
    torch_result = evaluate_checkpoint(ckpt, [str(data)], "test", batch_size=3)
    onnx_result = evaluate_checkpoint(ckpt, [str(data)], "test", batch_size=3, runtime="onnx")
    assert onnx_result["runtime"] == "onnx" and onnx_result["frames"] == torch_result["frames"]
    total = torch_result["tp"] + torch_result["fp"] + torch_result["fn"] + torch_result["tn"]
    flipped = sum(abs(onnx_result[k] - torch_result[k]) for k in ("tp", "fp", "fn", "tn")) / 2
    assert flipped / total < 1e-3  # the same model in another runtime: a few edge pixels at most
    assert abs(onnx_result["iou"] - torch_result["iou"]) < 0.005
