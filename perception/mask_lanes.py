"""Binary lane-marking mask -> lane polylines, so a mask model can be scored with lane metrics.

TuSimple and CULane score lane *instances*; our U-Net outputs one mask of marking pixels. This
turns the mask into lanes in the image plane, in four steps:

1. **Runs.** Each row's connected runs of lane pixels, reduced to their centre column. Runs
   wider than `max_run` (a share of the width) are dropped: a painted line seen in perspective
   is a few pixels wide per row, a car, a road edge seen flat or the horizon is not.
2. **Tracking, bottom-up.** Lanes start at the bottom of the image where they are widest
   apart. Each lane predicts its x at the next row from a line through its last `history`
   points; a run joins the nearest lane whose prediction is within the gate (`gate` of the
   width, widened by `gate_per_row` px per skipped row), one run per lane; a run no lane takes
   starts a new one. A lane that finds no run for `max_gap` of the height (longer than a dash
   gap) ends.
3. **Joining.** Two lanes that do not share rows are joined when one polynomial fits both
   within half the gate: dashes cut apart by a gap longer than `max_gap`.
4. **Fit.** Lanes with runs on fewer than `min_rows` of the rows are dropped (specks, blobs);
   each other lane gets a least-squares polynomial x = f(y) (degree `degree`, 1 when the lane
   is short) sampled at every row it spans: the polyline returned. With `max_lanes`, only the
   lanes with the most rows are kept.

Limits (why the lane metrics measure this decoder as well as the model): lanes are assumed to
run up the image, so horizontal markings (stop lines, crossings) are dropped and lanes that
bend past horizontal are cut; near the vanishing point converging lanes merge into one run and
the tracker keeps only one of them; a lane that forks, or two dashes of neighbouring lanes
closer than the gate, can be swapped; a false marking (guard rail, crack, car edge) that runs
up the image is a lane like any other; nothing is extrapolated beyond the rows the mask marks,
so a lane the model sees only near the bottom is short (TuSimple counts its missing points
against it). Coordinates are pixels of the mask (x = column, y = row, pixel centres at
integers); `scale_lanes` maps them to another image size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LaneFitParams:
    """Post-processing settings, as shares of the mask size so they hold at any resolution."""

    max_run: float = 0.06  # widest run kept, share of the width
    gate: float = 0.03  # how far (share of the width) a run may be from a lane's predicted x
    gate_per_row: float = 0.3  # extra gate in px per row the lane skipped
    max_gap: float = 0.2  # rows (share of the height) a lane may skip before it ends
    min_rows: float = 0.08  # rows with a run (share of the height) a lane needs
    history: int = 8  # last points the prediction is fitted to
    degree: int = 2
    max_lanes: int | None = None


@dataclass
class _Track:
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)

    def add(self, x: float, y: float) -> None:
        self.xs.append(x)
        self.ys.append(y)

    def predict(self, y: float, history: int) -> float:
        xs, ys = np.asarray(self.xs[-history:]), np.asarray(self.ys[-history:])
        if len(xs) < 3 or np.ptp(ys) < 2:
            return float(xs[-1])
        k, c = np.polyfit(ys, xs, 1)
        return float(k * y + c)


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
    keep = widths <= max(1.0, p.max_run * w)
    rows, centres = rows[keep], centres[keep]
    bounds = np.searchsorted(rows, np.arange(h + 1))
    gate0, max_gap = p.gate * w, max(1, round(p.max_gap * h))
    active: list[_Track] = []
    done: list[_Track] = []
    for y in range(h - 1, -1, -1):
        still = []
        for t in active:
            (still if t.ys[-1] - y <= max_gap else done).append(t)
        active = still
        xs = centres[bounds[y] : bounds[y + 1]]
        if len(xs) == 0:
            continue
        pairs = []
        for ti, t in enumerate(active):
            gate = gate0 + p.gate_per_row * (t.ys[-1] - y - 1)
            dist = np.abs(xs - t.predict(y, p.history))
            pairs += [(float(dist[ri]), ti, ri) for ri in np.nonzero(dist <= gate)[0]]
        used_t, used_r = set(), set()
        for _, ti, ri in sorted(pairs):
            if ti not in used_t and ri not in used_r:
                used_t.add(ti)
                used_r.add(ri)
                active[ti].add(float(xs[ri]), float(y))
        active += [_Track([float(xs[ri])], [float(y)]) for ri in range(len(xs)) if ri not in used_r]
    return done + active


def _fit(xs: np.ndarray, ys: np.ndarray, degree: int, h: int) -> np.ndarray:
    """Polynomial coefficients x = f(y); degree 1 for lanes spanning under a quarter of the height."""
    deg = min(degree, len(set(ys.tolist())) - 1, 1 if np.ptp(ys) < h / 4 else degree)
    return np.polyfit(ys, xs, max(0, deg))


def _join(tracks: list[_Track], p: LaneFitParams, h: int, w: int) -> list[_Track]:
    """Join tracks that share no row and fit one polynomial within half the gate (step 3)."""
    tol = p.gate * w / 2
    tracks = sorted(tracks, key=lambda t: -len(t.ys))
    joined = True
    while joined:
        joined = False
        for i in range(len(tracks)):
            a = tracks[i]
            for j in range(i + 1, len(tracks)):
                b = tracks[j]
                if min(a.ys) <= max(b.ys) and min(b.ys) <= max(a.ys):
                    continue  # they share rows: two lanes side by side
                xs, ys = np.asarray(a.xs + b.xs), np.asarray(a.ys + b.ys)
                resid = xs - np.polyval(_fit(xs, ys, p.degree, h), ys)
                if np.sqrt(np.mean(resid**2)) <= tol:
                    tracks[i] = _Track(a.xs + b.xs, a.ys + b.ys)
                    del tracks[j]
                    joined = True
                    break
            if joined:
                break
    return tracks


def mask_to_lanes(mask: np.ndarray, params: LaneFitParams | None = None) -> list[np.ndarray]:
    """Lane polylines (Nx2 float (x, y), one point per row, top to bottom) of a bool HxW mask,
    ordered left to right by their lowest point (module doc for the steps and their limits)."""
    p = params or LaneFitParams()
    m = np.asarray(mask) != 0
    if m.ndim != 2:
        raise ValueError(f"expected an HxW mask, got shape {m.shape}")
    h, w = m.shape
    tracks = _join(_track(m, p), p, h, w)
    tracks = [t for t in tracks if len(set(t.ys)) >= max(2, p.min_rows * h)]
    tracks.sort(key=lambda t: -len(t.ys))
    if p.max_lanes is not None:
        tracks = tracks[: p.max_lanes]
    lanes = []
    for t in tracks:
        xs, ys = np.asarray(t.xs), np.asarray(t.ys)
        coef = _fit(xs, ys, p.degree, h)
        y = np.arange(int(ys.min()), int(ys.max()) + 1, dtype=np.float64)
        lanes.append(np.stack([np.polyval(coef, y), y], axis=1))
    lanes.sort(key=lambda lane: lane[-1, 0])
    return lanes


def scale_lanes(lanes: list[np.ndarray], src: tuple[int, int], dst: tuple[int, int]) -> list[np.ndarray]:
    """Lanes in pixels of an image of size `src` (H, W) -> pixels of size `dst`, centre to centre."""
    sy, sx = dst[0] / src[0], dst[1] / src[1]
    return [np.stack([(lane[:, 0] + 0.5) * sx - 0.5, (lane[:, 1] + 0.5) * sy - 0.5], axis=1) for lane in lanes]


__all__ = ["LaneFitParams", "mask_to_lanes", "row_runs", "scale_lanes"]
