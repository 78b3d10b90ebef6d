"""Reference lines and lane borders of OpenDRIVE roads, evaluated at arrays of s.

Lines and arcs are closed form. Spirals, poly3 and paramPoly3 are integrated numerically on a
2 cm table (heading analytic, positions by the trapezoid rule), and s is true arc length along
the curve for all of them, as CARLA's reader does: the chord error of the table is < 0.1 mm.
"""

from __future__ import annotations

import numpy as np

from sim.maps.opendrive import Geometry, LaneSection, Poly, Road

TABLE_STEP = 0.02  # metres between table points of the integrated geometries


def poly_eval(polys: list[Poly], s: np.ndarray, base: float = 0.0, end: float | None = None) -> np.ndarray:
    """Piecewise cubics at s (each record from base + record.s on); 0 where there are none.

    At s == end (a lane section's end) the record in force just before it is used, so a
    record that starts a new section does not leak into the last point of the previous one.
    """
    s = np.asarray(s, float)
    if not polys:
        return np.zeros_like(s)
    starts = np.array([base + p.s for p in polys])
    coef = np.array([[p.a, p.b, p.c, p.d] for p in polys])
    pick = s if end is None else np.minimum(s, end - 1e-9)
    i = np.clip(np.searchsorted(starts, pick, side="right") - 1, 0, len(polys) - 1)
    ds = s - starts[i]
    a, b, c, d = coef[i].T
    return a + ds * (b + ds * (c + ds * d))


