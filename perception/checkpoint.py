"""The one checkpoint format of laneloop, and its loader.

A checkpoint is a single ``.pth`` file that ``torch.load(path, weights_only=True)`` reads:

    {"format": "laneloop-checkpoint", "format_version": 1,
     "meta": {...plain data...}, "state_dict": {name: tensor}}

Only tensors and plain data (str, int, float, bool, None, list, dict) are stored, so
loading never unpickles arbitrary objects: a checkpoint from a stranger cannot run code.
The metadata (`CheckpointMeta`) says how to rebuild the model (arch + arch_kwargs), what
it predicts (task), what it expects (input size, normalisation), how it was quantized,
what data trained it, its metrics at save time and the command that produced it.

`task`, `normalisation` and `quant` are typed (`perception.metadata`); the file stores
them as the plain dicts it always has. Quantized checkpoints (``quant.scheme`` "ptq" or
"qat") use the same file format; they are rebuilt by the predictor, not by
`build_from_checkpoint`, which loads float models.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from perception.metadata import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    QUANT_SCHEMES,
    ROADLINE_TAG,
    TASK_KINDS,
    Normalisation,
    Quantization,
    Task,
    binary_task,
    float_quant,
    multiclass_task,
)
from perception.models import build_model
from plumbing import atomic_output

FORMAT_NAME = "laneloop-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says what is wrong and what to do."""


class IncompatibleCheckpointError(CheckpointError):
    """A valid checkpoint that does not fit the task or input size it is asked to serve."""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class CheckpointMeta:
    """Plain-data description of a checkpoint (everything but the tensors).

    Fields:
        arch: registry name (`perception.models.available_archs`).
        arch_kwargs: constructor arguments, ``build_model(arch, **arch_kwargs)``.
        task: `Task` (stored ``{"kind": "binary", "tags": [24]}``): one logit, positive =
            any listed tag, or multi-class where class i is tag ``tags[i]``.
        input_size: (H, W) the model was trained at [px].
        normalisation: `Normalisation` (stored ``{"mean": [r, g, b], "std": [r, g, b]}``)
            applied to RGB in [0, 1].
        quant: `Quantization` (stored ``{"scheme": "float"|"ptq"|"qat", "bits": int,
            "backend": str|None, "extra": {...}}``); scheme-specific details (observers,
            per-channel, the float parent checkpoint, ...) go in ``extra``.
        data: identity of the training data (dataset paths, manifest fingerprints, splits).
        metrics: metrics at save time (e.g. ``{"val_iou": 0.71}``).
        command: the command line that produced the file.
        created: ISO 8601 UTC time of creation.
        format_version: file format version (set on save).

    `task`, `normalisation` and `quant` may be given in their stored dict form: they are
    parsed (and checked) on construction, so the fields are always the typed objects.
    """

    arch: str
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    task: Task = field(default_factory=binary_task)
    input_size: tuple[int, int] = (160, 320)
    normalisation: Normalisation = field(default_factory=Normalisation)
    quant: Quantization = field(default_factory=float_quant)
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    created: str = field(default_factory=_now_iso)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        for name, kind in _TYPED_FIELDS.items():
            value = getattr(self, name)
            if isinstance(value, Mapping):
                setattr(self, name, kind.from_dict(value))
        if isinstance(self.input_size, list):
            self.input_size = tuple(self.input_size)

    @classmethod
    def for_model(cls, model: nn.Module, **fields: Any) -> CheckpointMeta:
        """Metadata with ``arch``/``arch_kwargs`` taken from a zoo model's ``arch``/``config``."""
        arch = getattr(model, "arch", None)
        config = getattr(model, "config", None)
        if not arch or not isinstance(config, dict):
            raise TypeError(
                f"{type(model).__name__} has no `arch`/`config`; build it with "
                "perception.models.build_model or pass arch and arch_kwargs yourself"
            )
        return cls(arch=arch, arch_kwargs=dict(config), **fields)

    @property
    def num_classes(self) -> int:
        """Number of output channels the task implies (1 for binary)."""
        return self.task.num_classes

    def validate(self) -> None:
        """Raise ValueError when a field is malformed or the fields contradict each other.

        `Task`, `Normalisation` and `Quantization` check their own values when made; this
        checks the rest and that the parts agree.
        """
        if not isinstance(self.arch, str) or not self.arch:
            raise ValueError("arch must be a non-empty string")
        for name in ("arch_kwargs", "data", "metrics"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict")
        for name, kind in _TYPED_FIELDS.items():
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"{name} must be a {kind.__name__} (or its dict form)")
        declared = self.arch_kwargs.get("num_classes", 1)
        if declared != self.num_classes:
            raise ValueError(
                f"arch_kwargs num_classes={declared} but a {self.task.kind} task with tags "
                f"{list(self.task.tags)} needs {self.num_classes} output channel(s)"
            )
        size = self.input_size
        if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
            raise ValueError(f"input_size must be (H, W) positive ints, got {size!r}")
        if not isinstance(self.command, str) or not isinstance(self.created, str):
            raise ValueError("command and created must be strings")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data dict (tuples become lists, numpy scalars become Python numbers); the
        typed parts in their stored dict form, keys in field order."""
        self.validate()
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if f.name in _TYPED_FIELDS else value
        return _plain(out, "meta")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckpointMeta:
        """Inverse of `to_dict`; unknown or missing keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown metadata keys {sorted(unknown)}")
        if "arch" not in data:
            raise ValueError("metadata has no 'arch'")
        meta = cls(**dict(data))
        meta.validate()
        return meta


