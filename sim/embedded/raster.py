"""The ground as a top-down raster: tag ids and a material byte per pixel.

The camera renderer samples it through a homography, so every ground pixel's colour and
label come from the same raster cell: labels are pixel-aligned with the RGB by construction.
Material byte = material id * 16 + shade (0..15), turned into colour by a per-weather LUT.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sim import tags
from sim.embedded.roadnet import Marking, RoadNetwork

GRASS, ASPHALT, WHITE, YELLOW, CONCRETE, CURB, DIRT, PATCH = range(8)
TAR, TRACK = 8, 9  # road surface details of the `real` look only (sim/embedded/real_ground.py)
MATERIAL_TAG = {
    GRASS: tags.TERRAIN,
    ASPHALT: tags.ROAD,
    WHITE: tags.ROAD_LINE,
    YELLOW: tags.ROAD_LINE,
    CONCRETE: tags.SIDEWALK,
    CURB: tags.SIDEWALK,
    DIRT: tags.GROUND,
    PATCH: tags.ROAD,
    TAR: tags.ROAD,
    TRACK: tags.ROAD,
}
SHIFT = 2  # sub-pixel bits for OpenCV drawing
# Tag of every material byte: the painter always writes a tag and its material together, so a
# ground pixel's tag is a function of its material byte (the renderer reads both in one look-up).
TAG_OF_BYTE = np.array([MATERIAL_TAG.get(b >> 4, tags.TERRAIN) for b in range(256)], np.uint8)


@dataclass
class GroundRaster:
    data: np.ndarray  # (H, W, 2) uint8: [tag, material byte]
    res: float  # metres per pixel
    xmin: float
    ymax: float

    def world_to_px(self) -> np.ndarray:
        """3x3 affine taking world (x, y, 1) to raster (col, row, 1)."""
        r = self.res
        return np.array([[1 / r, 0, -self.xmin / r], [0, -1 / r, self.ymax / r], [0, 0, 1]])

    def tag_at(self, x: float, y: float) -> int:
        c = int((x - self.xmin) / self.res)
        r = int((self.ymax - y) / self.res)
        h, w = self.data.shape[:2]
        if 0 <= r < h and 0 <= c < w:
            return int(self.data[r, c, 0])
        return tags.TERRAIN


class _Painter:
    def __init__(self, raster: GroundRaster):
        self.g = raster
        self.tag = np.ascontiguousarray(raster.data[..., 0])
        self.mat = np.ascontiguousarray(raster.data[..., 1])

    def px(self, pts: np.ndarray) -> np.ndarray:
        g = self.g
        cols = (pts[:, 0] - g.xmin) / g.res
        rows = (g.ymax - pts[:, 1]) / g.res
        return np.round(np.stack([cols, rows], 1) * (1 << SHIFT)).astype(np.int32)

    def width(self, metres: float) -> int:
        return max(1, int(round(metres / self.g.res)))

    def line(self, pts: np.ndarray, width_m: float, material: int, closed: bool = False) -> None:
        p = [self.px(pts)]
        w = self.width(width_m)
        cv2.polylines(self.tag, p, closed, int(MATERIAL_TAG[material]), w, cv2.LINE_8, SHIFT)
        cv2.polylines(self.mat, p, closed, material * 16 + 8, w, cv2.LINE_8, SHIFT)

    def poly(self, pts: np.ndarray, material: int) -> None:
        p = self.px(pts)
        cv2.fillPoly(self.tag, [p], int(MATERIAL_TAG[material]), cv2.LINE_8, SHIFT)
        cv2.fillPoly(self.mat, [p], material * 16 + 8, cv2.LINE_8, SHIFT)

    def disc(self, c: np.ndarray, radius_m: float, material: int) -> None:
        p = self.px(c[None])[0]
        r = int(round(radius_m / self.g.res * (1 << SHIFT)))
        cv2.circle(self.tag, tuple(int(v) for v in p), r, int(MATERIAL_TAG[material]), -1, cv2.LINE_8, SHIFT)
        cv2.circle(self.mat, tuple(int(v) for v in p), r, material * 16 + 8, -1, cv2.LINE_8, SHIFT)

    def marking(
        self, m: Marking, closed: bool, dash_m: float = 3.0, period_m: float = 9.0, width_k: float = 1.0
    ) -> None:
        """Paint one marking; dashes of `dash_m` every `period_m` (the `real` look varies them)."""
        mat = YELLOW if m.color == "yellow" else WHITE
        if width_k != 1.0:
            m = Marking(m.points, m.kind, m.color, m.width * width_k)
        if m.kind in ("solid", "stop", "crosswalk"):
            self.line(m.points, m.width, mat, closed and m.kind == "solid")
        elif m.kind == "double":
            from sim.embedded.geometry import offset

            self.line(offset(m.points, 0.15, closed), m.width, mat, closed)
            self.line(offset(m.points, -0.15, closed), m.width, mat, closed)
        elif m.kind == "dashed":
            seg = np.linalg.norm(np.diff(m.points, axis=0), axis=1)
            s = np.concatenate([[0], np.cumsum(seg)])
            on = (s % period_m) < dash_m
            start = None
            for i, flag in enumerate(on):
                if flag and start is None:
                    start = i
                if (not flag or i == len(on) - 1) and start is not None:
                    if i - start >= 1:
                        self.line(m.points[start : i + 1], m.width, mat)
                    start = None

    def finish(self, rng: np.random.Generator) -> None:
        h, w = self.tag.shape
        low = rng.uniform(-1, 1, (h // 32 + 2, w // 32 + 2)).astype(np.float32)
        low = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
        fine = rng.integers(-3, 4, (h, w), dtype=np.int8)
        shade = np.clip(8 + low * 4 + fine, 0, 15).astype(np.uint8)
        self.mat &= 0xF0
        self.mat |= shade
        self.g.data = np.ascontiguousarray(np.stack([self.tag, self.mat], axis=-1))


def paint_ground(
    net: RoadNetwork, res: float, sidewalk: float, rng: np.random.Generator, footprints: list[np.ndarray] | None = None
) -> GroundRaster:
    """Paint terrain, sidewalks with curbs, roads, junctions and markings into a raster."""
    xmin, ymin, xmax, ymax = net.bounds
    w = int(np.ceil((xmax - xmin) / res))
    h = int(np.ceil((ymax - ymin) / res))
    data = np.zeros((h, w, 2), np.uint8)
    data[..., 0] = tags.TERRAIN
    data[..., 1] = GRASS * 16 + 8
    g = GroundRaster(data, res, xmin, ymax)
    p = _Painter(g)
    for fp in footprints or []:
        p.poly(fp, DIRT)
    for road in net.roads:
        if sidewalk > 0:
            p.line(road.center, 2 * (road.half_width + sidewalk), CONCRETE, road.closed)
        else:
            p.line(road.center, 2 * (road.half_width + 1.5), DIRT, road.closed)
    if sidewalk > 0:
        for j in net.junctions:
            p.disc(j.pos, j.radius + sidewalk + 1.0, CONCRETE)
    for road in net.roads:
        p.line(road.center, 2 * (road.half_width + 0.3), CURB if sidewalk > 0 else DIRT, road.closed)
    for j in net.junctions:
        p.disc(j.pos, j.radius + 0.3, CURB)
    for road in net.roads:
        p.line(road.center, 2 * road.half_width, ASPHALT, road.closed)
    for j in net.junctions:
        p.poly(j.polygon, ASPHALT)
        p.disc(j.pos, j.radius - 0.5, ASPHALT)
    # Asphalt patches for texture, away from markings (painted over by them anyway).
    for road in net.roads:
        for _ in range(int(len(road.center) / 40)):
            c = road.center[rng.integers(len(road.center))]
            q = c + rng.uniform(-2, 2, 2)
            p.disc(q, rng.uniform(0.6, 1.8), PATCH)
    closed = {id(m): False for m in net.markings}
    for road in net.roads:
        if road.closed:
            closed = {id(m): True for m in net.markings}
    for m in net.markings:
        p.marking(m, closed[id(m)])
    p.finish(rng)
    return g
