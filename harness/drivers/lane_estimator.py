"""The lane ahead from a predicted lane mask: boundary markings found, tracked, fitted.

What a driver may use: the mask, its own commands and the speedometer. It never reads
ground-truth lane state (lateral offset, `in_junction`): those are for scoring only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LaneEstimate:
    """The lane centre ahead as y(x) = c0 + c1 x + c2 x^2 in the vehicle frame [m], and its width."""

    coeffs: np.ndarray = field(default_factory=lambda: np.zeros(3))
    width: float = 3.5
    seen_left: bool = False
    seen_right: bool = False
    lost_s: float = 1e9  # seconds since the last frame with a usable boundary

    def centre_y(self, x: float | np.ndarray) -> float | np.ndarray:
        c0, c1, c2 = self.coeffs
        return c0 + c1 * x + c2 * x * x

    @property
    def curvature(self) -> float:
        """Signed curvature of the centre line near the car [1/m] (+ = bends left)."""
        return float(2.0 * self.coeffs[2])


@dataclass(frozen=True)
class LaneEstimatorConfig:
    """Tuning of the boundary search (metres unless named)."""

    bins: tuple[tuple[float, float], ...] = (
        (3.0, 5.5),
        (5.5, 8.0),
        (8.0, 10.5),
        (10.5, 13.5),
        (13.5, 17.0),
        (17.0, 21.0),
        (21.0, 25.0),
    )
    window_half: float = 0.7  # lateral half-width of a sliding window around the followed boundary
    split_gap: float = 0.35  # lateral gap that separates two markings
    max_extent: float = 0.9  # wider clusters are stop lines or smeared blobs, not boundaries
    min_points: int = 3
    gate: float = 0.9  # how far a boundary may be from where the lane model expects it
    gate_lost: float = 1.6
    width_min: float = 2.4
    width_max: float = 5.0
    width_default: float = 3.5
    smooth: float = 0.55  # weight of a new measurement against the propagated model
    max_abs_c2: float = 0.04  # radius >= 12.5 m
    straighten_s: float = 2.0  # time constant of the curvature decay with no markings
    crosswalk_lines: int = 4  # a bin with this many narrow markings across the lane is a crosswalk
    stop_line_min_len: float = 2.0  # a stop line: a blob this long, across the lane
    stop_line_max_angle_deg: float = 40.0  # ... within this angle of perpendicular to the car
    stop_line_range: tuple[float, float] = (3.0, 14.0)
    axis_takeover_m: float = 7.0  # closer than this to the stop line, the junction axis steers
    axis_release_m: float = 10.0  # lane tracking may resume this far past the stop line
    release_gate: float = 2.5  # ... with a lane (both boundaries) found this near where it is expected
    lock_width_tol: float = 0.3  # ... whose width matches the remembered one this closely
    pairs_only_s: float = 1.0  # after (re)locking, single boundaries are ignored this long
    release_within_m: float = 7.0  # ... directly ahead: farther out, a bending exit road shows other lanes
    axis_quiet_m: float = 15.0  # after a junction, stop lines are ignored for this distance
    axis_keep_m: float = 45.0  # forget the junction axis this far past its stop line


class LaneEstimator:
    """Lane centre from boundary markings, tracked over time with dead reckoning.

    Each frame: propagate the last lane model by the ego's own motion (speed and steer),
    then, at a few look-ahead distances, cluster the markings' lateral positions and take
    the clusters nearest to where the left and right boundaries should be; the centre is
    their middle (or one boundary minus half the remembered lane width) and a weighted
    quadratic fit through those centres updates the model. With no markings (junctions,
    worn paint, a blind model) the model is only propagated and its curvature decays: the
    car holds its last curve, then goes straight.

    Junctions: a stop line (a long blob across the lane) is perpendicular to the road
    where it meets the junction, which may differ from the direction of the lane lines
    before it (roads bend up to their mouths). Near the stop line and beyond it, until lane
    lines are found again, the lane model is the straight line through the lane centre at
    the stop line along that axis. Bins with many narrow markings across the lane
    (crosswalk stripes) are not used as boundaries.
    """

    def __init__(self, config: LaneEstimatorConfig | None = None) -> None:
        self.config = config or LaneEstimatorConfig()
        self.reset()

    def reset(self) -> None:
        self.estimate = LaneEstimate(width=self.config.width_default)
        self.measurements: list[tuple[float, float | None, float | None]] = []
        self.pairs_only = 0.0  # seconds left in which only whole lanes (both boundaries) count
        self.locked = False  # a lane (both boundaries, right width, just ahead) has been found since reset
        self.axis: np.ndarray | None = None  # (x, y, heading) of the lane centre at the last stop line
        self.axis_travel = 0.0  # metres driven since the axis was last measured
        self.quiet_m = 0.0  # metres left before stop lines count again (just out of a junction)

    def propagate(self, speed: float, yaw_rate: float, dt: float) -> None:
        """Move the lane model into the vehicle frame of the next tick (ego motion only)."""
        est = self.estimate
        ds, dpsi = speed * dt, yaw_rate * dt
        if ds == 0.0 and dpsi == 0.0:
            return
        xs = np.linspace(0.0, 30.0, 16)
        ys = est.centre_y(xs)
        dx, dy = ds * math.cos(dpsi / 2.0), ds * math.sin(dpsi / 2.0)
        c, s = math.cos(dpsi), math.sin(dpsi)
        px, py = xs - dx, ys - dy
        nx, ny = c * px + s * py, -s * px + c * py
        est.coeffs = np.polyfit(nx, ny, 2)[::-1].copy()
        self.quiet_m = max(self.quiet_m - ds, 0.0)
        if self.axis is not None:
            ax, ay = self.axis[0] - dx, self.axis[1] - dy
            self.axis = np.array([c * ax + s * ay, -s * ax + c * ay, self.axis[2] - dpsi])
            self.axis_travel += ds
            if self.axis_travel > self.config.axis_keep_m:
                self.axis = None

    def update(self, points: np.ndarray, dt: float, components: np.ndarray | None = None) -> LaneEstimate:
        """Measure the boundaries in `points` ((N, 2) ground points, vehicle frame) and update.

        `components` (the points' blob ids in the mask) enables the stop-line axis.
        """
        cfg, est = self.config, self.estimate
        if components is not None:
            self._measure_stop_line(points, components)
        axis = self.axis
        if axis is not None and axis[0] < cfg.axis_takeover_m:
            # At and beyond the stop line the junction's axis steers; markings seen inside the
            # junction (other roads' stop lines, crosswalks) are not lanes. Lane tracking resumes
            # once, well past the stop line, a lane (both boundaries) shows up near the axis.
            t = math.tan(float(np.clip(axis[2], -1.2, 1.2)))
            est.coeffs = np.array([axis[1] - t * axis[0], t, 0.0])
            if axis[0] > -cfg.axis_release_m:
                est.lost_s += dt
                self.measurements = []
                return est
            samples = self._lane_ahead(points)
            if not samples:
                est.lost_s += dt
                return est
            self.axis = None
            self.quiet_m = cfg.axis_quiet_m
            self.pairs_only = cfg.pairs_only_s
            est.lost_s = 1.0  # resume with the wide gate: the exit road may bend away
        elif not self.locked:
            # Starting (or restarting after a junction): only a whole lane right ahead counts, so
            # a crosswalk stripe or the other direction's lane cannot capture the estimate.
            samples = self._lane_ahead(points)
            if not samples:
                est.lost_s += dt
                return est
            self.locked = True
            self.pairs_only = cfg.pairs_only_s
            est.lost_s = 1.0
        else:
            samples = self._measure(points, cfg.gate if est.lost_s < 1.0 else cfg.gate_lost)
            if self.pairs_only > 0.0:
                self.pairs_only -= dt
                samples = [sm for sm in samples if sm[4] is not None]
        pairs = [sm[4] for sm in samples if sm[4] is not None]
        est.seen_left = any(sm[1] is not None for sm in samples)
        est.seen_right = any(sm[2] is not None for sm in samples)
        if pairs:
            est.width = float(np.clip(0.85 * est.width + 0.15 * float(np.median(pairs)), cfg.width_min, cfg.width_max))
        if not samples:
            est.lost_s += dt
            est.coeffs[2] *= math.exp(-dt / cfg.straighten_s)
            return est
        est.lost_s = 0.0
        xs, cs, ws = (np.array([sm[k] for sm in samples]) for k in (0, 5, 3))
        new = self._fit(xs, cs, ws)
        a = cfg.smooth
        est.coeffs = (1.0 - a) * est.coeffs + a * new
        est.coeffs[2] = float(np.clip(est.coeffs[2], -cfg.max_abs_c2, cfg.max_abs_c2))
        return est

    def _lane_ahead(self, points: np.ndarray) -> list[tuple]:
        """Measurements of a whole lane (both boundaries, the remembered width) just ahead of the car."""
        cfg, est = self.config, self.estimate
        samples = self._measure(points, cfg.release_gate)
        # Only the nearest lane counts: farther out, a road bending away shows other lanes.
        return [
            sm
            for sm in samples
            if sm[4] is not None and abs(sm[4] - est.width) < cfg.lock_width_tol and sm[0] <= cfg.release_within_m
        ]

    def _measure(self, points: np.ndarray, gate: float) -> list[tuple]:
        """Boundaries by sliding windows; per look-ahead bin with a usable boundary:
        (x, left, right, weight, width or None, centre y), laterals relative to the predicted centre.

        Each boundary is found near the car (the marking nearest to where the lane model
        expects it, within `gate`), then followed outwards window by window along its own
        direction, so a lane that bends away from the prediction is still followed.
        """
        cfg, est = self.config, self.estimate
        half = est.width / 2.0
        self.measurements = []
        if len(points) < cfg.min_points:
            return []
        x_all = points[:, 0]
        r_all = points[:, 1] - est.centre_y(x_all)  # lateral position relative to the predicted centre
        mids = [0.5 * (a + b) for a, b in cfg.bins]
        crosswalk = set()
        found: dict[int, dict[int, float]] = {1: {}, -1: {}}
        for sign in (1, -1):
            pos = last_x = None
            slope = 0.0
            for k, (x0, x1) in enumerate(cfg.bins):
                sel = (x_all >= x0) & (x_all < x1)
                if pos is not None:
                    pred = pos + slope * (mids[k] - last_x)
                    sel &= np.abs(r_all - pred) < cfg.window_half
                if np.count_nonzero(sel) < cfg.min_points:
                    continue
                lines = _cluster_1d(x_all[sel], r_all[sel], mids[k], cfg.split_gap, cfg.max_extent, cfg.min_points)
                if pos is None:
                    if sum(1 for y in lines if abs(y) < est.width) >= cfg.crosswalk_lines:
                        crosswalk.add(k)
                        continue  # crosswalk stripes, not lane boundaries
                    if k > 2:
                        break  # a boundary is picked up near the car or not at all
                    val = _nearest(lines, sign * half, gate, positive=sign > 0)
                    if val is None:
                        continue
                else:
                    if not lines:
                        continue
                    val = min(lines, key=lambda y: abs(y - pred))
                    slope = float(np.clip(0.5 * slope + 0.5 * (val - pos) / (mids[k] - last_x), -0.6, 0.6))
                pos, last_x = val, mids[k]
                found[sign][k] = val
        out = []
        for k, xm in enumerate(mids):
            left, right = found[1].get(k), found[-1].get(k)
            if left is None and right is None:
                continue
            self.measurements.append((xm, left, right))
            base = float(est.centre_y(xm))
            if left is not None and right is not None:
                w = left - right
                if cfg.width_min <= w <= cfg.width_max:
                    out.append((xm, left, right, 1.0, w, base + 0.5 * (left + right)))
                    continue
                if abs(left - half) <= abs(right + half):  # inconsistent pair: keep the likelier one
                    right = None
                else:
                    left = None
            if left is not None:
                out.append((xm, left, None, 0.5, None, base + left - half))
            elif right is not None:
                out.append((xm, None, right, 0.5, None, base + right + half))
        return out

    def _measure_stop_line(self, points: np.ndarray, comp: np.ndarray) -> None:
        """Find the nearest stop line ahead (a long blob across the lane) and take its axis."""
        cfg, est = self.config, self.estimate
        if len(points) < 8 or (self.axis is not None and self.axis[0] < 0.0) or self.quiet_m > 0.0:
            return  # crossing a junction, or just out of one: the stop lines here are other roads'
        n = np.bincount(comp)
        big = np.flatnonzero(n >= 8)
        if big.size == 0:
            return
        x, y = points[:, 0], points[:, 1]
        k = comp.size and n.size
        sx, sy = np.bincount(comp, x, k), np.bincount(comp, y, k)
        sxx, syy, sxy = np.bincount(comp, x * x, k), np.bincount(comp, y * y, k), np.bincount(comp, x * y, k)
        best = None
        cos_max = math.sin(math.radians(cfg.stop_line_max_angle_deg))
        for i in big:
            m = n[i]
            mx, my = sx[i] / m, sy[i] / m
            if not cfg.stop_line_range[0] <= mx <= cfg.stop_line_range[1]:
                continue
            if abs(my - float(est.centre_y(mx))) > 0.75 * est.width:
                continue
            cxx, cyy, cxy = sxx[i] / m - mx * mx, syy[i] / m - my * my, sxy[i] / m - mx * my
            tr, det = cxx + cyy, cxx * cyy - cxy * cxy
            disc = math.sqrt(max(tr * tr / 4.0 - det, 0.0))
            l1, l2 = tr / 2.0 + disc, max(tr / 2.0 - disc, 1e-9)
            length, width = math.sqrt(12.0 * l1), math.sqrt(12.0 * l2)
            theta = 0.5 * math.atan2(2.0 * cxy, cxx - cyy)  # major axis angle from the x axis
            if length < cfg.stop_line_min_len or length < 3.0 * width or abs(math.cos(theta)) > cos_max:
                continue
            # Our stop line crosses our lane: its span covers the lane centre (another
            # direction's stop line, across the road, stops at the centre line).
            if abs(my - float(est.centre_y(mx))) > 0.5 * length * abs(math.sin(theta)) - 0.5:
                continue
            if best is None or mx < best[0]:
                heading = theta - math.copysign(math.pi / 2.0, theta)  # the road axis is perpendicular
                best = (mx, heading)
        if best is None:
            return
        mx, heading = best
        cy = float(est.centre_y(mx))
        if self.axis is not None and self.axis_travel < 5.0:
            heading = 0.5 * heading + 0.5 * float(self.axis[2])
        self.axis = np.array([mx, cy, heading])
        self.axis_travel = 0.0

    def _fit(self, xs: np.ndarray, cs: np.ndarray, ws: np.ndarray) -> np.ndarray:
        """Weighted fit of the centre samples; fewer samples fit fewer terms, the rest predicted."""
        pred = self.estimate.coeffs.copy()
        if len(xs) >= 3 and np.ptp(xs) >= 5.0:
            out = np.polyfit(xs, cs, 2, w=ws)[::-1]
        elif len(xs) >= 2:
            # Keep the predicted curvature, fit offset and slope.
            c01 = np.polyfit(xs, cs - pred[2] * xs * xs, 1, w=ws)[::-1]
            out = np.array([c01[0], c01[1], pred[2]])
        else:
            x0 = xs[0]
            out = pred.copy()
            out[0] += cs[0] - float(self.estimate.centre_y(x0))
        return out


def _cluster_1d(x: np.ndarray, r: np.ndarray, xm: float, gap: float, max_extent: float, min_points: int) -> list[float]:
    """Lateral positions at `xm` of the marking-like clusters of points (x, r).

    Points are grouped by lateral gaps; a group is a marking when it is narrow, or when it
    is a straight slanted line (a lane that bends away from the predicted one): then its
    position is the line's value at `xm`. Wide blobs (stop lines, smears) are dropped.
    """
    order = np.argsort(r)
    rs, xs = r[order], x[order]
    cuts = np.flatnonzero(np.diff(rs) > gap) + 1
    out = []
    for pr, px in zip(np.split(rs, cuts), np.split(xs, cuts), strict=True):
        if len(pr) < min_points:
            continue
        if pr[-1] - pr[0] <= max_extent:
            out.append(float(np.median(pr)))
            continue
        if np.ptp(px) < 1.0:
            continue
        slope, icpt = np.polyfit(px, pr, 1)
        resid = pr - (icpt + slope * px)
        if abs(slope) < 1.0 and float(np.std(resid)) < 0.18:
            out.append(float(icpt + slope * xm))
    return out


def _nearest(lines: list[float], expected: float, gate: float, positive: bool) -> float | None:
    """The line nearest to `expected` on the given side of the centre, within the gate."""
    best, best_d = None, gate
    for y in lines:
        if (positive and y <= 0.2) or (not positive and y >= -0.2):
            continue
        d = abs(y - expected)
        if d <= best_d:
            best, best_d = y, d
    return best


__all__ = ["LaneEstimate", "LaneEstimator", "LaneEstimatorConfig"]
