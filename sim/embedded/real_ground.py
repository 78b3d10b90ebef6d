"""The ground raster of the `real` look: worn paint, tar seams, cracks, tyre tracks, shadows.

Built per episode from the town's clean raster (which stays cached and untouched). Paint
that wears off becomes road in both channels, so the RoadLine label is exactly the paint
left; seams, cracks and tracks only go onto road surface; shadows only move the shade
nibble (the renderer's real LUT reads shades 0..3 as "in shadow", 4..15 as the lit grain),
so they change colours, never tags.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from sim import tags
from sim.embedded import raster as rmat
from sim.embedded.geometry import offset
from sim.embedded.look import Look
from sim.embedded.props import Scenery
from sim.embedded.roadnet import RoadNetwork

SUN_ALT_RAD = math.radians(38.0)  # shadow length = height / tan(altitude)
# Shade remaps: lit grain into 4..15, shadow into 0..3 (see the module docstring).
_LIT = np.array([(b & 0xF0) | (4 + (b & 15) * 11 // 15) for b in range(256)], np.uint8)
_SHADOW = np.array([(b & 0xF0) | ((b & 15) * 3 // 15) for b in range(256)], np.uint8)


def real_ground(g: rmat.GroundRaster, net: RoadNetwork, scenery: Scenery, look: Look) -> rmat.GroundRaster:
    """A new raster: `g` with the look's wear, seams, tracks and shadows (seeded by look.seed)."""
    rng = np.random.default_rng([look.seed, 23])
    tag = g.data[..., 0].copy()
    mat = g.data[..., 1].copy()
    h, w = mat.shape
    tag, mat = _repaint(g, net, tag, mat, look)
    kind = mat >> 4
    road = (kind == rmat.ASPHALT) | (kind == rmat.PATCH)
    paint = (kind == rmat.WHITE) | (kind == rmat.YELLOW)
    # Worn paint: blotchy noise at ~0.5 m; where it falls under the wear level the paint is gone.
    if look.paint_wear > 0:
        cells = rng.random((h // 8 + 2, w // 8 + 2), dtype=np.float32)
        noise = cv2.resize(cells, (w, h), interpolation=cv2.INTER_LINEAR)
        gone = paint & (noise < look.paint_wear)
        mat[gone] = rmat.ASPHALT * 16 + 8
        tag[gone] = tags.ROAD
        road |= gone
    # Seams, cracks and tyre tracks: drawn into a layer, kept on road surface only.
    layer = np.zeros((h, w), np.uint8)
    px = _px_of(g)
    tar, track = rmat.TAR * 16 + 6, rmat.TRACK * 16 + 8
    for rd in net.roads:
        c = rd.center
        length = float(np.linalg.norm(np.diff(c, axis=0), axis=1).sum())
        # Longitudinal seams, often near a lane line (they look like lines and are not).
        for _ in range(int(rng.poisson(look.seams * length / 100.0))):
            k = int(rng.integers(0, len(c) - 2))
            n_pts = int(rng.integers(3, 12))
            seg = c[k : k + n_pts]
            if len(seg) < 2:
                continue
            lat = (int(rng.integers(-rd.n_bwd, rd.n_fwd + 1)) * rd.lane_width) + rng.normal(0, 0.35)
            lat = float(np.clip(lat, -rd.half_width + 0.3, rd.half_width - 0.3))
            pts = offset(seg, lat, False) + rng.normal(0, 0.04, (len(seg), 2))
            cv2.polylines(layer, [px(pts)], False, tar, max(1, int(rng.uniform(0.04, 0.14) / g.res)), cv2.LINE_8, 2)
        # Cracks: short wiggly polylines anywhere on the road.
        for _ in range(int(rng.poisson(look.seams * 2.0 * length / 100.0))):
            p0 = c[int(rng.integers(len(c)))] + rng.uniform(-rd.half_width, rd.half_width, 2)
            steps = rng.normal(0, 0.5, (int(rng.integers(3, 9)), 2))
            pts = p0 + np.cumsum(steps, 0)
            cv2.polylines(layer, [px(pts)], False, tar, 1, cv2.LINE_8, 2)
        # Tyre tracks: two polished bands per lane.
        if look.tracks > 0.05:
            for i in range(-rd.n_bwd, rd.n_fwd):
                mid = (i + 0.5) * rd.lane_width
                for side in (-0.85, 0.85):
                    pts = offset(c, mid + side, rd.closed)
                    cv2.polylines(layer, [px(pts)], rd.closed, track, max(1, int(0.55 / g.res)), cv2.LINE_8, 2)
    put = (layer > 0) & road
    mat[put] = layer[put]
    # Shadows of trees, poles and buildings (sun from the look's azimuth).
    mat = cv2.LUT(mat, _LIT)
    if look.shadows > 0.05:
        shade = np.zeros((h, w), np.uint8)
        az = math.radians(look.sun_azimuth_deg)
        away = -np.array([math.cos(az), math.sin(az)]) / math.tan(SUN_ALT_RAD)
        _shadows(shade, px, scenery, away, look.shadows, rng, g.res)
        dark = shade > 0
        mat[dark] = _SHADOW[mat[dark]]
    return rmat.GroundRaster(np.ascontiguousarray(np.stack([tag, mat], -1)), g.res, g.xmin, g.ymax)


def _repaint(g, net: RoadNetwork, tag: np.ndarray, mat: np.ndarray, look: Look):
    """The markings again with the look's dash pattern and widths (paint off, then on)."""
    if (look.dash_m, look.dash_period_m, look.paint_width_k) == (3.0, 9.0, 1.0):
        return tag, mat
    kind = mat >> 4
    paint = (kind == rmat.WHITE) | (kind == rmat.YELLOW)
    mat[paint] = rmat.ASPHALT * 16 + 8
    tag[paint] = tags.ROAD
    canvas = rmat.GroundRaster(np.stack([tag, mat], -1), g.res, g.xmin, g.ymax)
    p = rmat._Painter(canvas)
    closed = any(rd.closed for rd in net.roads)  # as paint_ground decides it
    for m in net.markings:
        p.marking(m, closed, look.dash_m, look.dash_period_m, look.paint_width_k)
    return p.tag, p.mat


def _px_of(g: rmat.GroundRaster):
    def px(pts: np.ndarray) -> np.ndarray:
        cols = (pts[:, 0] - g.xmin) / g.res
        rows = (g.ymax - pts[:, 1]) / g.res
        return np.round(np.stack([cols, rows], 1) * 4).astype(np.int32)

    return px


def _shadows(shade, px, scenery: Scenery, away: np.ndarray, amount: float, rng, res: float) -> None:
    """Draw the shadow footprints of static scenery (a share `amount` of the objects cast one)."""
    b = scenery.boxes
    for i in range(len(b.yaw)):
        if rng.random() > amount:
            continue
        t = int(b.tag[i])
        top = float(b.z0[i] + b.size[i, 2])
        if t == tags.POLE:
            a = b.xy[i]
            cv2.line(
                shade, tuple(px(a[None])[0]), tuple(px((a + away * top)[None])[0]), 1, max(1, int(0.2 / res)), 8, 2
            )
        elif t == tags.BUILDING:
            fp = b.footprint(i)
            hull = cv2.convexHull(np.concatenate([px(fp), px(fp + away * top)]).astype(np.int32))
            cv2.fillConvexPoly(shade, hull, 1, cv2.LINE_8, 2)
    s = scenery.spheres
    for i in range(len(s.radius)):
        if rng.random() > amount:
            continue
        cxy = s.center[i, :2] + away * s.center[i, 2]
        p = px(cxy[None])[0]
        r = int(s.radius[i] / res * 4)
        cv2.ellipse(shade, (int(p[0]), int(p[1])), (r, int(r * 0.8)), float(rng.uniform(0, 180)), 0, 360, 1, -1, 8, 2)
