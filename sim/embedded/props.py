"""Static scenery as boxes and spheres: buildings, trees, poles, signs, lights, guard rails."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim import tags
from sim.embedded.geometry import tangents
from sim.embedded.roadnet import STOP_BAND, RoadNetwork
from sim.embedded.towns import TownRecipe


@dataclass
class Boxes:
    """N oriented boxes standing on the ground (one row per box)."""

    xy: np.ndarray  # (N, 2) centre
    yaw: np.ndarray  # (N,)
    size: np.ndarray  # (N, 3) length, width, height
    z0: np.ndarray  # (N,) bottom height
    color: np.ndarray  # (N, 3) uint8 RGB
    tag: np.ndarray  # (N,) uint8

    @staticmethod
    def from_rows(rows: list[tuple]) -> Boxes:
        if not rows:
            z = np.zeros((0,))
            return Boxes(np.zeros((0, 2)), z, np.zeros((0, 3)), z, np.zeros((0, 3), np.uint8), np.zeros((0,), np.uint8))
        xy, yaw, size, z0, color, tag = zip(*rows, strict=True)
        return Boxes(
            np.array(xy, float),
            np.array(yaw, float),
            np.array(size, float),
            np.array(z0, float),
            np.array(color, np.uint8),
            np.array(tag, np.uint8),
        )

    def geometry(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World corners (N, 8, 3), face normals (N, 5, 3) and face centres (N, 5, 3), cached."""
        cached = getattr(self, "_geometry", None)
        if cached is not None:
            return cached
        from sim.embedded.render import _CORNERS, FACES

        cy, sy = np.cos(self.yaw), np.sin(self.yaw)
        size = self.size
        local = _CORNERS[None] * np.stack([size[:, 0] / 2, size[:, 1] / 2, size[:, 2]], 1)[:, None, :]
        wx = self.xy[:, 0:1] + local[..., 0] * cy[:, None] - local[..., 1] * sy[:, None]
        wy = self.xy[:, 1:2] + local[..., 0] * sy[:, None] + local[..., 1] * cy[:, None]
        wz = self.z0[:, None] + local[..., 2]
        world = np.stack([wx, wy, wz], -1)
        zero = 0 * cy
        normals = np.stack(
            [
                np.stack([cy, sy, zero], 1),
                np.stack([-cy, -sy, zero], 1),
                np.stack([-sy, cy, zero], 1),
                np.stack([sy, -cy, zero], 1),
                np.stack([zero, zero, zero + 1.0], 1),
            ],
            1,
        )
        self._geometry = (world, normals, world[:, FACES].mean(2))
        return self._geometry

    def footprint(self, i: int) -> np.ndarray:
        c, s = np.cos(self.yaw[i]), np.sin(self.yaw[i])
        hl, hw = self.size[i, 0] / 2, self.size[i, 1] / 2
        local = np.array([[hl, hw], [-hl, hw], [-hl, -hw], [hl, -hw]])
        return self.xy[i] + local @ np.array([[c, s], [-s, c]])


@dataclass
class Spheres:
    center: np.ndarray  # (N, 3)
    radius: np.ndarray  # (N,)
    color: np.ndarray  # (N, 3) uint8
    tag: np.ndarray  # (N,) uint8


@dataclass
class Scenery:
    boxes: Boxes
    spheres: Spheres
    lamps: Boxes | None = None  # street lamp heads of the `real` look, lit at night

    def footprints(self) -> list[np.ndarray]:
        return [self.boxes.footprint(i) for i in range(len(self.boxes.yaw)) if self.boxes.tag[i] == tags.BUILDING]


BUILDING_COLORS = np.array(
    [
        [150, 140, 130],
        [170, 160, 150],
        [120, 110, 105],
        [185, 175, 160],
        [140, 95, 80],
        [110, 120, 130],
        [200, 195, 185],
        [95, 90, 100],
    ]
)


class _Occupancy:
    """Coarse occupancy grid (0.5 m) so scenery never stands on roads or on each other."""

    def __init__(self, net: RoadNetwork, recipe: TownRecipe):
        self.res = 0.5
        xmin, ymin, xmax, ymax = net.bounds
        self.x0, self.y0 = xmin, ymin
        self.grid = np.zeros((int((ymax - ymin) / self.res) + 1, int((xmax - xmin) / self.res) + 1), bool)
        for road in net.roads:
            for p in road.center[::2]:
                self.mark_disc(p, road.half_width + recipe.sidewalk + 0.2)
        for j in net.junctions:
            self.mark_disc(j.pos, j.radius + recipe.sidewalk + 1.5)

    def _idx(self, p):
        return int((p[1] - self.y0) / self.res), int((p[0] - self.x0) / self.res)

    def mark_disc(self, p, r) -> None:
        i, j = self._idx(p)
        k = int(r / self.res) + 1
        ii, jj = np.ogrid[-k : k + 1, -k : k + 1]
        disc = ii**2 + jj**2 <= k * k
        i0, j0 = max(i - k, 0), max(j - k, 0)
        i1, j1 = min(i + k + 1, self.grid.shape[0]), min(j + k + 1, self.grid.shape[1])
        if i0 < i1 and j0 < j1:
            self.grid[i0:i1, j0:j1] |= disc[i0 - (i - k) : i1 - (i - k), j0 - (j - k) : j1 - (j - k)]

    def free(self, poly: np.ndarray) -> bool:
        lo = poly.min(0)
        hi = poly.max(0)
        i0, j0 = self._idx(lo)
        i1, j1 = self._idx(hi)
        if i0 < 0 or j0 < 0 or i1 >= self.grid.shape[0] or j1 >= self.grid.shape[1]:
            return False
        return not self.grid[i0 : i1 + 1, j0 : j1 + 1].any()

    def mark(self, poly: np.ndarray) -> None:
        i0, j0 = self._idx(poly.min(0))
        i1, j1 = self._idx(poly.max(0))
        self.grid[max(i0, 0) : i1 + 1, max(j0, 0) : j1 + 1] = True


