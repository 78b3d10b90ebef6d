"""Lane-boundary labels from the road geometry: the simulator's frames in TuSimple form.

Real lane datasets label lane *boundaries* as lines that run through dash gaps and behind
cars, sampled at fixed image rows; our RoadLine mask holds painted pixels only. To score
simulated frames exactly as real ones (`train/real_metrics.py`), every frame can also carry
its boundaries, computed here from geometry alone (never from pixels, except for one
optional cut where the labels show a building or the sky in front of the road):

- a boundary is a longitudinal marking of the network (`solid`, `dashed`, `double`; stop
  lines, crosswalks and curbs are not boundaries), the whole polyline, so dashes are joined;
  two parallel lines closer than `PAIR_M` (a double centre line) are one boundary, their mean;
- it is projected on the flat ground through the camera's pose (`sim.camera`), kept where it
  runs ahead within `CROSS_DEG` of the camera's heading (cross streets are not lanes), within
  `range_m` of the camera and in ever increasing depth (a road that bends back is cut where it
  turns), and sampled at TuSimple's rows (160..710 every 10 at 720 px) scaled to the frame's
  height; x is NaN where the boundary has no point or leaves the image (TuSimple's -2).

Pure numpy and pure: the same network, pose and camera give the same lanes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim import tags
from sim.camera import world_to_optical
from sim.types import CameraSpec

BOUNDARY_KINDS = ("solid", "dashed", "double")
PAIR_M = 0.6  # parallel lines closer than this are one boundary (double centre lines)
CROSS_DEG = 50.0  # boundary directions further than this from the camera's heading are not lanes
RANGE_M = 80.0  # default visibility range of the labels [m]
NEAR_M = 0.5  # points closer than this to the image plane are dropped [m]
SAMPLE_M = 0.5  # boundary sampling before projection [m]
MIN_ROWS = 3  # a lane with fewer labelled rows is dropped
#: Tags that hide the road where they cover a boundary's pixel (vehicles do not: lanes run behind cars).
HIDING_TAGS = (tags.SKY, tags.BUILDING, tags.WALL, tags.FENCE, tags.VEGETATION, tags.GUARD_RAIL)
HIDDEN_ROWS = 2  # a boundary ends at the first run of this many hidden rows, going up from the bottom
#: TuSimple's rows at 720 px.
TUSIMPLE_H_SAMPLES = tuple(range(160, 711, 10))


@dataclass(frozen=True)
class Boundary:
    """One lane boundary in the world plane [m], ordered along the road."""

    points: np.ndarray  # (N, 2)
    kind: str  # solid | dashed | double (two parallel lines merged count as double)
    color: str
    lo: np.ndarray  # (2,) bounding box, for a cheap range test
    hi: np.ndarray


@dataclass(frozen=True)
class FrameLaneLabels:
    """The lane boundaries of one frame: x per row (NaN = absent), TuSimple style."""

    rows: np.ndarray  # (R,) image rows (pixel centres at integers)
    xs: tuple[np.ndarray, ...]  # one (R,) array per lane, left to right at the bottom
    kinds: tuple[str, ...]  # marking kind of each lane

    def to_tusimple(self) -> list[list[float]]:
        """Lanes as TuSimple writes them: x rounded to 0.1 px, -2 where absent."""
        return [[round(float(v), 1) if np.isfinite(v) else -2.0 for v in x] for x in self.xs]


def frame_rows(height: int) -> np.ndarray:
    """TuSimple's h_samples scaled to an image `height` (the same rows as `perception.lane_metrics.tusimple_rows`)."""
    return np.asarray(TUSIMPLE_H_SAMPLES, dtype=np.float64) * (height / 720.0)


def _resample(points: np.ndarray, step: float) -> np.ndarray:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return points[:1]
    t = np.linspace(0.0, s[-1], max(int(math.ceil(s[-1] / step)), 1) + 1)
    return np.stack([np.interp(t, s, points[:, 0]), np.interp(t, s, points[:, 1])], axis=1)


def network_boundaries(network: Any) -> list[Boundary]:
    """The lane boundaries of a road network (its longitudinal markings, double lines merged)."""
    cached = getattr(network, "_lane_boundaries", None)
    if cached is not None:
        return cached
    marks = [m for m in network.markings if m.kind in BOUNDARY_KINDS and len(m.points) >= 2]
    used = [False] * len(marks)
    out: list[Boundary] = []
    for i, m in enumerate(marks):
        if used[i]:
            continue
        pts = np.asarray(m.points, dtype=np.float64)
        kind = m.kind
        for j in range(i + 1, len(marks)):
            o = marks[j]
            if used[j] or len(o.points) != len(pts) or o.color != m.color:
                continue
            if float(np.mean(np.linalg.norm(np.asarray(o.points) - pts, axis=1))) < PAIR_M:
                pts = (pts + np.asarray(o.points)) / 2.0
                used[j] = True
                kind = "double"
                break
        pts = _resample(pts, SAMPLE_M)
        if len(pts) < 2:  # a zero-length mark
            continue
        out.append(Boundary(pts, kind, m.color, pts.min(axis=0), pts.max(axis=0)))
    try:
        network._lane_boundaries = out  # built once per network (pickled maps simply rebuild it)
    except AttributeError:
        pass
    return out


