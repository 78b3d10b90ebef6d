"""Paint a map's ground raster from its lane surfaces, junctions, curbs and road marks.

Same raster format as the procedural towns (tag + material byte per cell, see
sim/embedded/raster.py), so the camera renderer is unchanged. Junction areas are the union
of their connecting lanes, closed morphologically so that the gaps between turning lanes are
asphalt too, as in CARLA.
"""

from __future__ import annotations

import cv2
import numpy as np

from sim import tags
from sim.embedded.raster import ASPHALT, CONCRETE, CURB, GRASS, MATERIAL_TAG, PATCH, WHITE, YELLOW, GroundRaster
from sim.maps.convert import MapData, MapMarking

SHIFT = 2  # sub-pixel bits for OpenCV drawing
CONCRETE_LANES = {"sidewalk": CONCRETE, "median": CONCRETE, "border": CURB, "curb": CURB}
SKIP_LANES = {"none"}
JUNCTION_CLOSE_M = 4.0  # gaps up to about twice this between junction lanes are filled
MASK_RES = 0.25  # metres per cell of the junction closing mask


class Canvas:
    """Tag and material planes of a raster, with polygon and polyline drawing in metres."""

    def __init__(self, bounds: tuple[float, float, float, float], res: float):
        xmin, ymin, xmax, ymax = bounds
        w, h = int(np.ceil((xmax - xmin) / res)), int(np.ceil((ymax - ymin) / res))
        self.res, self.xmin, self.ymax = res, xmin, ymax
        self.tag = np.full((h, w), tags.TERRAIN, np.uint8)
        self.mat = np.full((h, w), GRASS * 16 + 8, np.uint8)

    def px(self, pts: np.ndarray) -> np.ndarray:
        k = (1 << SHIFT) / self.res
        out = np.empty((len(pts), 2), np.int32)
        out[:, 0] = np.rint((pts[:, 0] - self.xmin) * k)
        out[:, 1] = np.rint((self.ymax - pts[:, 1]) * k)
        return out

    def poly(self, pts: np.ndarray, material: int) -> None:
        p = [self.px(pts)]
        cv2.fillPoly(self.tag, p, int(MATERIAL_TAG[material]), cv2.LINE_8, SHIFT)
        cv2.fillPoly(self.mat, p, material * 16 + 8, cv2.LINE_8, SHIFT)

    def line(self, pts: np.ndarray, width_m: float, material: int) -> None:
        p = [self.px(pts)]
        w = max(1, int(round(width_m / self.res)))
        cv2.polylines(self.tag, p, False, int(MATERIAL_TAG[material]), w, cv2.LINE_8, SHIFT)
        cv2.polylines(self.mat, p, False, material * 16 + 8, w, cv2.LINE_8, SHIFT)

    def fill_mask(self, mask: np.ndarray, r0: int, c0: int, material: int) -> None:
        h, w = mask.shape
        tag_v, mat_v = self.tag[r0 : r0 + h, c0 : c0 + w], self.mat[r0 : r0 + h, c0 : c0 + w]
        m = mask[: tag_v.shape[0], : tag_v.shape[1]]
        tag_v[m] = MATERIAL_TAG[material]
        mat_v[m] = material * 16 + 8

    def finish(self, rng: np.random.Generator) -> GroundRaster:
        """Shade noise into the material bytes and wrap it up.

        Coarse noise is interpolated, fine noise is one 509-cell tile repeated: a CARLA town
        has ~70 M cells and drawing fine noise for each would cost more than everything else.
        """
        h, w = self.tag.shape
        low = np.round(8 + 4 * rng.uniform(-1, 1, (h // 32 + 2, w // 32 + 2))).astype(np.uint8)
        shade = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
        tile = rng.integers(0, 7, (509, 509), dtype=np.uint8)
        fine = np.tile(tile, (h // 509 + 1, w // 509 + 1))[:h, :w]
        shade = cv2.subtract(cv2.add(shade, fine), 3)
        np.minimum(shade, 15, out=shade)
        self.mat &= 0xF0
        self.mat |= shade
        data = np.ascontiguousarray(np.stack([self.tag, self.mat], axis=-1))
        return GroundRaster(data, self.res, self.xmin, self.ymax)


def dashes(pts: np.ndarray, dash: float, gap: float) -> list[np.ndarray]:
    """The 'on' pieces of a polyline for a dash pattern starting with a dash at its start."""
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    period = dash + gap
    out = []
    a = 0.0
    while a < s[-1] - 1e-3:
        b = min(a + dash, s[-1])
        inner = (s > a) & (s < b)
        xa = np.array([np.interp(a, s, pts[:, 0]), np.interp(a, s, pts[:, 1])])
        xb = np.array([np.interp(b, s, pts[:, 0]), np.interp(b, s, pts[:, 1])])
        out.append(np.vstack([xa, pts[inner], xb]))
        a += period
    return out


def _junctions(cv: Canvas, md: MapData) -> None:
    k = int(round(JUNCTION_CLOSE_M / MASK_RES))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    for polys in md.junction_lanes.values():
        pts = np.vstack(polys)
        lo = pts.min(0) - (k + 2) * MASK_RES
        hi = pts.max(0) + (k + 2) * MASK_RES
        w, h = int(np.ceil((hi[0] - lo[0]) / MASK_RES)), int(np.ceil((hi[1] - lo[1]) / MASK_RES))
        mask = np.zeros((h, w), np.uint8)
        for p in polys:
            q = np.stack([(p[:, 0] - lo[0]) / MASK_RES, (hi[1] - p[:, 1]) / MASK_RES], 1)
            cv2.fillPoly(mask, [np.round(q * (1 << SHIFT)).astype(np.int32)], 255, cv2.LINE_8, SHIFT)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
        # Up to raster resolution, smoothly: the lanes themselves are painted exactly afterwards.
        c0 = int(np.floor((lo[0] - cv.xmin) / cv.res))
        r0 = int(np.floor((cv.ymax - hi[1]) / cv.res))
        c1 = int(np.ceil((hi[0] - cv.xmin) / cv.res))
        r1 = int(np.ceil((cv.ymax - lo[1]) / cv.res))
        c0, r0 = max(c0, 0), max(r0, 0)
        if c1 <= c0 or r1 <= r0:
            continue
        big = cv2.resize(mask, (c1 - c0, r1 - r0), interpolation=cv2.INTER_LINEAR) > 127
        cv.fill_mask(big, r0, c0, ASPHALT)


def paint_map(md: MapData, res: float, rng: np.random.Generator) -> GroundRaster:
    """The ground raster of a converted map (deterministic for a map and a generator)."""
    cv = Canvas(md.network.bounds, res)
    _junctions(cv, md)
    for s in md.surfaces:  # sidewalks, medians and borders first: roads win where they overlap
        if s.lane_type in CONCRETE_LANES:
            cv.poly(s.polygon, CONCRETE_LANES[s.lane_type])
    for s in md.surfaces:
        if s.lane_type not in CONCRETE_LANES and s.lane_type not in SKIP_LANES:
            cv.poly(s.polygon, ASPHALT)
    for c in md.curbs:
        cv.line(c.points, c.width, CURB)
    for polys in md.junction_lanes.values():  # where traffic crosses a junction nothing else stands
        for poly in polys:
            cv.poly(poly, ASPHALT)
    for pts in md.pieces.values():  # darker asphalt patches for texture, under the marks
        for _ in range(int(len(pts) / 40)):
            q = pts[rng.integers(len(pts))] + rng.uniform(-0.3, 0.3, 2)
            r = rng.uniform(0.4, 1.2)  # stays inside a 3 m lane
            th = np.linspace(0, 2 * np.pi, 12, endpoint=False)
            cv.poly(q + r * np.stack([np.cos(th), np.sin(th)], 1), PATCH)
    for m in md.network.markings:
        mat = YELLOW if m.color == "yellow" else WHITE
        if isinstance(m, MapMarking) and m.kind == "dashed" and m.gap > 0:
            for piece in dashes(m.points, m.dash, m.gap):
                cv.line(piece, m.width, mat)
        else:
            cv.line(m.points, m.width, mat)
    return cv.finish(rng)