def build_scenery(net: RoadNetwork, r: TownRecipe, rng: np.random.Generator) -> Scenery:
    """Place scenery along the roads; deterministic for a network and a generator."""
    occ = _Occupancy(net, r)
    rows: list[tuple] = []
    spheres: list[tuple] = []
    for road in net.roads:
        c = road.center
        t = tangents(c, road.closed)
        n = np.stack([-t[:, 1], t[:, 0]], 1)
        s = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1))])
        length = s[-1]
        hw = road.half_width
        for side in (-1.0, 1.0):
            # Buildings.
            pos = rng.uniform(2, 10)
            while pos < length - 8:
                step = rng.uniform(10, 24)
                i = int(np.searchsorted(s, pos))
                if i < len(c) and rng.random() < r.building_density:
                    depth = rng.uniform(8, 18)
                    setback = hw + r.sidewalk + rng.uniform(1.0, 3.5) + depth / 2 + (8 if r.kind == "loop" else 0)
                    center = c[i] + side * n[i] * setback
                    yaw = float(np.arctan2(t[i, 1], t[i, 0]))
                    size = (step * 0.92, depth, rng.uniform(*r.building_height))
                    color = BUILDING_COLORS[rng.integers(len(BUILDING_COLORS))] + rng.integers(-12, 12, 3)
                    row = (center, yaw, size, 0.0, np.clip(color, 0, 255), tags.BUILDING)
                    fp = Boxes.from_rows([row]).footprint(0)
                    if occ.free(fp):
                        occ.mark(fp)
                        rows.append(row)
                pos += step
            # Trees on the sidewalk's outer edge (or the verge), poles every ~35 m.
            pos = rng.uniform(3, r.tree_every)
            while pos < length - 3:
                i = int(np.searchsorted(s, pos))
                if i < len(c) and (road.closed or STOP_BAND + 3 < pos < length - STOP_BAND - 3):
                    off = hw + (r.sidewalk - 0.8 if r.sidewalk > 0 else 4.5 + rng.uniform(0, 6))
                    p = c[i] + side * n[i] * off
                    trunk_h = rng.uniform(2.0, 3.2)
                    rows.append((p, 0.0, (0.35, 0.35, trunk_h), 0.0, (90, 70, 50), tags.VEGETATION))
                    rad = rng.uniform(1.5, 2.6)
                    green = np.array([60, 105, 40]) + rng.integers(-15, 15, 3)
                    spheres.append(((p[0], p[1], trunk_h + rad * 0.7), rad, np.clip(green, 0, 255), tags.VEGETATION))
                pos += r.tree_every * rng.uniform(0.7, 1.3)
            pos = rng.uniform(5, 30)
            while pos < length - 5:
                i = int(np.searchsorted(s, pos))
                if i < len(c) and (road.closed or STOP_BAND + 2 < pos < length - STOP_BAND - 2):
                    off = hw + (r.sidewalk - 0.4 if r.sidewalk > 0 else 1.2)
                    p = c[i] + side * n[i] * off
                    rows.append((p, 0.0, (0.22, 0.22, 7.0), 0.0, (120, 120, 125), tags.POLE))
                pos += rng.uniform(30, 40)
            # Guard rails on highways.
            if r.kind == "loop":
                for k in range(0, len(c) - 1, 8):
                    j = min(k + 8, len(c) - 1)
                    a, b = c[k] + side * n[k] * (hw + 0.9), c[j] + side * n[j] * (hw + 0.9)
                    mid, d = (a + b) / 2, b - a
                    rows.append(
                        (
                            mid,
                            float(np.arctan2(d[1], d[0])),
                            (np.linalg.norm(d) + 0.1, 0.25, 0.8),
                            0.0,
                            (170, 170, 175),
                            tags.GUARD_RAIL,
                        )
                    )
    # Stop signs and traffic lights at junction mouths, on the right of the incoming lanes.
    for road in net.roads:
        if road.closed:
            continue
        t = tangents(road.center)
        for at_end in (True, False):
            p, d = (road.center[-1], t[-1]) if at_end else (road.center[0], -t[0])
            right = np.array([d[1], -d[0]])
            base = p - d * (STOP_BAND + 0.5) + right * (road.half_width + (r.sidewalk * 0.5 if r.sidewalk else 1.0))
            yaw = float(np.arctan2(d[1], d[0]))
            node = road.b if at_end else road.a
            degree = sum(node in (rd.a, rd.b) for rd in net.roads)
            if degree >= 3 and r.lanes[-1] >= 2:
                rows.append((base, yaw, (0.25, 0.25, 4.2), 0.0, (80, 80, 85), tags.POLE))
                rows.append((base, yaw, (0.4, 0.4, 1.1), 4.2, (35, 35, 35), tags.TRAFFIC_LIGHT))
            else:
                rows.append((base, yaw, (0.12, 0.12, 2.2), 0.0, (150, 150, 150), tags.POLE))
                rows.append((base, yaw, (0.08, 0.8, 0.8), 2.1, (200, 30, 30), tags.TRAFFIC_SIGN))
    sph = (
        Spheres(
            np.array([s_[0] for s_ in spheres], float),
            np.array([s_[1] for s_ in spheres], float),
            np.array([s_[2] for s_ in spheres], np.uint8),
            np.array([s_[3] for s_ in spheres], np.uint8),
        )
        if spheres
        else Spheres(np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3), np.uint8), np.zeros(0, np.uint8))
    )
    return Scenery(Boxes.from_rows(rows), sph)
