"""The one model path: `load_predictor` reads a file once, `Predictor.logits_batch` gives the
logits of every frame of a batch whatever the runtime, and `perception.evaluation.evaluate`
scores in-memory models, files and recorded frames by the same rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from collect.record import main as record_main
from perception.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    binary_task,
    multiclass_task,
    save_checkpoint,
)
from perception.evaluation import dataset_for, evaluate
from perception.metrics import BinaryConfusion
from perception.models import build_model
from perception.predictor import load_predictor, module_predictor

ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 128)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 episodes x 6 frames at 64x128 (split: half train, half test)."""
    out = tmp_path_factory.mktemp("evaluation") / "tiny"
    args = ["--episodes", "2", "--episode-frames", "6", "--every", "3", "--width", "128", "--height", "64"]
    args += ["--seed", "7", "--split", "train=0.5,test=0.5", "--out", str(out), "--no-progress"]
    assert record_main(args) == 0
    return out


def _tiny(task=None) -> tuple[torch.nn.Module, CheckpointMeta]:
    task = task or binary_task()
    torch.manual_seed(0)
    model = build_model("unet", base_width=4, depth=2, num_classes=task.num_classes).eval()
    return model, CheckpointMeta.for_model(model, task=task, input_size=SIZE, command="tests/test_evaluation.py")


@pytest.fixture(scope="module")
def tiny_float(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, meta = _tiny()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth", model, meta)


def _frames(n: int = 3) -> np.ndarray:
    """`n` distinct normalised 1x3xHxW-ready inputs, stacked N x 3 x H x W."""
    rng = np.random.default_rng(1)
    return rng.normal(0, 1, (n, 3, *SIZE)).astype(np.float32)


def test_load_predictor_reads_a_checkpoint_once(tiny_float: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real = torch.load

    def counting(f, *args, **kwargs):
        reads.append(str(f))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    for runtime in ("torch", "onnx"):
        reads.clear()
        load_predictor(tiny_float, runtime=runtime, threads=1, compile=False)
        assert reads == [str(tiny_float)], runtime


def test_load_predictor_reads_a_quantized_checkpoint_once(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: reads.append(str(f)) or real(f, *a, **k))
    pred = load_predictor(ROOT / "models" / "unet_ptq.pth", threads=1, compile=False)
    assert pred.scheme == "ptq" and reads == [str(ROOT / "models" / "unet_ptq.pth")]


def test_load_predictor_reads_an_onnx_file_once(monkeypatch: pytest.MonkeyPatch) -> None:
    onnx = pytest.importorskip("onnx")
    path = ROOT / "models" / "unet_qat.onnx"
    reads: list[Path] = []
    real = Path.read_bytes

    def counting(self: Path) -> bytes:
        reads.append(self)
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    monkeypatch.setattr(onnx, "load", lambda *a, **k: pytest.fail("the file was parsed from disk a second time"))
    runtimes = ["onnx"] + (["openvino"] if _installed("openvino") else [])
    for runtime in runtimes:
        reads.clear()
        pred = load_predictor(path, runtime=runtime, threads=1)
        assert pred.scheme == "qat" and reads == [path], runtime


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("runtime", ["torch", "torch-compiled", "onnx", "openvino"])
def test_logits_batch_is_every_frame_of_the_batch(tiny_float: Path, runtime: str) -> None:
    """Frame i of the batch gets frame i's logits: runtimes that reuse an output buffer
    (OpenVINO) are copied out, the eager float model runs the batch in one call."""
    if runtime == "openvino" and not _installed("openvino"):
        pytest.skip("OpenVINO not installed (pip install 'laneloop[openvino]')")
    if runtime == "onnx" and not _installed("onnxruntime"):
        pytest.skip("onnxruntime not installed")
    name, compile = (runtime, False) if runtime != "torch-compiled" else ("torch", True)
    pred = load_predictor(tiny_float, runtime=name, threads=1, compile=compile)
    x = _frames()
    batch = pred.logits_batch(x)
    single = np.concatenate([np.array(pred.logits_batch(x[i : i + 1]), copy=True) for i in range(len(x))])
    assert batch.shape == (3, 1, *SIZE)
    np.testing.assert_allclose(batch, single, atol=1e-4, rtol=1e-4)
    assert not np.allclose(batch[0], batch[-1])  # distinct frames, distinct logits


def test_module_and_file_are_scored_alike(tiny_float: Path, data: Path) -> None:
    """Training scores its in-memory model as train/evaluate.py scores the saved file."""
    model, meta = _tiny()
    ds = dataset_for(meta, data, "test")
    from_file = evaluate(load_predictor(tiny_float, threads=1, compile="int8"), ds, batch_size=4)
    in_memory = evaluate(module_predictor(model, meta), ds, batch_size=4)
    assert from_file == pytest.approx(in_memory, nan_ok=True)
    assert from_file["frames"] == len(ds) and "loss" not in from_file
    with_loss = evaluate(module_predictor(model, meta), ds, batch_size=4, loss_fn=torch.nn.BCEWithLogitsLoss())
    assert with_loss["loss"] > 0 and with_loss["iou"] == from_file["iou"]


def test_frame_size_scores_the_predicted_masks(tiny_float: Path, data: Path) -> None:
    pred = load_predictor(tiny_float, threads=1, compile=False)
    ds = dataset_for(pred.meta, data, "test")
    seen: list[np.ndarray] = []
    got = evaluate(pred, ds, frames=4, frame_size=True, on_batch=lambda i, rgb, t, m: seen.extend(m))
    conf = BinaryConfusion()
    for i in range(4):
        rgb, labels = ds.load(i)
        conf.update(pred.predict(rgb), labels == 24)
    assert got == pytest.approx(conf.compute(), nan_ok=True) and len(seen) == 4
    with pytest.raises(ValueError, match="loss needs the model's logits"):
        evaluate(pred, ds, frame_size=True, loss_fn=torch.nn.BCEWithLogitsLoss())


def test_multiclass_model_without_lanes_is_evaluated_but_gives_no_mask(data: Path) -> None:
    model, meta = _tiny(multiclass_task([1, 14]))
    pred = module_predictor(model, meta)
    result = evaluate(pred, dataset_for(meta, data, "test"), batch_size=4)
    assert len(result["per_class_iou"]) == 2 and 0 <= result["iou"] <= 1
    with pytest.raises(CheckpointError, match="without RoadLine"):
        pred.predict(np.zeros((*SIZE, 3), np.uint8))
