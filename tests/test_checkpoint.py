"""The checkpoint format: round trips, safe loading, and one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointMeta,
    IncompatibleCheckpointError,
    Normalisation,
    Quantization,
    Task,
    binary_task,
    build_from_checkpoint,
    check_compatible,
    load_checkpoint,
    multiclass_task,
    save_checkpoint,
)
from perception.models import build_model, transformers_available

torch.set_num_threads(2)

TINY = {
    "unet": {"base_width": 4},
    "enet": {},
    "deeplabv3plus": {"width_mult": 0.25, "aspp_channels": 16, "decoder_channels": 16},
    "segformer": {},
}


class Payload:
    """A custom class: pickling it into a checkpoint must make the file unloadable."""

    def __reduce__(self):
        return (Path.touch, (Path(os.environ.get("LANELOOP_PWNED", "/nonexistent/x")),))


def _tiny_unet(**kw):
    torch.manual_seed(0)
    return build_model("unet", base_width=4, **kw)


def _save(tmp_path: Path, model=None, name: str = "m.pth", **meta_fields) -> Path:
    model = model if model is not None else _tiny_unet()
    meta = CheckpointMeta.for_model(model, **meta_fields)
    return save_checkpoint(tmp_path / name, model, meta)


@pytest.mark.parametrize("arch", TINY)
def test_round_trip_gives_identical_outputs(tmp_path: Path, arch: str) -> None:
    if arch == "segformer" and not transformers_available():
        pytest.skip("segformer needs transformers (pip install 'laneloop[zoo]')")
    torch.manual_seed(0)
    model = build_model(arch, **TINY[arch])
    # One training step so BN running stats are not the defaults.
    model.train()(torch.randn(2, 3, 64, 64)).mean().backward()
    model.eval()
    path = _save(tmp_path, model, metrics={"val_iou": 0.5}, command="pytest")
    rebuilt, meta = build_from_checkpoint(path)
    assert not rebuilt.training
    assert meta.arch == arch and meta.arch_kwargs == model.config
    x = torch.randn(1, 3, 160, 320)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


def test_file_is_plain_weights_only_data(tmp_path: Path) -> None:
    path = _save(tmp_path, metrics={"iou": np.float64(0.25), "frames": np.int64(7)})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "laneloop-checkpoint"
    assert raw["format_version"] == FORMAT_VERSION
    assert raw["meta"]["metrics"] == {"iou": 0.25, "frames": 7}
    assert type(raw["meta"]["metrics"]["iou"]) is float
    assert raw["meta"]["input_size"] == [160, 320]
    _, meta = load_checkpoint(path)
    assert meta.input_size == (160, 320)
    assert meta.task == binary_task() and meta.task.to_dict() == {"kind": "binary", "tags": [24]}
    assert meta.quant.scheme == "float" and meta.quant.is_float


def test_save_is_atomic_and_refuses_overwrite(tmp_path: Path) -> None:
    path = _save(tmp_path)
    with pytest.raises(FileExistsError, match="overwrite"):
        _save(tmp_path)
    save_checkpoint(path, _tiny_unet(), CheckpointMeta(arch="unet", arch_kwargs={}), overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pth"]  # no temp files left


def test_metadata_must_be_plain(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"meta\.metrics\.bad"):
        _save(tmp_path, metrics={"bad": object()})
    with pytest.raises(TypeError, match="tensors belong in the state dict"):
        _save(tmp_path, metrics={"t": torch.zeros(1)})
    assert not (tmp_path / "m.pth").exists()


def test_metadata_must_be_consistent(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs 1 output channel"):
        _save(tmp_path, _tiny_unet(num_classes=3))
    with pytest.raises(ValueError, match="quant scheme"):
        _save(tmp_path, quant={"scheme": "int8", "bits": 8, "backend": None, "extra": {}})
    with pytest.raises(ValueError, match="meta.arch"):
        save_checkpoint(tmp_path / "x.pth", _tiny_unet(), CheckpointMeta(arch="enet"))


def test_pickled_object_is_refused_and_not_run(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("LANELOOP_PWNED", str(marker))
    good = torch.load(_save(tmp_path), weights_only=True)
    good["meta"]["data"] = {"evil": Payload()}
    path = tmp_path / "evil.pth"
    torch.save(good, path)
    with pytest.raises(CheckpointError, match="pickled Python objects") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_whole_pickled_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save(_tiny_unet(), path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.0])
def test_truncated_file_is_refused(tmp_path: Path, keep: float) -> None:
    data = _save(tmp_path).read_bytes()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(bad)
    assert "\n" not in str(info.value)


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path)


def test_foreign_files_are_named(tmp_path: Path) -> None:
    bare = tmp_path / "bare.pth"
    torch.save(_tiny_unet().state_dict(), bare)
    with pytest.raises(CheckpointError, match="bare state dict"):
        load_checkpoint(bare)
    other = tmp_path / "other.pth"
    torch.save({"model": {}, "epoch": 3}, other)
    with pytest.raises(CheckpointError, match="not a laneloop checkpoint"):
        load_checkpoint(other)


def test_unknown_format_version(tmp_path: Path) -> None:
    payload = torch.load(_save(tmp_path), weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    path = tmp_path / "future.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version 2.*upgrade laneloop"):
        load_checkpoint(path)


def test_malformed_metadata(tmp_path: Path) -> None:
    payload = torch.load(_save(tmp_path), weights_only=True)
    payload["meta"]["colour"] = "blue"
    path = tmp_path / "odd.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"malformed metadata: unknown metadata keys"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_arch(tmp_path: Path) -> None:
    model = _tiny_unet()
    # Keys differ: a depth-3 net's weights under depth-4 metadata.
    meta = CheckpointMeta.for_model(model)
    small = build_model("unet", base_width=4, depth=3)
    path = save_checkpoint(tmp_path / "keys.pth", small.state_dict(), meta)
    with pytest.raises(CheckpointError, match=r"missing keys \[.*down\.3"):
        build_from_checkpoint(path)
    # Shapes differ: width-8 metadata, width-4 weights.
    meta = CheckpointMeta(arch="unet", arch_kwargs={**model.config, "base_width": 8})
    path = save_checkpoint(tmp_path / "shape.pth", model.state_dict(), meta)
    with pytest.raises(CheckpointError, match="size mismatch"):
        build_from_checkpoint(path)


def test_quantized_checkpoint_is_left_to_the_predictor(tmp_path: Path) -> None:
    quant = {
        "scheme": "ptq",
        "bits": 8,
        "backend": "x86_inductor",
        "extra": {"observer": "minmax", "float_parent": "models/unet.pth"},
    }
    path = _save(tmp_path, quant=quant)
    _, meta = load_checkpoint(path)
    assert meta.quant.to_dict() == quant and meta.quant == Quantization(**quant)
    with pytest.raises(CheckpointError, match="ptq .*perception.predictor"):
        build_from_checkpoint(path)


def test_check_compatible(tmp_path: Path) -> None:
    binary = CheckpointMeta(arch="unet", task=binary_task(), input_size=(160, 320))
    check_compatible(binary, task="binary", input_size=(160, 320))
    check_compatible(binary, task=binary_task([24]))
    multi = CheckpointMeta(arch="unet", arch_kwargs={"num_classes": 3}, task=multiclass_task([1, 24, 14]))
    assert multi.num_classes == 3
    with pytest.raises(IncompatibleCheckpointError, match="multi-class model \\(3 classes"):
        check_compatible(multi, task="binary")
    with pytest.raises(IncompatibleCheckpointError, match="binary model"):
        check_compatible(binary, task="multiclass")
    with pytest.raises(IncompatibleCheckpointError, match="tags"):
        check_compatible(binary, task=binary_task([6]))
    with pytest.raises(IncompatibleCheckpointError, match="trained at 160x320.*256x256"):
        check_compatible(binary, input_size=(256, 256))
    assert issubclass(IncompatibleCheckpointError, CheckpointError)
    check_compatible(binary, lanes=True)
    check_compatible(multi, lanes=True)  # RoadLine is one of its classes
    with pytest.raises(IncompatibleCheckpointError, match="not lane markings"):
        check_compatible(CheckpointMeta(arch="unet", task=binary_task([6])), lanes=True)
    no_lanes = CheckpointMeta(arch="unet", arch_kwargs={"num_classes": 2}, task=multiclass_task([1, 14]))
    with pytest.raises(IncompatibleCheckpointError, match="not lane markings"):
        check_compatible(no_lanes, lanes=True)


# ----------------------------------------------------------------------------- typed metadata

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.mark.parametrize("name", ["unet_float.pth", "unet_ptq.pth", "unet_qat.pth"])
def test_shipped_checkpoints_keep_their_stored_metadata(name: str) -> None:
    """Typed metadata reads the shipped files and writes back exactly the stored dict:
    same keys, same order, same values, so files saved now load in older laneloop."""
    import json

    raw = torch.load(MODELS / name, weights_only=True)["meta"]
    meta = CheckpointMeta.from_dict(raw)
    assert isinstance(meta.task, Task) and isinstance(meta.normalisation, Normalisation)
    assert isinstance(meta.quant, Quantization) and meta.quant.scheme == name[5:-4]
    assert json.dumps(meta.to_dict()) == json.dumps(raw)


def test_onnx_metadata_round_trips() -> None:
    import json

    onnx = pytest.importorskip("onnx")
    props = {p.key: p.value for p in onnx.load(str(MODELS / "unet_qat.onnx"), load_external_data=False).metadata_props}
    stored = props["laneloop.meta"]
    assert json.dumps(CheckpointMeta.from_dict(json.loads(stored)).to_dict()) == stored


def test_saved_metadata_is_the_old_dict_form(tmp_path: Path) -> None:
    model = _tiny_unet(num_classes=2)
    path = _save(tmp_path, model, task=multiclass_task([1, 24]), normalisation=Normalisation((0.5,) * 3, (0.25,) * 3))
    raw = torch.load(path, weights_only=True)["meta"]
    assert raw["task"] == {"kind": "multiclass", "tags": [1, 24]}
    assert raw["normalisation"] == {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    assert raw["quant"] == {"scheme": "float", "bits": 32, "backend": None, "extra": {}}
    assert list(raw) == [
        "arch", "arch_kwargs", "task", "input_size", "normalisation", "quant",
        "data", "metrics", "command", "created", "format_version",
    ]  # fmt: skip


def test_typed_metadata_checks_itself() -> None:
    assert Task.from_dict({"kind": "binary", "tags": [24]}) == binary_task()
    assert binary_task([6, 7]).tags == (6, 7) and binary_task().lane_channel == 0
    assert multiclass_task([1, 24, 14]).lane_channel == 1 and multiclass_task([1, 14]).lane_channel is None
    with pytest.raises(ValueError, match="task kind"):
        Task("semantic", (1,))
    with pytest.raises(ValueError, match="non-empty list of ints"):
        binary_task([])
    with pytest.raises(ValueError, match="distinct"):
        multiclass_task([1, 1])
    with pytest.raises(ValueError, match="exactly the keys kind, tags"):
        Task.from_dict({"kind": "binary", "tags": [24], "extra": 1})
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalisation((0.0,) * 3, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match=r"normalisation must be"):
        Normalisation.from_dict({"mean": [0, 0], "std": [1, 1, 1]})
    with pytest.raises(ValueError, match="put anything else in extra"):
        Quantization.from_dict({"scheme": "ptq", "bits": 8, "backend": None, "extra": {}, "observer": "minmax"})
    with pytest.raises(ValueError, match="bits must be a positive int"):
        Quantization("ptq", 0)
    # the stored dict form is accepted by the constructor and parsed into the typed form
    meta = CheckpointMeta(arch="unet", quant={"scheme": "qat", "bits": 8, "backend": "x86", "extra": {"qat": True}})
    assert meta.quant == Quantization("qat", 8, "x86", {"qat": True}) and not meta.quant.is_float


def test_malformed_stored_metadata_is_one_line(tmp_path: Path) -> None:
    path = _save(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["meta"]["task"] = {"kind": "binary"}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="malformed metadata: task must have exactly the keys kind, tags"):
        load_checkpoint(path)
