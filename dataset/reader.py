"""LaneDataset: the reader train/ uses, over one or several recorded dataset folders.

Returns `(image, target)`: image float32 3xHxW, RGB scaled to [0, 1] then normalised with
`mean`/`std` (exposed, to be stored in the checkpoint); target float32 1xHxW of {0, 1} for
the binary task (positive = any of `tags`), or int64 HxW class indices for the multi-class
task (class i is tag `tags[i]`, any other tag is IGNORE_INDEX), matching
`perception.checkpoint.binary_task` / `multiclass_task`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from dataset.format import (
    INDEX_NAME,
    SPLITS,
    STATUS_COMPLETE,
    DatasetError,
    Manifest,
    frame_lanes,
    read_index,
    read_labels,
    read_manifest,
    read_rgb,
)
from perception.checkpoint import IMAGENET_MEAN, IMAGENET_STD, CheckpointMeta
from perception.lane_metrics import draw_lane
from perception.metadata import BOUNDARY_WIDTH, ROADLINE_TAG, TASK_TARGETS
from sim.tags import LANE_TAGS, NAMES, parse_tags

IGNORE_INDEX = 255
#: (rgb HxWx3 uint8, labels HxW uint8 tag ids) -> the same, e.g. flips or crops for training.
Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class LaneDataset(Dataset):
    """Frames of one split from one or more dataset folders, as model-ready tensors.

    Args:
        roots: a dataset folder or a list of them (merged in the order given).
        split: "train", "val", "test", a list of them, or "all".
        tags: target tags; one tag (default RoadLine) is the binary task, several the
            multi-class one unless `task` says otherwise.
        size: (height, width) to resize to (area/linear for images, nearest for labels),
            or None to keep the recorded size (all folders must then agree).
        transform: applied to the raw (rgb, labels) arrays before resizing.
        task: "binary" or "multiclass"; default from the number of tags.
        target: "paint" (the labels' RoadLine pixels) or "boundaries": the lane boundaries
            drawn `BOUNDARY_WIDTH` of the width wide through dash gaps and behind cars, from a
            recording's lane instances (`record.py --lane-labels`); an imported TuSimple or
            CULane folder's labels already are such lines and are used as they are.
        allow_incomplete: read an unfinished recording (only its complete frames).
    """

    def __init__(
        self,
        roots: str | Path | Sequence[str | Path],
        split: str | Sequence[str] = "train",
        tags: Sequence[int] | str = LANE_TAGS,
        size: tuple[int, int] | None = None,
        transform: Transform | None = None,
        task: str | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        allow_incomplete: bool = False,
        target: str = "paint",
    ) -> None:
        root_list = [roots] if isinstance(roots, str | Path) else list(roots)
        if not root_list:
            raise DatasetError("LaneDataset: no dataset folder given (pass a folder or a list of them)")
        self.roots = [Path(r) for r in root_list]
        splits = SPLITS if split == "all" else ((split,) if isinstance(split, str) else tuple(split))
        bad = [s for s in splits if s not in SPLITS]
        if bad:
            raise DatasetError(f"unknown split {bad[0]!r} (choose one of: {', '.join(SPLITS)}, all)")
        self.splits = splits
        self.tags = parse_tags(tags)
        self.task = task or ("binary" if len(self.tags) == 1 else "multiclass")
        if self.task not in ("binary", "multiclass"):
            raise DatasetError(f"unknown task {self.task!r} (choose binary or multiclass)")
        if target not in TASK_TARGETS:
            raise DatasetError(f"unknown target {target!r} (choose {' or '.join(TASK_TARGETS)})")
        if target == "boundaries" and (self.task != "binary" or tuple(self.tags) != (ROADLINE_TAG,)):
            raise DatasetError(f"the boundaries target is the binary RoadLine ({ROADLINE_TAG}) task (drop --tags)")
        if target == "boundaries" and transform is not None:
            raise DatasetError("the boundaries target is drawn from the recorded geometry: no transform with it")
        self.target = target
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.transform = transform
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._lut = np.full(256, IGNORE_INDEX if self.task == "multiclass" else 0, dtype=np.uint8)
        for i, t in enumerate(self.tags):
            self._lut[t] = 1 if self.task == "binary" else i
        self._mean = np.asarray(self.mean, np.float32).reshape(3, 1, 1)
        self._std = np.asarray(self.std, np.float32).reshape(3, 1, 1)

        self.manifests: list[Manifest] = []
        self.items: list[tuple[Path, dict[str, Any]]] = []
        for root in self.roots:
            manifest = read_manifest(root)
            lacking = manifest.unannotated(self.tags)
            if lacking:
                raise DatasetError(_unannotated_message(root, manifest, lacking))
            if manifest.status != STATUS_COMPLETE and not allow_incomplete:
                raise DatasetError(
                    f"{root}: recording unfinished (finish it with: python collect/record.py --resume "
                    f"--out {root}, or pass allow_incomplete=True)"
                )
            if not (root / INDEX_NAME).is_file():
                raise DatasetError(f"{root}: no {INDEX_NAME} (half-written dataset; rerun record.py --resume)")
            rows = [r for r in read_index(root) if r["split"] in splits]
            missing = [r for r in rows if not (root / r["rgb"]).is_file() or not (root / r["label"]).is_file()]
            if missing:
                r = missing[0]
                raise DatasetError(
                    f"{root}: the index names {len(missing)} frame(s) whose files are missing, e.g. "
                    f"{r['id']} ({r['rgb']}); check it with: python -m dataset.validate {root}"
                )
            if target == "boundaries":
                _check_boundaries(root, manifest)
            self.manifests.append(manifest)
            self.items += [(root, r) for r in rows]
        if not self.items:
            raise DatasetError(
                f"no frames in split {'+'.join(splits)} of {', '.join(map(str, self.roots))} "
                "(record more episodes, or change the --split fractions)"
            )
        sizes = {(m.height, m.width) for m in self.manifests}
        if self.size is None and len(sizes) > 1:
            raise DatasetError(f"folders differ in image size {sorted(sizes)} (pass size=(height, width))")
        self.image_size: tuple[int, int] = self.size or next(iter(sizes))

    @property
    def num_classes(self) -> int:
        """Output channels a model needs for this task (1 for binary)."""
        return 1 if self.task == "binary" else len(self.tags)

    @property
    def task_dict(self) -> dict[str, Any]:
        """The task in the checkpoint's form: {"kind": ..., "tags": [...]}."""
        d: dict[str, Any] = {"kind": self.task, "tags": list(self.tags)}
        if self.target != "paint":
            d["target"] = self.target
        return d

    @property
    def normalisation(self) -> dict[str, list[float]]:
        """Mean/std in the checkpoint's form."""
        return {"mean": list(self.mean), "std": list(self.std)}

    def identity(self) -> dict[str, Any]:
        """Plain-data identity of the training data (folders, split, frames, fingerprint)."""
        h = hashlib.sha256()
        for root, r in self.items:
            h.update(f"{root.name}/{r['id']};".encode())
        for m in self.manifests:
            h.update(f"{m.created}".encode())
        return {
            "roots": [str(r) for r in self.roots],
            "split": list(self.splits),
            "frames": len(self.items),
            "fingerprint": h.hexdigest()[:16],
        }

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw recorded (rgb HxWx3 uint8, labels HxW uint8 tag ids) of one frame."""
        root, row = self.items[index]
        try:
            return read_rgb(root / row["rgb"]), read_labels(root / row["label"])
        except (OSError, ValueError) as e:
            raise DatasetError(
                f"{root}: frame {row['id']} unreadable ({e}); check it with: python -m dataset.validate {root}"
            ) from None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, labels = self.load(index)
        if self.transform is not None:
            rgb, labels = self.transform(rgb, labels)
        if self.size is not None and labels.shape != self.size:
            h, w = self.size
            shrink = h * w < labels.shape[0] * labels.shape[1]
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
        image = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0
        image = (image - self._mean) / self._std
        target = self._lut[labels] if self.target == "paint" else self._boundaries(index, labels)
        if self.task == "binary":
            return torch.from_numpy(image), torch.from_numpy(target.astype(np.float32)[None])
        return torch.from_numpy(image), torch.from_numpy(target.astype(np.int64))

    def _boundaries(self, index: int, labels: np.ndarray) -> np.ndarray:
        """The frame's lane boundaries as a 0/1 mask at the labels' size (see `target`)."""
        root, row = self.items[index]
        manifest = self.manifests[self.roots.index(root)]
        if manifest.lane_instances is None:  # an imported lane dataset: its labels are the lines
            return self._lut[labels]
        h, w = labels.shape
        mask = np.zeros((h, w), bool)
        rows = np.asarray(manifest.lane_instances.get("h_samples", []), np.float64)
        sy, sx = h / manifest.height, w / manifest.width
        for xs in frame_lanes(row, len(rows), root):
            ok = xs >= 0
            pts = np.stack([(xs[ok] + 0.5) * sx - 0.5, (rows[ok] + 0.5) * sy - 0.5], axis=1)
            mask |= draw_lane(pts, (h, w), BOUNDARY_WIDTH * w)
        return mask.astype(np.uint8)


def _check_boundaries(root: Path, manifest: Manifest) -> None:
    """DatasetError unless the folder can give lane-boundary targets."""
    lane_import = manifest.source is not None and "line_width" in manifest.source
    if manifest.lane_instances is None and not lane_import:
        raise DatasetError(
            f"{root}: no lane boundaries to train the boundaries target on (record it with "
            "collect/record.py --lane-labels, or import TuSimple/CULane with collect.importers)"
        )


def dataset_for(
    meta: CheckpointMeta,
    roots: str | Path | Sequence[str | Path],
    split: str | Sequence[str],
    size: tuple[int, int] | None = None,
) -> LaneDataset:
    """The split of `roots` the way the checkpoint's model expects it: its task and tags, its
    input size (or `size`), its normalisation; so evaluation, calibration and fine-tuning see
    exactly what the model was trained on."""
    return LaneDataset(
        roots,
        split=split,
        tags=list(meta.task.tags),
        task=meta.task.kind,
        target=meta.task.target,
        size=size or tuple(meta.input_size),
        mean=list(meta.normalisation.mean),
        std=list(meta.normalisation.std),
    )


def _unannotated_message(root: Path, manifest: Manifest, lacking: list[int]) -> str:
    """Why a task cannot be scored on an imported dataset, and which tags it can."""
    names = ", ".join(f"{NAMES.get(t, '?')} ({t})" for t in lacking)
    source = manifest.source or {}
    note = source.get("task_note")
    has = ",".join(str(t) for t in manifest.annotated_tags or [])
    return (
        f"{root}: this {source.get('dataset', manifest.backend)} dataset does not annotate {names}"
        f"{f'; {note}' if note else ''} (choose among the tags it annotates: {has})"
    )


__all__ = ["IGNORE_INDEX", "LaneDataset", "Transform", "dataset_for"]
