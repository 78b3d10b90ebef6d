"""Lighter models (issue 20): the FLOPs counter, the light designs on every int8 path,
structured pruning to a normal checkpoint, and distillation in the trainer.

Models are tiny and trained for seconds on frames recorded here by the embedded simulator.
As in tests/test_quant.py the int8 agreement checks use the road (tag 1), whose masks are
confident after a few steps, so an agreement bar means something.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import train.train as train_mod
from collect.record import main as record_main
from dataset.reader import LaneDataset
from perception import quantized
from perception.checkpoint import CheckpointMeta, binary_task, build_from_checkpoint, save_checkpoint
from perception.flops import count_flops, count_params
from perception.models import build_model
from perception.predictor import load_predictor
from quant import export as export_mod
from quant import prune as prune_mod
from quant import ptq as ptq_mod
from quant.train_utils import lane_loader, train_steps
from train.distill import Distiller, distill_loss

SIZE = (64, 128)
ROAD = [1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 episodes x 8 frames at 64x128: 16 train, 8 val, 8 test frames."""
    out = tmp_path_factory.mktemp("light") / "tiny"
    args = ["--episodes", "4", "--episode-frames", "8", "--every", "3", "--width", "128", "--height", "64"]
    args += ["--seed", "5", "--split", "train=0.5,val=0.25,test=0.25", "--out", str(out), "--no-progress"]
    assert record_main(args) == 0
    return out


def _fit(arch: str, kwargs: dict, data: Path, path: Path, steps: int, tags: list[int] = ROAD) -> Path:
    torch.manual_seed(0)
    model = build_model(arch, **kwargs)
    loader = lane_loader(data, "train", SIZE, 4, True, torch.Generator().manual_seed(0), tags=tags)
    if steps:
        train_steps(model, model.parameters(), loader, steps=steps, lr=1e-2, pos_weight=1.0)
    meta = CheckpointMeta.for_model(model, input_size=SIZE, task=binary_task(tags), command="tests/test_lighter.py")
    return save_checkpoint(path, model.eval(), meta)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# ----------------------------------------------------------------------------- FLOPs


def test_flops_counter_against_hand_computed_convs() -> None:
    # 3 -> 8, 3x3, stride 2 on 16x32: output 8 x 8 x 16, 3*9 MACs per output value
    assert count_flops(nn.Conv2d(3, 8, 3, stride=2, padding=1), (16, 32)) == 2 * 8 * 8 * 16 * 3 * 9
    # depthwise: one input channel per output channel
    assert count_flops(nn.Conv2d(8, 8, 3, padding=1, groups=8), (8, 16), in_channels=8) == 2 * 8 * 8 * 16 * 9
    # transposed 2x2 stride 2, 4 -> 2 channels on 5x5: each input pixel scatters 2 x 2 x 2 MACs per input channel
    assert count_flops(nn.ConvTranspose2d(4, 2, 2, stride=2), (5, 5), in_channels=4) == 2 * 4 * 25 * 2 * 4
    # the default U-Net w16 at 160x320: the 6.42 GFLOPs of docs/zoo.md (FlopCounterMode)
    assert count_flops(build_model("unet"), (160, 320)) == 6_415_974_400


@pytest.mark.parametrize(("arch", "kwargs"), [("unet_ds", {}), ("lanelite", {}), ("lanefast", {})])
def test_light_designs_cost_under_an_eighth_of_unet_w16(arch: str, kwargs: dict) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(arch, **kwargs).eval()
    flops = count_flops(model, (160, 320))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 160, 320))
    assert flops == counter.get_total_flops()  # two counters, one number
    assert flops * 8 <= count_flops(build_model("unet"), (160, 320))
    assert count_params(model) < 0.15 * count_params(build_model("unet"))


# ----------------------------------------------------------------------------- pruning


