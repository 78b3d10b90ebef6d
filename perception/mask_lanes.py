"""Binary lane-marking mask -> lane polylines, so a mask model can be scored with lane metrics.

TuSimple and CULane score lane *instances*; our U-Net outputs one mask of marking pixels. This
turns the mask into lanes in the image plane, in four steps:

1. **Runs.** Each row's connected runs of lane pixels, reduced to their centre column. A
   painted line seen in perspective is a few pixels wide per row, a car, a road edge seen flat
   or the horizon is not: runs wider than `max_run` (a share of the width) start no lane, and
   continue one only when the lane's slant explains the width (width <= `max_run` + |dx/dy|
   px, at most `max_wide_run`): an outer lane in a squashed 320x160 frame runs at dx/dy ~ 5.
2. **Tracking, bottom-up.** Lanes start at the bottom of the image where they are widest
   apart. Each lane predicts its x at the next row from a line through its last `history`
   points; a run joins the nearest lane whose prediction is within the gate (`gate` of the
   width, widened by `gate_per_row` px per skipped row), one run per lane; a run no lane takes
   starts a new one. A lane that finds no run for `max_gap` of the height (longer than a dash
   gap) ends.
3. **Joining.** A lane is joined to one that starts above its top (at most twice `max_gap`
   higher) when each one's straight end, extended across the gap, meets the other within the
   gate: dashes cut apart by a gap longer than `max_gap`.
4. **Fit.** Specks at a lane's ends (a few rows, after a gap: the widening gate walks on to
   stray pixels) are cut off; lanes with runs on fewer than `min_rows` of the rows are dropped (specks, blobs);
   each other lane gets a least-squares polynomial x = f(y) (degree `degree`, 1 when the lane
   is short) sampled at every row it spans: the polyline returned. With `max_lanes`, only the
   lanes with the most rows are kept.
5. **Extension** (`extend_down`, `extend_up`). Lane labels (TuSimple, CULane, the simulator's
   lane instances) run through dash gaps and past the paint in view, so each lane is carried
   on straight along its fit's tangent: down to the image's edge and up to the top row of the
   highest lane, stopping where it leaves the image. A lane seen as one dash becomes a whole
   lane (sim Town10HD, true paint masks: TuSimple accuracy 0.76 -> 0.88, FP 0.24 -> 0.09).

Limits (why the lane metrics measure this decoder as well as the model): it is made for thin
masks of painted pixels, so a lane whose runs are wider than `max_run` from its first row on
(a line drawn thick, or very slanted) never starts; lanes are assumed to
run up the image, so horizontal markings (stop lines, crossings) are dropped and lanes that
bend past horizontal are cut; near the vanishing point converging lanes merge into one run and
the tracker keeps only one of them; a lane that forks, or two dashes of neighbouring lanes
closer than the gate, can be swapped; a false marking (guard rail, crack, car edge) that runs
up the image is a lane like any other, and the extension makes it a long one; the extension
is straight, so on a tight curve its far part drifts off the lane. Coordinates are pixels of
the mask (x = column, y = row, pixel centres at integers); `scale_lanes` maps them to another
image size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LaneFitParams:
    """Post-processing settings, as shares of the mask size so they hold at any resolution."""

    max_run: float = 0.06  # widest run that starts or continues any lane, share of the width
    max_wide_run: float = 0.15  # widest run that continues a slanted lane (width <= max_run + |dx/dy|)
    gate: float = 0.03  # how far (share of the width) a run may be from a lane's predicted x
    gate_per_row: float = 0.3  # extra gate in px per row the lane skipped
    max_gap: float = 0.2  # rows (share of the height) a lane may skip before it ends
    min_rows: float = 0.08  # rows with a run (share of the height) a lane needs
    min_piece: float = 0.03  # rows (share of the height) of an end piece kept after a gap
    history: int = 8  # last points the prediction is fitted to
    degree: int = 2
    max_lanes: int | None = None
    # Carry each lane on along its end lines: down to the image's edge, and up to the top row of
    # the highest lane (near the vanishing point). Lane labels run through dash gaps and past the
    # paint a camera happens to see; a lane decoded only from its dashes is short without it.
    extend_down: bool = True
    extend_up: bool = True


@dataclass
class _Track:
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)

    def add(self, x: float, y: float) -> None:
        self.xs.append(x)
        self.ys.append(y)

    def predict(self, y: float, history: int) -> tuple[float, float]:
        """(x at row y, slope dx/dy) from a line through the last `history` points."""
        xs, ys = np.asarray(self.xs[-history:]), np.asarray(self.ys[-history:])
        if len(xs) < 3 or np.ptp(ys) < 2:
            return float(xs[-1]), 0.0
        k, c = np.polyfit(ys, xs, 1)
        return float(k * y + c), float(k)


def row_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row's runs of lane pixels: (row, centre column, width) arrays, row-major order."""
    m = np.pad(np.asarray(mask, dtype=bool).astype(np.int8), ((0, 0), (1, 1)))
    d = np.diff(m, axis=1)
    rows, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)  # same order: each run's end follows its start in the row
    return rows, (starts + ends - 1) / 2.0, ends - starts


