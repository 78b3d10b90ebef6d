"""The one checkpoint format of laneloop, and its loader.

A checkpoint is a single ``.pth`` file that ``torch.load(path, weights_only=True)`` reads:

    {"format": "laneloop-checkpoint", "format_version": 1,
     "meta": {...plain data...}, "state_dict": {name: tensor}}

Only tensors and plain data (str, int, float, bool, None, list, dict) are stored, so
loading never unpickles arbitrary objects: a checkpoint from a stranger cannot run code.
The metadata (`CheckpointMeta`) says how to rebuild the model (arch + arch_kwargs), what
it predicts (task), what it expects (input size, normalisation), how it was quantized,
what data trained it, its metrics at save time and the command that produced it.

Quantized checkpoints (``quant["scheme"]`` "ptq" or "qat") use the same file format; they
are rebuilt by the predictor, not by `build_from_checkpoint`, which loads float models.
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

from perception.models import build_model
from plumbing import atomic_output

FORMAT_NAME = "laneloop-checkpoint"
FORMAT_VERSION = 1

#: CARLA semantic tag of lane markings (RoadLine): the default binary task.
ROADLINE_TAG = 24
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
QUANT_SCHEMES = ("float", "ptq", "qat")
TASK_KINDS = ("binary", "multiclass")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says what is wrong and what to do."""


class IncompatibleCheckpointError(CheckpointError):
    """A valid checkpoint that does not fit the task or input size it is asked to serve."""


def binary_task(tags: list[int] | tuple[int, ...] = (ROADLINE_TAG,)) -> dict[str, Any]:
    """Task dict of a one-logit model: positive = any of `tags` (default lane markings)."""
    return {"kind": "binary", "tags": [int(t) for t in tags]}


def multiclass_task(tags: list[int] | tuple[int, ...]) -> dict[str, Any]:
    """Task dict of a len(tags)-logit model: class index i is CARLA tag ``tags[i]``."""
    return {"kind": "multiclass", "tags": [int(t) for t in tags]}