def _runs(keep: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.diff(np.concatenate([[0], keep.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist(), strict=True))


def project_boundary(
    points: np.ndarray, r_wc: np.ndarray, centre: np.ndarray, spec: CameraSpec, range_m: float = RANGE_M
) -> list[np.ndarray]:
    """Image polylines (Nx2 (u, v), pixel centres at integers) of one ground boundary: each
    stretch ahead of the camera, along its heading, within `range_m`, in increasing depth."""
    p = np.column_stack([points, np.zeros(len(points))]) - centre
    cam = p @ r_wc.T  # optical frame: x right, y down, z forward
    fwd = r_wc[2, :2] / max(float(np.linalg.norm(r_wc[2, :2])), 1e-9)
    tang = np.gradient(points, axis=0)
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
    along = np.abs(tang @ fwd) >= math.cos(math.radians(CROSS_DEG))
    dist = np.hypot(p[:, 0], p[:, 1])
    keep = (cam[:, 2] > NEAR_M) & along & (dist <= range_m)
    out = []
    for a, b in _runs(keep):
        z = cam[a:b, 2]
        if z[-1] < z[0]:  # the boundary runs towards the camera: walk it the other way
            seg, z = cam[a:b][::-1], z[::-1]
        else:
            seg = cam[a:b]
        turn = np.nonzero(np.diff(z) <= 0)[0]
        if len(turn):
            seg = seg[: turn[0] + 1]
        if len(seg) < 2:
            continue
        f = spec.focal
        u = f * seg[:, 0] / seg[:, 2] + spec.width / 2.0
        v = f * seg[:, 1] / seg[:, 2] + spec.height / 2.0
        out.append(np.stack([u, v], axis=1))
    return out


def _x_at_rows(line: np.ndarray, rows: np.ndarray, width: int) -> np.ndarray:
    """x of an image polyline at `rows` (linear; exact for a straight ground line), NaN outside it or the image."""
    order = np.argsort(line[:, 1], kind="stable")
    u, v = line[order, 0], line[order, 1]
    xs = np.full(rows.shape, np.nan)
    inside = (rows >= v[0]) & (rows <= v[-1])
    xs[inside] = np.interp(rows[inside], v, u)
    xs[(xs < 0) | (xs > width - 1)] = np.nan
    return xs


def _cut_hidden(xs: np.ndarray, rows: np.ndarray, hiding: np.ndarray) -> np.ndarray:
    """Drop a lane's rows above the first `HIDDEN_ROWS` rows (bottom up) where `hiding` (HxW bool) hides the road."""
    h, w = hiding.shape
    hidden = 0
    out = xs.copy()
    for k in np.argsort(-rows):  # bottom row first
        if not np.isfinite(out[k]):
            continue
        r = min(max(int(round(rows[k])), 0), h - 1)
        c = min(max(int(round(out[k])), 0), w - 1)
        hidden = hidden + 1 if hiding[r, c] else 0
        if hidden >= HIDDEN_ROWS:
            out[rows <= rows[k] + 1e-9] = np.nan
            break
    return out


def frame_lanes(
    network: Any,
    x: float,
    y: float,
    yaw: float,
    spec: CameraSpec,
    labels: np.ndarray | None = None,
    range_m: float = RANGE_M,
) -> FrameLaneLabels:
    """The lane boundaries seen by camera `spec` on the ego at (x, y, yaw) [m, rad].

    `labels` (the frame's tag image, optional) ends a boundary where a building, wall, fence,
    vegetation or the sky covers it (the road is not visible beyond); vehicles do not.
    """
    r_wc, centre = world_to_optical(spec, x, y, yaw)
    rows = frame_rows(spec.height)
    hiding = np.isin(labels, HIDING_TAGS) if labels is not None else None
    lanes: list[tuple[float, np.ndarray, str]] = []
    for b in network_boundaries(network):
        gap = np.maximum(np.maximum(b.lo - centre[:2], centre[:2] - b.hi), 0.0)
        if float(np.hypot(gap[0], gap[1])) > range_m:
            continue
        for line in project_boundary(b.points, r_wc, centre, spec, range_m):
            xs = _x_at_rows(line, rows, spec.width)
            if hiding is not None:
                xs = _cut_hidden(xs, rows, hiding)
            ok = np.isfinite(xs)
            if np.count_nonzero(ok) >= MIN_ROWS:
                lanes.append((float(xs[np.nonzero(ok)[0][-1]]), xs, b.kind))
    lanes.sort(key=lambda t: t[0])  # left to right at the lowest labelled row
    return FrameLaneLabels(rows, tuple(x for _, x, _ in lanes), tuple(k for _, _, k in lanes))


__all__ = [
    "BOUNDARY_KINDS",
    "Boundary",
    "FrameLaneLabels",
    "RANGE_M",
    "TUSIMPLE_H_SAMPLES",
    "frame_lanes",
    "frame_rows",
    "network_boundaries",
    "project_boundary",
]