def _track(mask: np.ndarray, p: LaneFitParams) -> list[_Track]:
    h, w = mask.shape
    rows, centres, widths = row_runs(mask)
    thin = max(1.0, p.max_run * w)
    keep = widths <= max(thin, p.max_wide_run * w)
    rows, centres, widths = rows[keep], centres[keep], widths[keep]
    bounds = np.searchsorted(rows, np.arange(h + 1))
    gate0, max_gap = p.gate * w, max(1, round(p.max_gap * h))
    active: list[_Track] = []
    done: list[_Track] = []
    for y in range(h - 1, -1, -1):
        still = []
        for t in active:
            (still if t.ys[-1] - y <= max_gap else done).append(t)
        active = still
        xs, ws = centres[bounds[y] : bounds[y + 1]], widths[bounds[y] : bounds[y + 1]]
        if len(xs) == 0:
            continue
        pairs = []
        for ti, t in enumerate(active):
            gate = gate0 + p.gate_per_row * (t.ys[-1] - y - 1)
            x, k = t.predict(y, p.history)
            # a wide run continues a lane only when the lane's slant explains its width
            ok = (np.abs(xs - x) <= gate) & (ws <= thin + abs(k))
            pairs += [(float(abs(xs[ri] - x)), ti, ri) for ri in np.nonzero(ok)[0]]
        used_t, used_r = set(), set()
        for _, ti, ri in sorted(pairs):
            if ti not in used_t and ri not in used_r:
                used_t.add(ti)
                used_r.add(ri)
                active[ti].add(float(xs[ri]), float(y))
        active += [_Track([float(xs[ri])], [float(y)]) for ri in range(len(xs)) if ri not in used_r and ws[ri] <= thin]
    return done + active


def _fit(xs: np.ndarray, ys: np.ndarray, degree: int, h: int) -> np.ndarray:
    """Polynomial coefficients x = f(y); degree 1 for lanes spanning under a quarter of the height."""
    deg = min(degree, len(set(ys.tolist())) - 1, 1 if np.ptp(ys) < h / 4 else degree)
    return np.polyfit(ys, xs, max(0, deg))


def _trim(t: _Track, p: LaneFitParams, h: int) -> _Track:
    """Drop specks at either end of a track: pieces (runs of rows with under 3 rows between
    them) with fewer than `min_piece` of the height in rows, while more than one piece is left.
    The tracker's widening gate otherwise walks on from a lane's end to stray pixels."""
    order = np.argsort(t.ys)
    ys, xs = np.asarray(t.ys)[order], np.asarray(t.xs)[order]
    cuts = np.nonzero(np.diff(ys) > 3)[0] + 1
    pieces = np.split(np.arange(len(ys)), cuts)
    small = max(3.0, p.min_piece * h)
    while len(pieces) > 1 and len(pieces[0]) < small:
        pieces.pop(0)
    while len(pieces) > 1 and len(pieces[-1]) < small:
        pieces.pop()
    keep = np.concatenate(pieces)
    return _Track(xs[keep].tolist(), ys[keep].tolist())


def _line(xs: list[float], ys: list[float]) -> np.ndarray:
    """Coefficients of x = k * y + c through the points (k = 0 when they span under 2 rows)."""
    if len(ys) < 2 or np.ptp(ys) < 2:
        return np.array([0.0, float(np.mean(xs))])
    return np.polyfit(ys, xs, 1)


def _continues(lower: _Track, upper: _Track, p: LaneFitParams, w: int) -> bool:
    """True when `upper` (all above `lower`) carries on `lower`'s line and `lower` carries on
    `upper`'s: each end's straight line, fitted to its `history` nearest points, meets the
    other end within the gate widened by the rows between them."""
    k = 2 * p.history
    lo = sorted(zip(lower.ys, lower.xs, strict=True))[:k]  # the lower track's top end
    up = sorted(zip(upper.ys, upper.xs, strict=True))[-k:]  # the upper track's bottom end
    lo_xs, lo_ys = [x for _, x in lo], [y for y, _ in lo]
    up_xs, up_ys = [x for _, x in up], [y for y, _ in up]
    gap = min(lower.ys) - max(upper.ys)
    gate = p.gate * w + p.gate_per_row * gap
    a, b = _line(lo_xs, lo_ys), _line(up_xs, up_ys)
    return (
        float(np.mean(np.abs(np.polyval(a, up_ys) - up_xs))) <= gate
        and float(np.mean(np.abs(np.polyval(b, lo_ys) - lo_xs))) <= gate
    )