def float_quant() -> dict[str, Any]:
    """Quant dict of an unquantized model."""
    return {"scheme": "float", "bits": 32, "backend": None, "extra": {}}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class CheckpointMeta:
    """Plain-data description of a checkpoint (everything but the tensors).

    Fields:
        arch: registry name (`perception.models.available_archs`).
        arch_kwargs: constructor arguments, ``build_model(arch, **arch_kwargs)``.
        task: ``{"kind": "binary", "tags": [24]}`` (one logit, positive = any listed tag)
            or ``{"kind": "multiclass", "tags": [...]}`` (class i is tag ``tags[i]``).
        input_size: (H, W) the model was trained at [px].
        normalisation: ``{"mean": [r, g, b], "std": [r, g, b]}`` applied to RGB in [0, 1].
        quant: ``{"scheme": "float"|"ptq"|"qat", "bits": int, "backend": str|None,
            "extra": {...}}``; scheme-specific details (observers, per-channel, the float
            parent checkpoint, ...) go in ``extra``.
        data: identity of the training data (dataset paths, manifest fingerprints, splits).
        metrics: metrics at save time (e.g. ``{"val_iou": 0.71}``).
        command: the command line that produced the file.
        created: ISO 8601 UTC time of creation.
        format_version: file format version (set on save).
    """

    arch: str
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=binary_task)
    input_size: tuple[int, int] = (160, 320)
    normalisation: dict[str, list[float]] = field(
        default_factory=lambda: {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    )
    quant: dict[str, Any] = field(default_factory=float_quant)
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    created: str = field(default_factory=_now_iso)
    format_version: int = FORMAT_VERSION

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
        return 1 if self.task["kind"] == "binary" else len(self.task["tags"])

    def validate(self) -> None:
        """Raise ValueError when a field is malformed or the fields contradict each other."""
        if not isinstance(self.arch, str) or not self.arch:
            raise ValueError("arch must be a non-empty string")
        for name in ("arch_kwargs", "task", "normalisation", "quant", "data", "metrics"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict")
        task = self.task
        if set(task) != {"kind", "tags"}:
            raise ValueError(f"task must have exactly the keys kind, tags; got {sorted(task)}")
        if task["kind"] not in TASK_KINDS:
            raise ValueError(f"task kind must be one of {list(TASK_KINDS)}, got {task['kind']!r}")
        tags = task["tags"]
        if not isinstance(tags, (list, tuple)) or not tags or not all(_is_int(t) for t in tags):
            raise ValueError(f"task tags must be a non-empty list of ints, got {tags!r}")
        if len(set(tags)) != len(tags):
            raise ValueError(f"task tags must be distinct, got {list(tags)}")
        declared = self.arch_kwargs.get("num_classes", 1)
        if declared != self.num_classes:
            raise ValueError(
                f"arch_kwargs num_classes={declared} but a {task['kind']} task with tags "
                f"{list(tags)} needs {self.num_classes} output channel(s)"
            )
        size = self.input_size
        if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
            raise ValueError(f"input_size must be (H, W) positive ints, got {size!r}")
        norm = self.normalisation
        if set(norm) != {"mean", "std"} or not all(
            isinstance(norm[k], (list, tuple)) and len(norm[k]) == 3 for k in ("mean", "std")
        ):
            raise ValueError("normalisation must be {'mean': [r, g, b], 'std': [r, g, b]}")
        if not all(float(s) > 0 for s in norm["std"]):
            raise ValueError(f"normalisation std must be > 0, got {norm['std']}")
        quant = self.quant
        if set(quant) != {"scheme", "bits", "backend", "extra"}:
            raise ValueError(
                "quant must have exactly the keys scheme, bits, backend, extra "
                f"(put anything else in extra); got {sorted(quant)}"
            )
        if quant["scheme"] not in QUANT_SCHEMES:
            raise ValueError(f"quant scheme must be one of {list(QUANT_SCHEMES)}, got {quant['scheme']!r}")
        if not _is_int(quant["bits"]) or quant["bits"] <= 0:
            raise ValueError(f"quant bits must be a positive int, got {quant['bits']!r}")
        if quant["backend"] is not None and not isinstance(quant["backend"], str):
            raise ValueError("quant backend must be a string or None")
        if not isinstance(quant["extra"], dict):
            raise ValueError("quant extra must be a dict")
        if not isinstance(self.command, str) or not isinstance(self.created, str):
            raise ValueError("command and created must be strings")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data dict (tuples become lists, numpy scalars become Python numbers)."""
        self.validate()
        return _plain(dataclasses.asdict(self), "meta")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckpointMeta:
        """Inverse of `to_dict`; unknown or missing keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown metadata keys {sorted(unknown)}")
        if "arch" not in data:
            raise ValueError("metadata has no 'arch'")
        values = dict(data)
        if "input_size" in values and isinstance(values["input_size"], (list, tuple)):
            values["input_size"] = tuple(values["input_size"])
        meta = cls(**values)
        meta.validate()
        return meta


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
    scheme = meta.quant["scheme"]
    if scheme != "float":
        raise CheckpointError(
            f"{path} is a {scheme} ({meta.quant['bits']}-bit) checkpoint; load it with the "
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
    return model.eval(), meta


def check_compatible(
    meta: CheckpointMeta,
    task: str | Mapping[str, Any] | None = None,
    input_size: tuple[int, int] | list[int] | None = None,
) -> None:
    """Raise IncompatibleCheckpointError when `meta` does not fit the intended use.

    `task` is a kind ("binary" | "multiclass") or a task dict (kind and tags must match);
    `input_size` is (H, W) and must equal the size the model was trained at.
    """
    if task is not None:
        want = {"kind": task} if isinstance(task, str) else dict(task)
        have = meta.task
        if want.get("kind") not in TASK_KINDS:
            raise ValueError(f"task kind must be one of {list(TASK_KINDS)}, got {want!r}")
        if want["kind"] != have["kind"]:
            if have["kind"] == "multiclass":
                raise IncompatibleCheckpointError(
                    f"checkpoint is a multi-class model ({meta.num_classes} classes, tags "
                    f"{have['tags']}) but the {want['kind']} task needs a binary checkpoint "
                    "(use a binary lane checkpoint or run the multi-class task)"
                )
            raise IncompatibleCheckpointError(
                f"checkpoint is a binary model (tags {have['tags']}) but the "
                f"{want['kind']} task needs a multi-class checkpoint "
                "(use a multi-class checkpoint or run the binary task)"
            )
        if "tags" in want and [int(t) for t in want["tags"]] != list(have["tags"]):
            raise IncompatibleCheckpointError(
                f"checkpoint predicts tags {have['tags']} but the task wants "
                f"{list(want['tags'])} (use a checkpoint trained for those tags)"
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
    "CheckpointError",
    "CheckpointMeta",
    "IncompatibleCheckpointError",
    "binary_task",
    "build_from_checkpoint",
    "check_compatible",
    "float_quant",
    "load_checkpoint",
    "multiclass_task",
    "save_checkpoint",
]