#: CheckpointMeta fields held as typed objects (stored as dicts).
_TYPED_FIELDS: dict[str, type[Task] | type[Normalisation] | type[Quantization]] = {
    "task": Task,
    "normalisation": Normalisation,
    "quant": Quantization,
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _plain(value: Any, where: str) -> Any:
    """Copy `value` as exact built-in plain types, or raise TypeError naming the bad key.

    Subclasses (numpy scalars, enums) would pickle as their own class, which a
    weights_only load refuses, so they are converted to the exact built-in type.
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, torch.Tensor):
        raise TypeError(f"{where}: tensors belong in the state dict, not in the metadata")
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy scalar
    for t in (bool, int, float, str):  # bool first: it is an int subclass
        if isinstance(value, t):
            return t(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise TypeError(f"{where}: key {k!r} is not a string")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{where}: {type(value).__name__} is not plain data (use str, int, float, bool, None, list or dict)"
    )


def save_checkpoint(
    path: str | os.PathLike[str],
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    meta: CheckpointMeta,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint atomically (temporary file, then os.replace) and return its path.

    Raises FileExistsError when `path` exists and `overwrite` is false, TypeError/ValueError
    for metadata that is not plain data or is inconsistent, or for a model whose ``arch``
    differs from ``meta.arch``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True / --overwrite to replace it)")
    if isinstance(model_or_state_dict, nn.Module):
        model_arch = getattr(model_or_state_dict, "arch", None)
        if model_arch and model_arch != meta.arch:
            raise ValueError(f"model is a {model_arch!r} but meta.arch is {meta.arch!r}")
        state = model_or_state_dict.state_dict()
    else:
        state = model_or_state_dict
    state_dict: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise TypeError(f"state dict entry {key!r} is not a str -> Tensor pair")
        state_dict[key] = value.detach().cpu()
    meta = dataclasses.replace(meta, format_version=FORMAT_VERSION)
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "meta": meta.to_dict(),
        "state_dict": state_dict,
    }
    with atomic_output(path, fsync=True) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """Read a checkpoint safely (weights_only=True) and return (state_dict, meta).

    Raises CheckpointError (one line: what is wrong, what to do) for a missing, truncated
    or corrupt file, a file holding pickled objects, a file that is not a laneloop
    checkpoint, an unknown format version, or malformed metadata.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path} (check the path)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path} (give the .pth file)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise CheckpointError(
                f"refused to load {path}: it contains pickled Python objects ({found.group(1)}) "
                "that a safe load will not run (re-save it with "
                "perception.checkpoint.save_checkpoint from a source you trust)"
            ) from None
        raise CheckpointError(_corrupt_message(path, exc)) from None
    except Exception as exc:  # noqa: BLE001 - a non-zip file goes through the legacy unpickler,
        # which raises whatever the bytes provoke (IndexError, KeyError, struct.error, ...)
        raise CheckpointError(_corrupt_message(path, exc)) from None

    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        hint = "re-save it with perception.checkpoint.save_checkpoint and a CheckpointMeta"
        if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            raise CheckpointError(f"{path} is a bare state dict, not a laneloop checkpoint ({hint})")
        raise CheckpointError(f"{path} is not a laneloop checkpoint ({hint})")
    version = payload.get("format_version")
    if not _is_int(version) or version < 1 or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}, this laneloop reads "
            f"1..{FORMAT_VERSION} (upgrade laneloop or re-create the checkpoint)"
        )
    state_dict = payload.get("state_dict")
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise CheckpointError(f"{path} has no valid state dict (re-create the checkpoint)")
    try:
        meta = CheckpointMeta.from_dict(payload.get("meta") or {})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has malformed metadata: {_first_line(exc)} (re-create the checkpoint)") from None
    return state_dict, meta


