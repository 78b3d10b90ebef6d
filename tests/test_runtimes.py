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


# ----------------------------------------------------------------------------- runtime auto


def test_choose_fastest_and_tie_order() -> None:
    from perception.runtime_select import choose

    assert choose({"onnx": 20.3, "openvino": 12.1}) == "openvino"
    assert choose({"openvino": 5.0, "onnx": 5.0, "torch": 5.0}) == "torch"
    assert choose({"openvino": 5.0, "onnx": 5.0}) == "onnx"
    assert choose({"torch": 9.0, "onnx": 4.0, "openvino": 4.5}) == "onnx"
    with pytest.raises(ValueError):
        choose({})


def test_cache_key_changes_with_what_matters(tmp_path: Path) -> None:
    from perception.runtime_select import cache_key

    f = tmp_path / "m.onnx"
    f.write_bytes(b"model-a")
    vers = {"torch": "1", "onnxruntime": "2", "openvino": "3"}

    def key(**kw) -> str:
        args = {"threads": 2, "input_size": (160, 320), "cpu_signature": "cpu-a", "package_versions": vers, **kw}
        return cache_key([f], **args)

    base = key()
    assert key() == base
    assert key(threads=1) != base
    assert key(cpu_signature="cpu-b") != base
    assert key(input_size=(96, 192)) != base
    assert key(package_versions={**vers, "openvino": "4"}) != base
    assert key(compile=False) != base
    f.write_bytes(b"model-b")
    assert key() != base


def test_candidates_pth_with_same_scheme_sibling(tmp_path: Path, tiny_float: Path) -> None:
    import shutil

    from perception.runtime_select import candidates

    pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'laneloop[openvino]')")
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'laneloop[onnx]')")
    shutil.copy(ROOT / "models" / "unet_qat.pth", tmp_path / "m.pth")
    shutil.copy(QAT_ONNX, tmp_path / "m.onnx")
    assert [(c.runtime, c.path.name) for c in candidates(tmp_path / "m.pth")] == [
        ("torch", "m.pth"), ("onnx", "m.onnx"), ("openvino", "m.onnx"),
    ]  # fmt: skip
    assert [c.runtime for c in candidates(QAT_ONNX)] == ["onnx", "openvino"]
    shutil.copy(tiny_float, tmp_path / "f.pth")
    shutil.copy(QAT_ONNX, tmp_path / "f.onnx")  # a qat sibling of a float .pth is not the same model
    assert [c.runtime for c in candidates(tmp_path / "f.pth")] == ["torch"]


def test_auto_measures_once_then_reads_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'laneloop[openvino]')")
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'laneloop[onnx]')")
    from perception import runtime_select

    monkeypatch.setenv("LANELOOP_CACHE", str(tmp_path / "cache"))
    calls: list[str] = []

    def fake_time(pred, calls_: int = 10) -> float:
        calls.append(pred.runtime)
        return {"onnx": 20.3, "openvino": 12.1}[pred.runtime]

    monkeypatch.setattr(runtime_select, "time_predictor", fake_time)
    pred = load_predictor(QAT_ONNX, runtime="auto", threads=1)
    assert pred.runtime == "openvino" and sorted(calls) == ["onnx", "openvino"]
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "runtime auto: openvino (openvino 12.1 ms, onnx 20.3 ms) [measured]"
    (cache_file,) = (tmp_path / "cache" / "runtime").glob("*.json")

    pred = load_predictor(QAT_ONNX, runtime="auto", threads=1)
    assert pred.runtime == "openvino" and len(calls) == 2  # no timing: read from the cache
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("[cached]")

    cache_file.write_text("{not json", encoding="utf-8")  # corrupt: ignored, measured again, rewritten
    pred = load_predictor(QAT_ONNX, runtime="auto", threads=1)
    assert pred.runtime == "openvino" and len(calls) == 4
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("[measured]")
    import json

    assert json.loads(cache_file.read_text(encoding="utf-8"))["runtime"] == "openvino"

    load_predictor(QAT_ONNX, runtime="auto", threads=2)  # another thread count: another key
    assert len(calls) == 6 and len(list((tmp_path / "cache" / "runtime").glob("*.json"))) == 2


def test_auto_single_candidate_and_real_timer(
    tiny_float: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from perception import runtime_select

    monkeypatch.setenv("LANELOOP_CACHE", str(tmp_path / "cache"))
    pred = load_predictor(tiny_float, runtime="auto", threads=1, compile=False)
    assert pred.runtime == "torch"
    assert "runtime auto" not in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()
    assert runtime_select.time_predictor(pred, calls=3) > 0


# ----------------------------------------------------------------------------- TensorRT (ORT execution provider)


def _has_tensorrt() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "TensorrtExecutionProvider" in onnxruntime.get_available_providers()


def test_tensorrt_missing_fails_in_one_line() -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'laneloop[onnx]')")
    if _has_tensorrt():
        pytest.skip("this onnxruntime has TensorRT: the missing-provider message is not reachable")
    with pytest.raises(CheckpointError, match=r"^TensorRT needs onnxruntime-gpu with TensorRT and an NVIDIA GPU"):
        load_predictor(QAT_ONNX, runtime="tensorrt", threads=1)


def test_tensorrt_agrees_with_ort_cpu(sim_frames: list[np.ndarray]) -> None:
    if not _has_tensorrt():
        pytest.skip("no TensorrtExecutionProvider (needs onnxruntime-gpu with TensorRT and an NVIDIA GPU)")
    trt = load_predictor(QAT_ONNX, runtime="tensorrt", threads=1)
    ort = load_predictor(QAT_ONNX, runtime="onnx", threads=2)
    assert trt.runtime == "tensorrt" and trt.meta == read_onnx_meta(QAT_ONNX)
    same = sum(int((trt.predict(f) == ort.predict(f)).sum()) for f in sim_frames)
    assert same / sum(f.shape[0] * f.shape[1] for f in sim_frames) >= 0.99