def _table(g: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(arc length, local x, local y, local heading) of an integrated geometry, cached on it."""
    tab = g.__dict__.get("_table")
    if tab is None:
        tab = g.__dict__["_table"] = _build_table(g)
    return tab


def _build_table(g: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = max(int(np.ceil(g.length / TABLE_STEP)), 8) + 1
    p = g.params
    if g.kind == "spiral":
        s = np.linspace(0.0, g.length, n)
        k0, k1 = p["curvStart"], p["curvEnd"]
        dk = (k1 - k0) / g.length if g.length > 0 else 0.0
        h = k0 * s + 0.5 * dk * s**2
        return s, *_integrate(s, np.cos(h), np.sin(h)), h
    if g.kind == "poly3":
        # Arc length is at least the u range, so u <= length covers the whole curve.
        u = np.linspace(0.0, max(g.length, 1e-9), n)
        v = p["a"] + u * (p["b"] + u * (p["c"] + u * p["d"]))
        dv = p["b"] + u * (2 * p["c"] + 3 * u * p["d"])
        s = _cumulative(u, np.sqrt(1 + dv**2))
        return s, u, v, np.arctan(dv)
    if g.kind == "paramPoly3":
        top = 1.0 if g.normalized else g.length
        t = np.linspace(0.0, top, n)
        uu = p["aU"] + t * (p["bU"] + t * (p["cU"] + t * p["dU"]))
        vv = p["aV"] + t * (p["bV"] + t * (p["cV"] + t * p["dV"]))
        du = p["bU"] + t * (2 * p["cU"] + 3 * t * p["dU"])
        dv = p["bV"] + t * (2 * p["cV"] + 3 * t * p["dV"])
        s = _cumulative(t, np.hypot(du, dv))
        return s, uu, vv, np.unwrap(np.arctan2(dv, du))
    raise ValueError(g.kind)


def _cumulative(t: np.ndarray, f: np.ndarray) -> np.ndarray:
    out = np.zeros_like(t)
    out[1:] = np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(t))
    return out


def _integrate(s: np.ndarray, c: np.ndarray, sn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _cumulative(s, c), _cumulative(s, sn)


def _geometry_eval(g: Geometry, ds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ch, sh = np.cos(g.hdg), np.sin(g.hdg)
    if g.kind == "line":
        return g.x + ds * ch, g.y + ds * sh, np.full_like(ds, g.hdg)
    if g.kind == "arc":
        k = g.params["curvature"]
        if abs(k) < 1e-12:
            return g.x + ds * ch, g.y + ds * sh, np.full_like(ds, g.hdg)
        h = g.hdg + k * ds
        return g.x + (np.sin(h) - sh) / k, g.y - (np.cos(h) - ch) / k, h
    s_tab, lx, ly, lh = _table(g)
    u = np.interp(ds, s_tab, lx)
    v = np.interp(ds, s_tab, ly)
    h = np.interp(ds, s_tab, lh)
    return g.x + u * ch - v * sh, g.y + u * sh + v * ch, g.hdg + h


def reference_line(road: Road, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, heading) of the road's reference line at each s (clamped to the road)."""
    s = np.clip(np.asarray(s, float), 0.0, road.length)
    x, y, h = np.empty_like(s), np.empty_like(s), np.empty_like(s)
    starts = np.array([g.s for g in road.geometries])
    idx = np.clip(np.searchsorted(starts, s, side="right") - 1, 0, len(starts) - 1)
    for i in np.unique(idx):
        g = road.geometries[i]
        m = idx == i
        gx, gy, gh = _geometry_eval(g, np.clip(s[m] - g.s, 0.0, g.length))
        x[m], y[m], h[m] = gx, gy, gh
    return x, y, h


def max_curvature(g: Geometry) -> float:
    p = g.params
    if g.kind == "arc":
        return abs(p["curvature"])
    if g.kind == "spiral":
        return max(abs(p["curvStart"]), abs(p["curvEnd"]))
    if g.kind == "line":
        return 0.0
    s_tab, _, _, lh = _table(g)
    dh = np.abs(np.diff(lh)) / np.maximum(np.diff(s_tab), 1e-9)
    return float(dh.max()) if len(dh) else 0.0


def sample_s(road: Road, tol: float = 0.004, max_step: float = 1.0, extra: list[float] | None = None) -> np.ndarray:
    """Arc lengths along a road so that chords stay within `tol` metres of the curves.

    Every geometry start, lane section start and `extra` break is included, so polylines
    split there exactly.
    """
    parts = [np.array([0.0, road.length])]
    for g in road.geometries:
        k = max_curvature(g) * 1.5  # lanes outside the reference line curve more
        step = max_step if k < 1e-9 else min(max_step, max(np.sqrt(8 * tol / k), 0.1))
        n = max(int(np.ceil(g.length / step)), 1)
        parts.append(g.s + np.linspace(0.0, g.length, n + 1))
    parts.append(np.array([sec.s for sec in road.sections]))
    if extra:
        parts.append(np.asarray(extra, float))
    s = np.unique(np.clip(np.concatenate(parts), 0.0, road.length))
    keep = np.concatenate([[True], np.diff(s) > 1e-6])
    return s[keep]


def lane_borders(
    road: Road, sec: LaneSection, s: np.ndarray, end: float | None = None
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Lane id -> (inner t, outer t) at each s of a section ending at `end`: t is lateral, + left."""
    base = poly_eval(road.lane_offsets, s, end=end)
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {0: (base, base)}
    for lanes, sign in ((sec.left, 1.0), (sec.right, -1.0)):
        inner_abs = np.zeros_like(s)
        for lane in lanes:
            if lane.widths:
                w = poly_eval(lane.widths, s, sec.s, end)
                outer_abs = inner_abs + np.maximum(w, 0.0)
            elif lane.borders:
                outer_abs = np.maximum(poly_eval(lane.borders, s, sec.s, end), inner_abs)
            else:
                outer_abs = inner_abs.copy()
            out[lane.id] = (base + sign * inner_abs, base + sign * outer_abs)
            inner_abs = outer_abs
    return out


def lateral(x: np.ndarray, y: np.ndarray, h: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points at lateral offset t (+ left) from the reference line points: (N, 2)."""
    out = np.empty((len(x), 2))
    out[:, 0] = x - t * np.sin(h)
    out[:, 1] = y + t * np.cos(h)
    return out