def _join(tracks: list[_Track], p: LaneFitParams, h: int, w: int) -> list[_Track]:
    """Join a track to one that lies wholly above it, at most twice `max_gap` higher, when each
    continues the other's line (step 3); the nearest such track first."""
    reach = 2 * p.max_gap * h
    tracks = sorted(tracks, key=lambda t: -max(t.ys))  # lowest first
    joined = True
    while joined:
        joined = False
        for i, a in enumerate(tracks):
            above = [
                (min(a.ys) - max(b.ys), j)
                for j, b in enumerate(tracks)
                if j != i and 0 < min(a.ys) - max(b.ys) <= reach and _continues(a, b, p, w)
            ]
            if above:
                j = min(above)[1]
                b = tracks[j]
                tracks[i] = _Track(b.xs + a.xs, b.ys + a.ys)
                del tracks[j]
                joined = True
                break
    return tracks


def _extend(lane: np.ndarray, coef: np.ndarray, p: LaneFitParams, top: int, h: int, w: int) -> np.ndarray:
    """`lane` (the fit `coef` sampled over its rows) carried on beyond its ends (`extend_down`,
    `extend_up`) along the fit's tangent there, until it leaves the image: straight, because a
    polynomial carried far past its points runs off, while the curve near each end is kept."""
    slope = np.polyder(coef)
    parts = []
    y0, y1 = int(lane[0, 1]), int(lane[-1, 1])
    if p.extend_up and top < y0:
        a = np.array([np.polyval(slope, y0), lane[0, 0] - np.polyval(slope, y0) * y0])
        parts.append(_inside(a, np.arange(y0 - 1, top - 1, -1, dtype=np.float64), w)[::-1])
    parts.append(lane)
    if p.extend_down and y1 < h - 1:
        a = np.array([np.polyval(slope, y1), lane[-1, 0] - np.polyval(slope, y1) * y1])
        parts.append(_inside(a, np.arange(y1 + 1, h, dtype=np.float64), w))
    return np.concatenate(parts) if len(parts) > 1 else lane


def _inside(line: np.ndarray, y: np.ndarray, w: int) -> np.ndarray:
    """Points of x = line(y) at rows `y` (walked away from the lane), up to the first outside the image."""
    x = np.polyval(line, y)
    out = np.nonzero((x < -0.5) | (x > w - 0.5))[0]
    n = int(out[0]) if len(out) else len(y)
    return np.stack([x[:n], y[:n]], axis=1).reshape(-1, 2)


def mask_to_lanes(mask: np.ndarray, params: LaneFitParams | None = None) -> list[np.ndarray]:
    """Lane polylines (Nx2 float (x, y), one point per row, top to bottom) of a bool HxW mask,
    ordered left to right by their lowest point (module doc for the steps and their limits)."""
    p = params or LaneFitParams()
    m = np.asarray(mask) != 0
    if m.ndim != 2:
        raise ValueError(f"expected an HxW mask, got shape {m.shape}")
    h, w = m.shape
    tracks = _join([_trim(t, p, h) for t in _track(m, p)], p, h, w)
    tracks = [t for t in tracks if len(set(t.ys)) >= max(2, p.min_rows * h)]
    tracks.sort(key=lambda t: -len(t.ys))
    if p.max_lanes is not None:
        tracks = tracks[: p.max_lanes]
    top = min((min(t.ys) for t in tracks), default=0.0)
    lanes = []
    for t in tracks:
        xs, ys = np.asarray(t.xs), np.asarray(t.ys)
        coef = _fit(xs, ys, p.degree, h)
        y = np.arange(int(ys.min()), int(ys.max()) + 1, dtype=np.float64)
        lane = np.stack([np.polyval(coef, y), y], axis=1)
        lanes.append(_extend(lane, coef, p, int(top), h, w))
    lanes.sort(key=lambda lane: lane[-1, 0])
    return lanes


def scale_lanes(lanes: list[np.ndarray], src: tuple[int, int], dst: tuple[int, int]) -> list[np.ndarray]:
    """Lanes in pixels of an image of size `src` (H, W) -> pixels of size `dst`, centre to centre."""
    sy, sx = dst[0] / src[0], dst[1] / src[1]
    return [np.stack([(lane[:, 0] + 0.5) * sx - 0.5, (lane[:, 1] + 0.5) * sy - 0.5], axis=1) for lane in lanes]


__all__ = ["LaneFitParams", "mask_to_lanes", "row_runs", "scale_lanes"]