def build_from_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild a float model from its checkpoint, load its weights strictly, set eval mode.

    Quantized checkpoints (ptq/qat) raise CheckpointError: the predictor loads those.
    """
    state_dict, meta = load_checkpoint(path, map_location)
    return model_from_state(state_dict, meta, path), meta


def model_from_state(
    state_dict: Mapping[str, torch.Tensor], meta: CheckpointMeta, path: str | os.PathLike[str]
) -> nn.Module:
    """The float model `meta` describes holding `state_dict` (strict), in eval mode: the
    second half of `build_from_checkpoint`, for a caller that has read the file already.

    `path` only names the file in errors.
    """
    if not meta.quant.is_float:
        raise CheckpointError(
            f"{path} is a {meta.quant.scheme} ({meta.quant.bits}-bit) checkpoint; load it with the "
            "quantized predictor (perception.predictor), not build_from_checkpoint"
        )
    try:
        model = build_model(meta.arch, **meta.arch_kwargs)
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc} (is this laneloop too old?)") from None
    except (TypeError, ValueError, ImportError) as exc:
        raise CheckpointError(
            f"{path}: cannot build {meta.arch!r} with {meta.arch_kwargs}: {_first_line(exc)}"
        ) from None
    expected = set(model.state_dict())
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match {meta.arch} {meta.arch_kwargs}: "
            f"missing keys {_few(missing)}, unexpected keys {_few(unexpected)} "
            "(the file's metadata and weights disagree; re-create the checkpoint)"
        )
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(
            f"{path}: weights do not fit {meta.arch} {meta.arch_kwargs}: {detail[:300]} (re-create the checkpoint)"
        ) from None
    return model.eval()


def check_compatible(
    meta: CheckpointMeta,
    task: str | Task | Mapping[str, Any] | None = None,
    input_size: tuple[int, int] | list[int] | None = None,
    lanes: bool = False,
) -> None:
    """Raise IncompatibleCheckpointError when `meta` does not fit the intended use.

    `task` is a kind ("binary" | "multiclass") or a `Task` (or its dict form; kind and
    tags must match); `input_size` is (H, W) and must equal the size the model was trained at;
    `lanes` asks for a model that gives lane masks (what the closed loop needs): a binary
    model of RoadLine alone, or a multi-class one with RoadLine among its classes.
    """
    if lanes and (meta.task.lane_channel is None or meta.task.lane_tags != (ROADLINE_TAG,)):
        raise IncompatibleCheckpointError(
            f"checkpoint predicts tags {list(meta.task.tags)}, not lane markings (RoadLine, {ROADLINE_TAG}) "
            "(use a lane-marking checkpoint)"
        )
    if task is not None:
        if isinstance(task, str):
            if task not in TASK_KINDS:
                raise ValueError(f"task kind must be one of {list(TASK_KINDS)}, got {task!r}")
            want_kind, want_tags = task, None
        else:
            want = task if isinstance(task, Task) else Task.from_dict(task)
            want_kind, want_tags = want.kind, want.tags
        have = meta.task
        if want_kind != have.kind:
            if have.kind == "multiclass":
                raise IncompatibleCheckpointError(
                    f"checkpoint is a multi-class model ({meta.num_classes} classes, tags "
                    f"{list(have.tags)}) but the {want_kind} task needs a binary checkpoint "
                    "(use a binary lane checkpoint or run the multi-class task)"
                )
            raise IncompatibleCheckpointError(
                f"checkpoint is a binary model (tags {list(have.tags)}) but the "
                f"{want_kind} task needs a multi-class checkpoint "
                "(use a multi-class checkpoint or run the binary task)"
            )
        if want_tags is not None and want_tags != have.tags:
            raise IncompatibleCheckpointError(
                f"checkpoint predicts tags {list(have.tags)} but the task wants "
                f"{list(want_tags)} (use a checkpoint trained for those tags)"
            )
    if input_size is not None:
        want_hw = tuple(int(v) for v in input_size)
        have_hw = tuple(meta.input_size)
        if want_hw != have_hw:
            raise IncompatibleCheckpointError(
                f"checkpoint was trained at {have_hw[0]}x{have_hw[1]} (HxW) but the input is "
                f"{want_hw[0]}x{want_hw[1]} (set the camera/model input to "
                f"{have_hw[0]}x{have_hw[1]} or use a checkpoint trained at this size)"
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _corrupt_message(path: Path, exc: BaseException) -> str:
    if isinstance(exc, pickle.UnpicklingError):
        found = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        exc = pickle.UnpicklingError(found.group(1) if found else "not a torch file")
    return (
        f"cannot read {path}: the file is truncated or corrupt "
        f"({type(exc).__name__}: {_first_line(exc)[:200]}) (copy or re-create it)"
    )


def _few(keys: list[str], n: int = 5) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:n])
    return f"[{shown}{', ...' if len(keys) > n else ''}] ({len(keys)})"


__all__ = [
    "FORMAT_VERSION",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "QUANT_SCHEMES",
    "ROADLINE_TAG",
    "TASK_KINDS",
    "CheckpointError",
    "CheckpointMeta",
    "IncompatibleCheckpointError",
    "Normalisation",
    "Quantization",
    "Task",
    "binary_task",
    "build_from_checkpoint",
    "check_compatible",
    "float_quant",
    "load_checkpoint",
    "model_from_state",
    "multiclass_task",
    "save_checkpoint",
]
