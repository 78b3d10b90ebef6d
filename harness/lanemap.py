"""A top-down lane map from what a model sees, scored against the map's true markings.

Every frame, the model's marking pixels are projected to the ground in the vehicle frame
(`harness.drivers.GroundProjector`, the lane keeper's projection) and moved into the map
frame with the ego pose; they are counted in the cells of a grid, the town's own ground
raster grid (embedded world: 6 cm cells), so the truth is that raster's RoadLine cells.
The ground pixels the camera saw unoccluded (true labels: road, sidewalk, marking, terrain)
are counted as the footprint: only markings inside it could have been seen.

Scores, per model, with a tolerance (default 0.2 m):
- precision: mapped marking cells (hit in >= `min_hits` frames) within tolerance of a true one;
- recall (completeness along the route): true marking cells in the footprint within
  tolerance of a mapped one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from harness.drivers import GroundProjector
from sim import tags

GROUND_TAGS = np.zeros(256, bool)
GROUND_TAGS[[tags.ROAD, tags.SIDEWALK, tags.TERRAIN, tags.ROAD_LINE, tags.GROUND]] = True


@dataclass(frozen=True)
class Grid:
    """A map grid: cell (row, col) of world (x, y) is ((ymax - y) / res, (x - xmin) / res)."""

    res: float  # [m] per cell
    xmin: float
    ymax: float
    shape: tuple[int, int]

    def cells(self, xy: np.ndarray) -> np.ndarray:
        """Flat cell indices of (N, 2) world points inside the grid."""
        c = np.floor((xy[:, 0] - self.xmin) / self.res).astype(np.int64)
        r = np.floor((self.ymax - xy[:, 1]) / self.res).astype(np.int64)
        ok = (r >= 0) & (r < self.shape[0]) & (c >= 0) & (c < self.shape[1])
        return r[ok] * self.shape[1] + c[ok]

    def centres(self, flat: np.ndarray) -> np.ndarray:
        """(N, 2) world centres of flat cell indices."""
        r, c = np.divmod(flat, self.shape[1])
        return np.stack([self.xmin + (c + 0.5) * self.res, self.ymax - (r + 0.5) * self.res], 1)


@dataclass
class LaneMap:
    """Accumulates one model's marking pixels (and the camera's footprint) over a drive.

    The footprint is a flag per grid cell (one byte a cell: 36 MB for Town10HD's raster),
    set in place each frame, since sorting the ~30k ground cells of every frame costs 7 ms;
    maps of the same drive can share one (`LaneMapper` does), so it is computed once a frame.
    """

    grid: Grid
    projector: GroundProjector
    seen: np.ndarray | None = None  # flat bool over the grid: cells inside the camera's footprint
    _hits: list[np.ndarray] = field(default_factory=list)
    frames: int = 0

    def add(self, x: float, y: float, yaw: float, mask: np.ndarray, labels: np.ndarray | None = None) -> None:
        """One frame: the mask's marking pixels (and, given the labels, the footprint) at ego pose (x, y, yaw)."""
        self._hits.append(np.unique(self._cells(x, y, yaw, mask.astype(bool))))
        if labels is not None:
            self.add_footprint(x, y, yaw, labels)
        self.frames += 1

    def add_footprint(self, x: float, y: float, yaw: float, labels: np.ndarray) -> None:
        """Mark the ground cells the camera saw unoccluded (true labels) at ego pose (x, y, yaw)."""
        if self.seen is None:
            self.seen = np.zeros(self.grid.shape[0] * self.grid.shape[1], bool)
        self.seen[self._cells(x, y, yaw, GROUND_TAGS[labels])] = True

    def _cells(self, x: float, y: float, yaw: float, mask: np.ndarray) -> np.ndarray:
        pts = self.projector.points(mask)
        c, s = math.cos(yaw), math.sin(yaw)
        world = np.stack([x + c * pts[:, 0] - s * pts[:, 1], y + s * pts[:, 0] + c * pts[:, 1]], 1)
        return self.grid.cells(world)

    def cells(self, min_hits: int = 2) -> np.ndarray:
        """Flat indices of the cells mapped as marking (hit in at least `min_hits` frames)."""
        if not self._hits:
            return np.zeros(0, np.int64)
        idx, n = np.unique(np.concatenate(self._hits), return_counts=True)
        return idx[n >= min_hits]

    def footprint(self) -> np.ndarray:
        return np.flatnonzero(self.seen) if self.seen is not None else np.zeros(0, np.int64)


class LaneMapper:
    """Every model's lane map of a drive, fed frame by frame: `record(obs, masks)`.

    The closed loop's recorder hook (like `rosbag.recorder.BagRecorder`: `episode`, `record`,
    `close`); the footprint is computed once a frame and shared by the models' maps. Needs the
    town's ground raster (the embedded world's `Town`), which is also the truth it is scored on.
    """

    def __init__(self, town: Any, max_range_m: float = 25.0) -> None:
        g = town.ground
        self.town = town
        self.grid = Grid(g.res, g.xmin, g.ymax, g.data.shape[:2])
        self.max_range_m = max_range_m
        self.maps: dict[str, LaneMap] = {}
        self.seen = np.zeros(self.grid.shape[0] * self.grid.shape[1], bool)
        self._projectors: dict[tuple, GroundProjector] = {}
        self.seconds = 0.0

    def episode(self, name: str = "") -> None:
        """A new episode (a model driving its own) adds to the same maps."""

    def record(self, obs: Any, masks: dict[str, np.ndarray] | None = None) -> None:
        t0 = time.perf_counter()
        cam, ego = obs.camera, obs.ego
        footprint_done = False
        for model, mask in (masks or {}).items():
            lm = self.maps.get(model)
            if lm is None:
                lm = self.maps[model] = LaneMap(self.grid, self._projector(cam.spec, mask.shape), self.seen)
            lm.add(ego.x, ego.y, ego.yaw, mask)
            if not footprint_done and cam.labels is not None:
                proj = self._projector(cam.spec, cam.labels.shape)
                LaneMap(self.grid, proj, self.seen).add_footprint(ego.x, ego.y, ego.yaw, cam.labels)
                footprint_done = True
        self.seconds += time.perf_counter() - t0

    def _projector(self, spec: Any, hw: tuple[int, int]) -> GroundProjector:
        key = (spec, tuple(hw))
        if key not in self._projectors:
            self._projectors[key] = GroundProjector.from_camera(spec, mask_hw=tuple(hw), max_range_m=self.max_range_m)
        return self._projectors[key]

    def close(self) -> None:
        """Nothing to flush: the maps stay in memory until `save`."""

    def abort(self) -> None:
        """The hook's abort: nothing half-written to drop."""

    def save(self, out: str | Path, tol_m: float = 0.2, min_hits: int = 2) -> dict[str, Any]:
        """PNG and GeoJSON per model and `lanemap.json` (the scores) into `out`; returns the report."""
        from sim.tags import ROAD_LINE

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        truth = self.town.ground.data[..., 0] == ROAD_LINE
        report: dict[str, Any] = {"town": self.town.name, "models": {}}
        for model, lm in self.maps.items():
            if lm.frames == 0 or not self.seen.any():
                continue
            res = score(lm, truth, tol_m, min_hits)
            save_png(res, out / f"lanemap_{model}.png")
            save_geojson(lm, out / f"lanemap_{model}.geojson", model, min_hits)
            report["models"][model] = {k: v for k, v in res.items() if not k.startswith("_")}
        (out / "lanemap.json").write_text(json.dumps(report, indent=2))
        return report


def _crop(grid: Grid, *sets: np.ndarray, margin: int = 8) -> tuple[int, int, int, int]:
    allc = np.concatenate([s for s in sets if s.size])
    r, c = np.divmod(allc, grid.shape[1])
    return (max(r.min() - margin, 0), min(r.max() + margin + 1, grid.shape[0]),
            max(c.min() - margin, 0), min(c.max() + margin + 1, grid.shape[1]))  # fmt: skip


def _dense(grid: Grid, flat: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    r0, r1, c0, c1 = box
    out = np.zeros((r1 - r0, c1 - c0), np.uint8)
    r, c = np.divmod(flat, grid.shape[1])
    ok = (r >= r0) & (r < r1) & (c >= c0) & (c < c1)
    out[r[ok] - r0, c[ok] - c0] = 1
    return out


def score(lane_map: LaneMap, truth: np.ndarray, tol_m: float = 0.2, min_hits: int = 2) -> dict[str, Any]:
    """Precision and recall within `tol_m` of `truth` (HxW bool over the grid: true marking cells)."""
    grid = lane_map.grid
    pred, seen = lane_map.cells(min_hits), lane_map.footprint()
    if seen.size == 0:
        raise ValueError("the lane map has no footprint (add frames with their labels)")
    box = _crop(grid, pred, seen)
    r0, r1, c0, c1 = box
    t = truth[r0:r1, c0:c1].astype(np.uint8)
    p = _dense(grid, pred, box)
    footprint = _dense(grid, seen, box)
    k = int(round(tol_m / grid.res))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    near_truth = cv2.dilate(t, disk).astype(bool)
    near_pred = cv2.dilate(p, disk).astype(bool)
    visible = t.astype(bool) & footprint.astype(bool)
    tp_pred = int((p.astype(bool) & near_truth).sum())
    found = int((visible & near_pred).sum())
    return {
        "frames": lane_map.frames,
        "tolerance_m": tol_m,
        "min_hits": min_hits,
        "cell_m": grid.res,
        "mapped_cells": int(p.sum()),
        "true_cells_seen": int(visible.sum()),
        "precision": tp_pred / max(int(p.sum()), 1) if p.any() else math.nan,
        "recall": found / max(int(visible.sum()), 1) if visible.any() else math.nan,
        "box": [int(v) for v in box],
        "_layers": (t.astype(bool), p.astype(bool), footprint.astype(bool), near_truth, near_pred),
    }


def save_png(result: dict[str, Any], path: str | Path, max_side: int = 2000) -> Path:
    """Top-down picture: footprint grey, true markings white, mapped green (within tolerance) / red, missed blue."""
    t, p, seen, near_truth, near_pred = result["_layers"]
    img = np.full((*t.shape, 3), 24, np.uint8)
    img[seen] = (70, 70, 70)
    img[t] = (200, 200, 200)
    img[t & seen & ~near_pred] = (60, 110, 255)
    img[p & near_truth] = (40, 220, 60)
    img[p & ~near_truth] = (255, 50, 40)
    scale = min(1.0, max_side / max(img.shape[:2]))
    if scale < 1.0:  # max-pool so thin lines survive the downscale
        k = math.ceil(1 / scale)
        h, w = img.shape[0] // k * k, img.shape[1] // k * k
        img = img[:h, :w].reshape(h // k, k, w // k, k, 3).max(axis=(1, 3))
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return Path(path)


def save_geojson(lane_map: LaneMap, path: str | Path, model: str, min_hits: int = 2, cell_m: float = 0.2) -> Path:
    """The mapped marking points (thinned to one per `cell_m` cell) as a GeoJSON MultiPoint.

    Coordinates are the map frame's metres (x east, y north; the bag's `map` frame), not WGS84:
    a local projected frame, as RFC 7946 allows only by prior arrangement; the properties say so.
    """
    xy = lane_map.grid.centres(lane_map.cells(min_hits))
    thin = np.unique(np.floor(xy / cell_m).astype(np.int64), axis=0) if len(xy) else np.zeros((0, 2))
    pts = ((thin + 0.5) * cell_m).round(3).tolist()
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "MultiPoint", "coordinates": pts},
                "properties": {"model": model, "kind": "lane_marking", "cell_m": cell_m, "frames": lane_map.frames},
            }
        ],
        "properties": {"crs": "local map frame, metres (x east, y north), ROS frame 'map'"},
    }
    Path(path).write_text(json.dumps(doc))
    return Path(path)


__all__ = ["Grid", "LaneMap", "LaneMapper", "save_geojson", "save_png", "score"]
