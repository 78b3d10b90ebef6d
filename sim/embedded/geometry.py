"""Polyline geometry in the world plane (metres): sampling, offsets, projection onto a path."""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np


def resample(points: np.ndarray, step: float = 1.0, closed: bool = False) -> np.ndarray:
    """Points every `step` metres along a polyline (keeps both ends of an open line)."""
    pts = np.vstack([points, points[:1]]) if closed else points
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(np.ceil(s[-1] / step)), 1)
    t = np.linspace(0.0, s[-1], n + 1)
    if closed:
        t = t[:-1]
    return np.stack([np.interp(t, s, pts[:, 0]), np.interp(t, s, pts[:, 1])], axis=1)


def tangents(points: np.ndarray, closed: bool = False) -> np.ndarray:
    """Unit tangent at each point (central differences)."""
    if closed:
        d = np.roll(points, -1, axis=0) - np.roll(points, 1, axis=0)
    else:
        d = np.gradient(points, axis=0)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)


def left_normals(points: np.ndarray, closed: bool = False) -> np.ndarray:
    t = tangents(points, closed)
    return np.stack([-t[:, 1], t[:, 0]], axis=1)


def offset(points: np.ndarray, distance: float, closed: bool = False) -> np.ndarray:
    """The polyline shifted `distance` metres to its left (negative: right)."""
    return points + distance * left_normals(points, closed)


def bezier(p0, p1, p2, p3, step: float = 1.0) -> np.ndarray:
    """A cubic Bezier curve sampled about every `step` metres."""
    p0, p1, p2, p3 = (np.asarray(p, dtype=float) for p in (p0, p1, p2, p3))
    approx = np.linalg.norm(p1 - p0) + np.linalg.norm(p2 - p1) + np.linalg.norm(p3 - p2)
    n = max(int(np.ceil(approx / step)) * 2, 4)
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
    return resample(pts, step)


def wrap_angle(a):
    """Angle(s) into [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def wrap_scalar(a: float) -> float:
    """wrap_angle of one float without numpy's per-call overhead (the same IEEE operations)."""
    return float((a + math.pi) % (2 * math.pi) - math.pi)


@dataclass
class Path:
    """A polyline with arc length and headings, for lanes and connectors."""

    points: np.ndarray  # (N, 2)
    closed: bool = False

    def __post_init__(self) -> None:
        pts = self.points
        ext = np.vstack([pts, pts[:1]]) if self.closed else pts
        seg = np.linalg.norm(np.diff(ext, axis=0), axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(seg)])
        self.length = float(self.s[-1])
        self._ext = ext
        d = np.diff(ext, axis=0)
        self._seg_heading = np.arctan2(d[:, 1], d[:, 0])
        # Python-float copies for pose(), called a few times per vehicle and step: bisect and
        # float arithmetic on lists cost a fraction of numpy's per-call overhead on scalars.
        self._s_list: list[float] = self.s.tolist()
        self._ext_list: list[list[float]] = ext.tolist()
        self._heading_list: list[float] = self._seg_heading.tolist()

    def pose(self, s: float) -> tuple[float, float, float]:
        """(x, y, heading) at arc length s (wraps on closed paths, clamps on open ones)."""
        if self.closed:
            s = s % self.length
        else:
            s = min(max(s, 0.0), self.length)
        arc = self._s_list
        i = min(max(bisect_right(arc, s) - 1, 0), len(self._heading_list) - 1)
        seg = arc[i + 1] - arc[i]
        t = 0.0 if seg <= 0 else (s - arc[i]) / seg
        (x0, y0), (x1, y1) = self._ext_list[i], self._ext_list[i + 1]
        return float(x0 + t * (x1 - x0)), float(y0 + t * (y1 - y0)), self._heading_list[i]

    def project(self, x: float, y: float, s_hint: float | None = None, window: float = 15.0):
        """(s, lateral offset to the left, heading) of the point nearest to (x, y)."""
        ext = self._ext
        near_wrap = self.closed and s_hint is not None and not window < s_hint < self.length - window
        if s_hint is None or near_wrap:
            lo, hi = 0, len(ext) - 1
        else:
            lo = max(int(np.searchsorted(self.s, s_hint - window)) - 1, 0)
            hi = min(int(np.searchsorted(self.s, s_hint + window)) + 1, len(ext) - 1)
        a = ext[lo:hi]
        b = ext[lo + 1 : hi + 1]
        d = b - a
        L2 = np.maximum((d**2).sum(1), 1e-12)
        p = np.array([x, y])
        t = np.clip(((p - a) * d).sum(1) / L2, 0.0, 1.0)
        proj = a + t[:, None] * d
        dist2 = ((proj - p) ** 2).sum(1)
        k = int(np.argmin(dist2))
        seg = d[k]
        cross = seg[0] * (p[1] - a[k][1]) - seg[1] * (p[0] - a[k][0])
        lat = float(np.sign(cross) * np.sqrt(dist2[k]))
        s = float(self.s[lo + k] + t[k] * np.sqrt(L2[k]))
        return s, lat, float(self._seg_heading[lo + k])

    def curvature_ahead(self, s: float, horizon: float) -> float:
        """Largest |heading change per metre| over the next `horizon` metres."""
        _, _, h0 = self.pose(s)
        best = 0.0
        for ds in (horizon * 0.33, horizon * 0.66, horizon):
            _, _, h = self.pose(s + ds)
            best = max(best, abs(wrap_scalar(h - h0)) / ds)
        return best
