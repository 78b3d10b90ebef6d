"""The label lanes of an imported TuSimple or CULane dataset, read back from its source folder.

The lane metrics (`perception.lane_metrics`) need lane instances, but an imported dataset
stores only the drawn masks, at the imported size. Its manifest does say where each frame
came from (`source.origin`, `source.files`: frame id -> source file, and for TuSimple the label
files), so the lanes are read from there, in source-image pixels, when they are scored. This
keeps the dataset format as it is for imports; the price is that the source folder must still be where it was
imported from, else `LaneLabelError` says so.

TuSimple lanes keep their own rows (`h_samples`) and x values (NaN where TuSimple has -2);
CULane lanes are their `.lines.txt` points, and their x at TuSimple-like rows is interpolated.

Simulator recordings made with `collect/record.py --lane-labels` carry their lanes in the
dataset itself (the index's `lanes` column, TuSimple form at the manifest's `h_samples`;
sim/lane_instances.py), so they are scored exactly like an imported TuSimple folder.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.lane_metrics import lane_x_at_rows, tusimple_rows

LANE_DATASETS = ("tusimple", "culane")


class LaneLabelError(ValueError):
    """The label lanes cannot be read; the message says why and what to do."""


@dataclass(frozen=True)
class FrameLanes:
    """One frame's label lanes in source pixels."""

    size: tuple[int, int]  # source image (H, W)
    lanes: tuple[np.ndarray, ...]  # Nx2 (x, y) polylines
    rows: np.ndarray  # rows of the TuSimple metric
    xs: tuple[np.ndarray, ...]  # each lane's x at `rows`, NaN where it has no point


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of a PNG or JPEG from its header (no decoding); other files are decoded."""
    with open(path, "rb") as f:
        head = f.read(26)
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            w, h = struct.unpack(">II", head[16:24])
            return h, w
        if head[:2] == b"\xff\xd8":
            f.seek(2)
            while True:
                marker = f.read(2)
                if len(marker) < 2 or marker[0] != 0xFF:
                    break
                (length,) = struct.unpack(">H", f.read(2))
                if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">xHH", f.read(5))
                    return h, w
                f.seek(length - 2, 1)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise LaneLabelError(f"{path} is not a readable image (is the source folder intact?)")
    return int(img.shape[0]), int(img.shape[1])


def _tusimple(origin: Path, source: dict[str, Any]) -> dict[str, tuple[np.ndarray, list[np.ndarray]]]:
    """raw_file -> (h_samples, lanes as x arrays with NaN) from the label files the import read."""
    out = {}
    for name in source.get("label_files", []):
        path = origin / name
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise LaneLabelError(f"{path}: the label file this dataset was imported from is unreadable ({e})") from None
        for line in lines:
            if not line.strip():
                continue
            obj = json.loads(line)
            rows = np.asarray(obj["h_samples"], dtype=np.float64)
            lanes = [np.where(np.asarray(x, np.float64) < 0, np.nan, np.asarray(x, np.float64)) for x in obj["lanes"]]
            out[Path(obj["raw_file"]).as_posix()] = (rows, lanes)
    return out


def _culane(image: Path) -> list[np.ndarray]:
    lines = image.with_name(image.stem + ".lines.txt")
    try:
        text = lines.read_text(encoding="utf-8")
    except OSError as e:
        raise LaneLabelError(f"{lines}: the lane file of {image} is unreadable ({e})") from None
    lanes = []
    for line in text.splitlines():
        values = [float(v) for v in line.split()]
        if len(values) >= 2:
            lanes.append(np.asarray(values, dtype=np.float64).reshape(-1, 2))
    return lanes


def _simulated(manifest: Any, root: str | Path) -> dict[str, FrameLanes]:
    """Frame id -> `FrameLanes` of a recording with lane instances (the index's `lanes` column)."""
    from dataset.format import DatasetError, frame_lanes, read_index

    spec = manifest.lane_instances
    rows = np.asarray(spec.get("h_samples", []), dtype=np.float64)
    size = (int(manifest.height), int(manifest.width))
    try:
        index = read_index(root)
    except DatasetError as e:
        raise LaneLabelError(str(e)) from None
    out = {}
    for r in index:
        try:
            lanes = frame_lanes(r, len(rows), root)
        except DatasetError as e:
            raise LaneLabelError(str(e)) from None
        xs = [np.where(x < 0, np.nan, x) for x in lanes]
        xs = [x for x in xs if np.isfinite(x).any()]
        polylines = tuple(np.stack([x, rows], axis=1)[np.isfinite(x)] for x in xs)
        out[r["id"]] = FrameLanes(size, polylines, rows, tuple(xs))
    return out


class LabelLanes:
    """Frame id -> `FrameLanes` of one imported dataset, read lazily from its source folder, or
    of a simulator recording with lane instances (`lane_instances` in its manifest), from its index."""

    def __init__(self, manifest: Any, root: str | Path = "") -> None:
        self._cache: dict[str, FrameLanes] = {}
        if getattr(manifest, "lane_instances", None):
            self.dataset = "simulator"
            self._cache = _simulated(manifest, root)
            return
        source = getattr(manifest, "source", None) or {}
        self.dataset = source.get("dataset")
        where = f"{root}: " if root else ""
        if self.dataset not in LANE_DATASETS:
            raise LaneLabelError(
                f"{where}not an imported TuSimple or CULane dataset (dataset {self.dataset!r}): no label lanes"
            )
        self.origin = Path(source.get("origin", ""))
        if not self.origin.is_dir():
            raise LaneLabelError(
                f"{where}its source folder {self.origin} is gone: the lane metrics read the label lanes from it "
                "(re-import the dataset from where the source now is)"
            )
        self.files: dict[str, str] = dict(source.get("files", {}))
        self._tusimple = _tusimple(self.origin, source) if self.dataset == "tusimple" else {}

    def __getitem__(self, frame_id: str) -> FrameLanes:
        if frame_id in self._cache:
            return self._cache[frame_id]
        if self.dataset == "simulator":
            raise LaneLabelError(f"frame {frame_id} is not in the dataset's index")
        name = self.files.get(frame_id)
        if name is None:
            raise LaneLabelError(f"frame {frame_id} has no source file in the manifest (re-import the dataset)")
        image = self.origin / name
        size = image_size(image)
        if self.dataset == "tusimple":
            if name not in self._tusimple:
                raise LaneLabelError(f"{name}: not in the label files {self.origin} holds now (re-import)")
            rows, xs = self._tusimple[name]
            lanes = [np.stack([x, rows], axis=1)[np.isfinite(x)] for x in xs]
        else:
            lanes = _culane(image)
            rows = tusimple_rows(size[0])
            xs = [lane_x_at_rows(lane, rows) for lane in lanes]
        keep = [i for i, lane in enumerate(lanes) if len(lane)]
        frame = FrameLanes(size, tuple(lanes[i] for i in keep), rows, tuple(xs[i] for i in keep))
        self._cache[frame_id] = frame
        return frame


def has_label_lanes(manifest: Any) -> bool:
    """True for a dataset imported from TuSimple or CULane (whether its source is still there or
    not) and for a simulator recording with lane instances (collect/record.py --lane-labels)."""
    if getattr(manifest, "lane_instances", None):
        return True
    return (getattr(manifest, "source", None) or {}).get("dataset") in LANE_DATASETS


__all__ = ["LANE_DATASETS", "FrameLanes", "LabelLanes", "LaneLabelError", "has_label_lanes", "image_size"]
