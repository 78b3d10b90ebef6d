"""Scenery for a map from a file: trees and poles on the sidewalks, buildings on free ground.

OpenDRIVE files of CARLA's towns carry no buildings, so we place them as the procedural towns
do, but only where the painted ground says there is nothing (terrain on the whole footprint),
so no box ever stands on a road, a sidewalk or another box.
"""

from __future__ import annotations

import numpy as np

from sim import tags
from sim.embedded.props import BUILDING_COLORS, Boxes, Scenery, Spheres
from sim.embedded.raster import GroundRaster
from sim.maps.convert import MapData


def _free(ground: GroundRaster, taken: np.ndarray, poly_pts: np.ndarray) -> bool:
    """All sample points on terrain and on no box placed before."""
    c = ((poly_pts[:, 0] - ground.xmin) / ground.res).astype(int)
    r = ((ground.ymax - poly_pts[:, 1]) / ground.res).astype(int)
    h, w = ground.data.shape[:2]
    if (c < 0).any() or (r < 0).any() or (c >= w).any() or (r >= h).any():
        return False
    if not (ground.data[r, c, 0] == tags.TERRAIN).all():
        return False
    cc, rr = (c * ground.res).astype(int), (r * ground.res).astype(int)  # 1 m occupancy cells
    return not taken[np.clip(rr, 0, taken.shape[0] - 1), np.clip(cc, 0, taken.shape[1] - 1)].any()


def _footprint_samples(center: np.ndarray, yaw: float, length: float, depth: float) -> np.ndarray:
    u = np.linspace(-length / 2 - 1.0, length / 2 + 1.0, max(int(length / 1.5) + 3, 3))
    v = np.linspace(-depth / 2 - 1.0, depth / 2 + 1.0, max(int(depth / 1.5) + 3, 3))
    uu, vv = np.meshgrid(u, v)
    c, s = np.cos(yaw), np.sin(yaw)
    return center + np.stack([uu.ravel() * c - vv.ravel() * s, uu.ravel() * s + vv.ravel() * c], 1)


class _Edge:
    """The outer edge of a sidewalk: points, tangent and outward normal by arc length."""

    def __init__(self, inner: np.ndarray, outer: np.ndarray):
        self.inner, self.outer = inner, outer
        seg = np.linalg.norm(np.diff(outer, axis=0), axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(seg)])

    def at(self, pos: float, line: np.ndarray | None = None) -> np.ndarray:
        line = self.outer if line is None else line
        return np.array([np.interp(pos, self.s, line[:, 0]), np.interp(pos, self.s, line[:, 1])])

    def frame(self, pos: float) -> tuple[np.ndarray, np.ndarray, float]:
        a, b = self.at(max(pos - 1.0, 0.0)), self.at(min(pos + 1.0, self.s[-1]))
        t = (b - a) / max(np.linalg.norm(b - a), 1e-9)
        out = self.at(pos) - self.at(pos, self.inner)
        out = out / max(np.linalg.norm(out), 1e-9)
        return t, out, float(np.arctan2(t[1], t[0]))


def build_map_scenery(md: MapData, ground: GroundRaster, rng: np.random.Generator) -> Scenery:
    """Trees, poles and buildings along every sidewalk outside junctions."""
    h, w = ground.data.shape[:2]
    taken = np.zeros((int(h * ground.res) + 2, int(w * ground.res) + 2), bool)
    rows: list[tuple] = []
    spheres: list[tuple] = []
    for surf in md.surfaces:
        if surf.lane_type != "sidewalk" or surf.junction is not None:
            continue
        n = len(surf.polygon) // 2
        edge = _Edge(surf.polygon[:n], surf.polygon[n:][::-1])
        at, frame, s = edge.at, edge.frame, edge.s
        if s[-1] < 8.0:
            continue
        pos = rng.uniform(3.0, 18.0)
        while pos < s[-1] - 3.0:
            _, out, _ = frame(pos)
            p = at(pos) - out * 0.8
            trunk = rng.uniform(2.0, 3.2)
            rows.append((p, 0.0, (0.35, 0.35, trunk), 0.0, (90, 70, 50), tags.VEGETATION))
            rad = rng.uniform(1.5, 2.6)
            green = np.clip(np.array([60, 105, 40]) + rng.integers(-15, 15, 3), 0, 255)
            spheres.append(((p[0], p[1], trunk + rad * 0.7), rad, green, tags.VEGETATION))
            pos += 26.0 * rng.uniform(0.7, 1.3)
        pos = rng.uniform(5.0, 30.0)
        while pos < s[-1] - 5.0:
            _, out, _ = frame(pos)
            rows.append((at(pos) - out * 0.4, 0.0, (0.22, 0.22, 7.0), 0.0, (120, 120, 125), tags.POLE))
            pos += rng.uniform(40.0, 55.0)
        pos = rng.uniform(2.0, 10.0)
        while pos < s[-1] - 8.0:
            step = rng.uniform(10.0, 24.0)
            if rng.random() < 0.6:
                _, out, yaw = frame(pos + step / 2)
                depth = rng.uniform(8.0, 18.0)
                center = at(pos + step / 2) + out * (rng.uniform(1.0, 3.5) + depth / 2)
                length = step * 0.92
                pts = _footprint_samples(center, yaw, length, depth)
                if _free(ground, taken, pts):
                    cc = (pts[:, 0] - ground.xmin).astype(int)
                    rr = (ground.ymax - pts[:, 1]).astype(int)
                    taken[np.clip(rr, 0, taken.shape[0] - 1), np.clip(cc, 0, taken.shape[1] - 1)] = True
                    color = np.clip(
                        BUILDING_COLORS[rng.integers(len(BUILDING_COLORS))] + rng.integers(-12, 12, 3), 0, 255
                    )
                    rows.append((center, yaw, (length, depth, rng.uniform(6.0, 24.0)), 0.0, color, tags.BUILDING))
            pos += step
    if spheres:
        sph = Spheres(
            np.array([x[0] for x in spheres], float),
            np.array([x[1] for x in spheres], float),
            np.array([x[2] for x in spheres], np.uint8),
            np.array([x[3] for x in spheres], np.uint8),
        )
    else:
        sph = Spheres(np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3), np.uint8), np.zeros(0, np.uint8))
    return Scenery(Boxes.from_rows(rows), sph)