def test_prune_gives_a_smaller_normal_checkpoint(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch_pruning", reason="torch-pruning not installed (pip install 'laneloop[prune]')")
    parent = _fit("unet", {"base_width": 8, "depth": 3}, data, tmp_path / "unet.pth", steps=1, tags=[24])
    out, meta = prune_mod.prune_checkpoint(parent, 0.5, [str(data)], epochs=1, out=tmp_path / "p50.pth", batch_size=4)
    before, _ = build_from_checkpoint(parent)
    after, loaded_meta = build_from_checkpoint(out)  # strict rebuild from arch_kwargs
    assert loaded_meta.arch == "unet" and loaded_meta.quant.is_float
    assert len(loaded_meta.arch_kwargs["channels"]) == 17
    assert count_params(after) < 0.35 * count_params(before)  # half the channels: about a quarter of the weights
    assert meta.metrics["prune"]["params_after"] == count_params(after)
    assert "val_iou" in meta.metrics
    assert meta.metrics["prune"]["fine_tune"]["steps"] == 4  # 16 frames / 4 a batch, one epoch
    # a CPU budget: fine-tunes (augmented) until it is spent, many epochs allowed, and records what it took
    _, bmeta = prune_mod.prune_checkpoint(
        parent, 0.5, [str(data)], 1000, tmp_path / "p50b.pth", 4, budget_cpu_min=0.01, augment=True
    )
    ft = bmeta.metrics["prune"]["fine_tune"]
    assert ft["train_cpu_s"] >= 0.6 and ft["budget_cpu_min"] == 0.01 and ft["augment"] is True
    assert 1 <= ft["epochs_run"] < 1000 and ft["steps"] >= 1
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        assert after(x).shape == before(x).shape == (1, 1, *SIZE)
    pred = load_predictor(out, threads=1, compile=False)
    assert pred.predict(LaneDataset(data, split="test").load(0)[0]).shape == (64, 128)
    gm, qmeta = ptq_mod.quantize_ptq(out, data, calib_frames=4)
    assert qmeta.arch_kwargs["channels"] == loaded_meta.arch_kwargs["channels"]
    ptq_mod.save_quantized(tmp_path / "p50_ptq.pth", gm, qmeta)
    assert load_predictor(tmp_path / "p50_ptq.pth", threads=1, compile=False).scheme == "ptq"


def test_prune_cli_errors_are_one_line(data: Path, tmp_path: Path, capsys) -> None:
    parent = _fit("lanelite", {"width": 8}, data, tmp_path / "lite.pth", steps=0)
    base = ["--model", str(parent), "--data", str(data), "--epochs", "0", "--no-progress"]
    assert prune_mod.main([*base, "--ratio", "1.5", "--out", str(tmp_path / "a.pth")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert prune_mod.main([*base, "--ratio", "0.5", "--out", str(tmp_path / "b.pth")]) == 1
    assert "U-Net checkpoints only" in capsys.readouterr().err


# ----------------------------------------------------------------------------- distillation


def test_distill_loss_is_zero_at_the_teacher_and_pulls_toward_it() -> None:
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 1, 8, 8, generator=g) * 3
    assert float(distill_loss(teacher.clone(), teacher)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss(torch.zeros_like(teacher), teacher)) > 0.1
    multi = torch.randn(2, 3, 8, 8, generator=g)
    assert float(distill_loss(multi.clone(), multi)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="differ"):
        distill_loss(multi, teacher)
    # a student trained on the distillation term alone moves toward the teacher's output
    torch.manual_seed(0)
    teacher_net = build_model("unet", base_width=4, depth=2).eval()
    student = build_model("lanelite", width=8)
    distiller = Distiller(teacher_net, weight=1.0, temperature=2.0)
    x = torch.randn(4, 3, 32, 64, generator=g)
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = distiller(x, student(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is None for p in teacher_net.parameters())  # the teacher is never trained


def test_train_with_teacher_uses_and_records_the_term(data: Path, tmp_path: Path, capsys) -> None:
    tiny = ["--batch-size", "4", "--lr", "1e-2", "--threads", "1", "--epochs", "1", "--no-progress", "--no-augment"]

    def run(out: Path, *extra: str) -> int:
        return train_mod.main(["--data", str(data), "--out", str(out), *tiny, *extra])

    assert run(tmp_path / "teacher", "--arch-kwargs", '{"base_width": 4, "depth": 3}') == 0
    teacher = tmp_path / "teacher" / "best.pth"
    student = ["--arch", "lanelite", "--arch-kwargs", '{"width": 8}']
    assert run(tmp_path / "plain", *student) == 0
    assert run(tmp_path / "kd", *student, "--teacher", str(teacher), "--distill-weight", "2") == 0

    def first(out: Path) -> dict[str, str]:
        with open(out / "log.csv", newline="") as f:
            return next(csv.DictReader(f))

    # same seed, data and order: the training loss differs by the distillation term alone
    assert float(first(tmp_path / "kd")["train_loss"]) > float(first(tmp_path / "plain")["train_loss"])
    _, meta = build_from_checkpoint(tmp_path / "kd" / "best.pth")
    record = meta.data["distill"]
    assert record["teacher"] == str(teacher) and record["weight"] == 2.0 and record["temperature"] == 2.0
    assert record["teacher_arch"] == "unet" and len(record["teacher_sha256_16"]) == 16
    settings = torch.load(tmp_path / "kd" / "last.pth", weights_only=True)["train_state"]["settings"]
    assert settings["teacher"] == str(teacher) and settings["distill_weight"] == 2.0
    _, plain_meta = build_from_checkpoint(tmp_path / "plain" / "best.pth")
    assert "distill" not in plain_meta.data
    capsys.readouterr()
    # a teacher of another task is refused in one line
    assert run(tmp_path / "bad", *student, "--tags", "1", "--teacher", str(teacher)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: teacher") and "--tags" in err[-1]


# ----------------------------------------------------------------------------- int8 paths


@pytest.fixture(
    scope="module",
    params=[("unet_ds", {"base_width": 8, "depth": 3}), ("lanelite", {"width": 8}), ("lanefast", {"width": 8})],
)
def light_ckpt(request, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    arch, kwargs = request.param
    return _fit(arch, kwargs, data, tmp_path_factory.mktemp(arch) / "float.pth", steps=60)


def test_light_model_on_every_int8_path(light_ckpt: Path, data: Path) -> None:
    frames = [LaneDataset(data, split="test", tags=ROAD).load(i)[0] for i in range(8)]
    float_pred = load_predictor(light_ckpt, threads=1, compile=False)
    want = np.stack([float_pred.predict(f) for f in frames])
    assert 0.05 < want.mean() < 0.95  # a trained, non-trivial model: agreement means something

    # torch PT2E PTQ (X86InductorQuantizer), saved and reloaded through the predictor
    gm, meta = ptq_mod.quantize_ptq(light_ckpt, data, calib_frames=16)
    ptq_path = ptq_mod.save_quantized(light_ckpt.with_name("ptq.pth"), gm, meta)
    ptq_pred = load_predictor(ptq_path, threads=1, compile=False)
    assert ptq_pred.scheme == "ptq"
    assert _mask_iou(np.stack([ptq_pred.predict(f) for f in frames]), want) >= 0.97

    # QAT: fake quant trains (gradients flow) and converts
    model, _ = build_from_checkpoint(light_ckpt)
    prepared = quantized.prepare(model, SIZE, "minmax", True, qat=True)
    prepared(torch.randn(1, 3, *SIZE)).mean().backward()  # exported at batch 1
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in prepared.parameters())
    qat = quantized.convert(prepared, qat=True)
    assert any(n.target == torch.ops.quantized_decomposed.quantize_per_tensor.default for n in qat.graph.nodes)

    # ONNX int8 QDQ by ONNX Runtime static quantization (the PT2E graph's QDQ export is the
    # same exporter on the same ops; left out to keep this test cheap)
    ort_path, ort_meta, _ = export_mod.export_onnx(
        light_ckpt, light_ckpt.parent / "q.onnx", int8=True, data=data, calib_frames=16
    )
    assert ort_meta.quant.backend == "onnxruntime"
    ort_pred = load_predictor(ort_path, runtime="onnx", threads=1)
    got = np.stack([ort_pred.predict(f) for f in frames])
    assert _mask_iou(got, want) >= 0.97

    # OpenVINO runs the same int8 QDQ file
    pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'laneloop[openvino]')")
    ov_pred = load_predictor(ort_path, runtime="openvino", threads=1)
    assert _mask_iou(np.stack([ov_pred.predict(f) for f in frames]), got) >= 0.97
    del ov_pred  # OpenVINO's worker threads go with it
