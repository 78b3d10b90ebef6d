"""Typed parts of a checkpoint's metadata: what a model predicts, how its input is
normalised, how it was quantized.

Each is a small frozen dataclass that checks itself when it is made, so code reads
``meta.quant.scheme`` instead of looking a key up in a dict that nobody checked, and a
malformed file fails once, at load, with a message that names the field.

``to_dict`` / ``from_dict`` map to exactly the plain dicts checkpoints and ONNX files have
always stored (same keys, same order, lists not tuples), so old files load and files
written now read the same in older laneloop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: CARLA semantic tag of lane markings (RoadLine): the default binary task.
ROADLINE_TAG = 24
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
QUANT_SCHEMES = ("float", "ptq", "qat")
TASK_KINDS = ("binary", "multiclass")
#: What a binary lane model's positives are: the painted marking pixels (RoadLine in the labels),
#: or the lane boundaries as TuSimple and CULane label them (lines drawn through dash gaps and
#: behind cars, from a recording's lane instances: `collect/record.py --lane-labels`).
TASK_TARGETS = ("paint", "boundaries")
#: Width of a drawn lane boundary, as a share of the image width: 2 px at 320. Thin on purpose:
#: at TuSimple's label width (20 px at 1280, 5 px at 320) an outer lane slanted at dx/dy ~ 5 runs
#: 25 px wide per row, past `perception.mask_lanes`' widest lane run, and is never decoded
#: (measured: the 5 px targets themselves decode to TuSimple accuracy 0.53, 2 px ones to 0.97).
BOUNDARY_WIDTH = 2.0 / 320.0


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _exact_keys(data: Any, keys: tuple[str, ...], what: str, hint: str = "") -> None:
    """ValueError unless `data` is a mapping with exactly `keys` (the stored dict's shape)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be a dict, got {type(data).__name__}")
    if set(data) != set(keys):
        raise ValueError(f"{what} must have exactly the keys {', '.join(keys)}{hint}; got {sorted(data)}")


@dataclass(frozen=True)
class Task:
    """What the model predicts: ``binary`` (one logit, positive = any of `tags`) or
    ``multiclass`` (len(tags) logits, class i is CARLA tag ``tags[i]``)."""

    kind: str
    tags: tuple[int, ...]
    target: str = "paint"  # TASK_TARGETS; "boundaries" is a binary RoadLine task only

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task kind must be one of {list(TASK_KINDS)}, got {self.kind!r}")
        if self.target not in TASK_TARGETS:
            raise ValueError(f"task target must be one of {list(TASK_TARGETS)}, got {self.target!r}")
        if self.target == "boundaries" and (self.kind != "binary" or tuple(self.tags) != (ROADLINE_TAG,)):
            raise ValueError(
                f"the boundaries target is a binary RoadLine ({ROADLINE_TAG}) task, got {self.kind} {self.tags}"
            )
        tags = self.tags
        if not isinstance(tags, (list, tuple)) or not tags or not all(_is_int(t) for t in tags):
            raise ValueError(f"task tags must be a non-empty list of ints, got {tags!r}")
        if len(set(tags)) != len(tags):
            raise ValueError(f"task tags must be distinct, got {list(tags)}")
        object.__setattr__(self, "tags", tuple(int(t) for t in tags))

    @property
    def num_classes(self) -> int:
        """Output channels the task implies (1 for binary)."""
        return 1 if self.kind == "binary" else len(self.tags)

    @property
    def lane_channel(self) -> int | None:
        """Output channel of the lane markings: 0 for binary, the RoadLine class for
        multi-class, None for a multi-class task without RoadLine (it gives no lane mask)."""
        if self.kind == "binary":
            return 0
        return self.tags.index(ROADLINE_TAG) if ROADLINE_TAG in self.tags else None

    @property
    def lane_tags(self) -> tuple[int, ...]:
        """Tags whose pixels are "lane" when this model's lane masks are scored."""
        return self.tags if self.kind == "binary" else (ROADLINE_TAG,)

    def to_dict(self) -> dict[str, Any]:
        """The stored form, ``{"kind": ..., "tags": [...]}`` (plus ``"target"`` when not paint,
        so paint models store what they always did)."""
        d: dict[str, Any] = {"kind": self.kind, "tags": list(self.tags)}
        if self.target != "paint":
            d["target"] = self.target
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        """Inverse of `to_dict`; ValueError for other keys or bad values."""
        keys = ("kind", "tags", "target") if isinstance(data, Mapping) and "target" in data else ("kind", "tags")
        _exact_keys(data, keys, "task")
        return cls(data["kind"], data["tags"], data.get("target", "paint"))


def binary_task(tags: list[int] | tuple[int, ...] = (ROADLINE_TAG,)) -> Task:
    """Task of a one-logit model: positive = any of `tags` (default lane markings)."""
    return Task("binary", tuple(tags))


def multiclass_task(tags: list[int] | tuple[int, ...]) -> Task:
    """Task of a len(tags)-logit model: class index i is CARLA tag ``tags[i]``."""
    return Task("multiclass", tuple(tags))


@dataclass(frozen=True)
class Normalisation:
    """Per-channel ``(rgb - mean) / std`` applied to RGB scaled to [0, 1]."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            v = getattr(self, name)
            if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(_is_number(x) for x in v):
                raise ValueError("normalisation must be {'mean': [r, g, b], 'std': [r, g, b]}")
            object.__setattr__(self, name, tuple(float(x) for x in v))
        if not all(s > 0 for s in self.std):
            raise ValueError(f"normalisation std must be > 0, got {list(self.std)}")

    def to_dict(self) -> dict[str, list[float]]:
        """The stored form, ``{"mean": [r, g, b], "std": [r, g, b]}``."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalisation:
        """Inverse of `to_dict`; ValueError for other keys or bad values."""
        if not isinstance(data, Mapping) or set(data) != {"mean", "std"}:
            raise ValueError("normalisation must be {'mean': [r, g, b], 'std': [r, g, b]}")
        return cls(data["mean"], data["std"])


@dataclass(frozen=True)
class Quantization:
    """How the weights are stored: ``float`` (32 bit) or int8 ``ptq`` / ``qat``.

    `extra` holds what only one scheme needs (observer, per-channel, the float parent,
    the PT2E graph fingerprint, ...); it stays a plain dict because its keys differ by
    scheme and `perception.quantized` reads them.
    """

    scheme: str = "float"
    bits: int = 32
    backend: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.scheme not in QUANT_SCHEMES:
            raise ValueError(f"quant scheme must be one of {list(QUANT_SCHEMES)}, got {self.scheme!r}")
        if not _is_int(self.bits) or self.bits <= 0:
            raise ValueError(f"quant bits must be a positive int, got {self.bits!r}")
        if self.backend is not None and not isinstance(self.backend, str):
            raise ValueError("quant backend must be a string or None")
        if not isinstance(self.extra, Mapping):
            raise ValueError("quant extra must be a dict")
        object.__setattr__(self, "extra", dict(self.extra))

    @property
    def is_float(self) -> bool:
        """True for an unquantized model."""
        return self.scheme == "float"

    def to_dict(self) -> dict[str, Any]:
        """The stored form, ``{"scheme", "bits", "backend", "extra"}``."""
        return {"scheme": self.scheme, "bits": self.bits, "backend": self.backend, "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quantization:
        """Inverse of `to_dict`; ValueError for other keys or bad values."""
        _exact_keys(data, ("scheme", "bits", "backend", "extra"), "quant", " (put anything else in extra)")
        return cls(data["scheme"], data["bits"], data["backend"], data["extra"])


def float_quant() -> Quantization:
    """Quantization of an unquantized model."""
    return Quantization()


__all__ = [
    "BOUNDARY_WIDTH",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "QUANT_SCHEMES",
    "ROADLINE_TAG",
    "TASK_KINDS",
    "TASK_TARGETS",
    "Normalisation",
    "Quantization",
    "Task",
    "binary_task",
    "float_quant",
    "multiclass_task",
]
