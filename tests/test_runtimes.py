"""Runtimes beyond torch and ONNX Runtime: OpenVINO agrees with torch (float) and with ONNX
Runtime (int8 QDQ, the shipped QAT model) and fails clearly on bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from perception.checkpoint import CheckpointError, CheckpointMeta, binary_task, save_checkpoint
from perception.models import build_model
from perception.predictor import load_predictor, read_onnx_meta

ROOT = Path(__file__).resolve().parents[1]
QAT_ONNX = ROOT / "models" / "unet_qat.onnx"
SIZE = (64, 128)


@pytest.fixture(scope="module")
def tiny_float(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny U-Net (width 8, depth 3): agreement of logits needs no training."""
    torch.manual_seed(0)
    model = build_model("unet", base_width=8, depth=3).eval()
    meta = CheckpointMeta.for_model(model, input_size=SIZE, task=binary_task([24]), command="tests/test_runtimes.py")
    return save_checkpoint(tmp_path_factory.mktemp("rt") / "tiny.pth", model, meta)


@pytest.fixture(scope="module")
def sim_frames() -> list[np.ndarray]:
    """A few 160x320 frames from the embedded simulator (the shipped models' input size)."""
    from scenarios import load_scenario
    from sim.backend import make_backend

    out = []
    with make_backend("embedded") as sim:
        obs = sim.reset(load_scenario("town03_clear"), seed=3)
        for i in range(4 * 10):
            if i % 10 == 0:
                out.append(obs.camera.rgb.copy())
            obs = sim.step(None)
    return out


def _frames(size: tuple[int, int], n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    h, w = size
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    return [np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8) for _ in range(n)]


def test_openvino_float_pth_agrees_with_torch_eager(tiny_float: Path) -> None:
    pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'laneloop[openvino]')")
    ref = load_predictor(tiny_float, runtime="torch", threads=1, compile=False)
    ov = load_predictor(tiny_float, runtime="openvino", threads=1)
    assert ov.runtime == "openvino" and ov.scheme == "float" and ov.input_size == SIZE
    assert ov.meta == ref.meta
    agree = []
    for img in _frames(SIZE):
        a, b = ov.logits(img), ref.logits(img)
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1e-3 * max(1.0, float(np.abs(b).max()))
        agree.append((ov.predict(img) == ref.predict(img)).mean())
    assert np.mean(agree) >= 0.999


def test_openvino_int8_onnx_agrees_with_onnx_runtime(sim_frames: list[np.ndarray]) -> None:
    pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'laneloop[openvino]')")
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'laneloop[onnx]')")
    ov = load_predictor(QAT_ONNX, runtime="openvino", threads=2)
    ort = load_predictor(QAT_ONNX, runtime="onnx", threads=2)
    assert ov.runtime == "openvino" and ov.meta == read_onnx_meta(QAT_ONNX) and ov.scheme != "float"
    assert ov.input_size == ort.input_size
    same = total = 0
    for img in sim_frames:
        a, b = ov.predict(img), ort.predict(img)
        assert a.shape == img.shape[:2]
        same += int((a == b).sum())
        total += a.size
    assert same / total >= 0.99


def test_openvino_bad_files_fail_in_one_line(tmp_path: Path, tiny_float: Path) -> None:
    pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'laneloop[openvino]')")
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(QAT_ONNX.read_bytes()[:5000])
    for path in (bad, tmp_path / "missing.onnx", tmp_path / "missing.pth"):
        with pytest.raises(CheckpointError) as err:
            load_predictor(path, runtime="openvino", threads=1)
        assert "\n" not in str(err.value)


def test_openvino_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(CheckpointError, match=r"OpenVINO is not installed \(pip install 'laneloop\[openvino\]'"):
        load_predictor(QAT_ONNX, runtime="openvino", threads=1)
