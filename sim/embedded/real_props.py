"""Props of the `real` look: roadside barriers, and vehicles with glass, wheels, lights, paint.

Real frames are full of long straight edges that are not lanes (guard rails, concrete
barriers, car bodies): a model that never saw them marks them as lanes. These builders add
them as plain boxes with their own CARLA tags, so labels stay exact.
"""

from __future__ import annotations

import numpy as np

from sim import tags
from sim.embedded.geometry import offset
from sim.embedded.look import Look
from sim.embedded.props import Boxes
from sim.embedded.roadnet import STOP_BAND, RoadNetwork

# Car paints as they are on the road: mostly white, black, greys, some colours.
CAR_PAINT = np.array(
    [
        [235, 235, 232],
        [228, 228, 225],
        [25, 25, 28],
        [40, 40, 45],
        [150, 152, 156],
        [185, 187, 190],
        [105, 108, 112],
        [30, 45, 90],
        [140, 25, 25],
        [70, 80, 60],
        [200, 190, 160],
        [60, 30, 25],
    ],
    np.uint8,
)
GLASS = (38, 44, 52)


def concat(*parts: Boxes) -> Boxes:
    """One Boxes of several (row order kept)."""
    parts = [p for p in parts if len(p.yaw)]
    if not parts:
        return Boxes.from_rows([])
    return Boxes(
        np.concatenate([p.xy for p in parts]),
        np.concatenate([p.yaw for p in parts]),
        np.concatenate([p.size for p in parts]),
        np.concatenate([p.z0 for p in parts]),
        np.concatenate([p.color for p in parts]).astype(np.uint8),
        np.concatenate([p.tag for p in parts]).astype(np.uint8),
    )


def barriers(net: RoadNetwork, sidewalk: float, look: Look) -> Boxes:
    """Guard rails and concrete barriers along a share `look.barriers` of the road sides."""
    rng = np.random.default_rng([look.seed, 29])
    rows: list[tuple] = []
    for rd in net.roads:
        c = rd.center
        s = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1))])
        keep = (s > STOP_BAND + 4) & (s < s[-1] - STOP_BAND - 4) if not rd.closed else np.ones(len(c), bool)
        for side in (-1.0, 1.0):
            if rng.random() > look.barriers:
                continue
            rail = rng.random() < 0.6
            lat = side * (rd.half_width + (sidewalk + 0.35 if sidewalk > 0 else rng.uniform(0.5, 1.5)))
            line = offset(c, lat, rd.closed)
            grey = rng.uniform(0.8, 1.15)
            for n_seg, k in enumerate(range(0, len(c) - 1, 5)):
                j = min(k + 5, len(c) - 1)
                if not (keep[k] and keep[j]):
                    continue
                a, b = line[k], line[j]
                mid, d = (a + b) / 2, b - a
                yaw = float(np.arctan2(d[1], d[0]))
                ln = float(np.linalg.norm(d)) + 0.05
                if rail:  # galvanised band on posts
                    rows.append(
                        (
                            mid,
                            yaw,
                            (ln, 0.12, 0.32),
                            0.42,
                            np.clip(np.array([165, 168, 172]) * grey, 0, 255),
                            tags.GUARD_RAIL,
                        )
                    )
                    if n_seg % 2 == 0:
                        rows.append((a, yaw, (0.12, 0.12, 0.7), 0.0, (95, 95, 100), tags.GUARD_RAIL))
                else:  # concrete barrier
                    rows.append(
                        (mid, yaw, (ln, 0.45, 0.82), 0.0, np.clip(np.array([172, 168, 158]) * grey, 0, 255), tags.WALL)
                    )
    return Boxes.from_rows(rows)


def street_lamps(boxes: Boxes) -> Boxes:
    """A lamp head on every tall pole (emissive at night: sim/embedded/real_look.lamp_items)."""
    i = np.nonzero((boxes.tag == tags.POLE) & (boxes.size[:, 2] > 5.0))[0]
    n = len(i)
    return Boxes(
        boxes.xy[i],
        boxes.yaw[i],
        np.tile([0.7, 0.5, 0.25], (n, 1)),
        boxes.z0[i] + boxes.size[i, 2] - 0.2,
        np.tile(np.array([255, 196, 110], np.uint8), (n, 1)),
        np.full(n, tags.POLE, np.uint8),
    )


def detail_vehicles(dyn: Boxes, look: Look, night: bool) -> tuple[Boxes, Boxes]:
    """(the traffic's boxes repainted, with glass and wheels; their lamps as separate boxes).

    Body rows are recognised by their heights as traffic.py builds them (car body z0 0.3,
    cabin z0 1.15; truck boxes z0 0.4). Paint is picked per vehicle from its own colour, so
    it stays the same from frame to frame.
    """
    if not len(dyn.yaw):
        return dyn, dyn
    color = dyn.color.copy()
    body = np.abs(dyn.z0 - 0.3) < 1e-6
    cabin = np.abs(dyn.z0 - 1.15) < 1e-6
    key = (color[:, 0].astype(np.int64) * 7 + color[:, 1].astype(np.int64) * 13 + look.seed) % len(CAR_PAINT)
    color[body] = CAR_PAINT[key[body]]
    color[cabin] = GLASS
    out = Boxes(dyn.xy, dyn.yaw, dyn.size, dyn.z0, color, dyn.tag)
    low = body | (np.abs(dyn.z0 - 0.4) < 1e-6)
    i = np.nonzero(low)[0]
    fx, fy = np.cos(dyn.yaw[i]), np.sin(dyn.yaw[i])
    ln, wd = dyn.size[i, 0], dyn.size[i, 1]
    # Wheels and the dark underside: one low box a little wider than the body.
    wheels = Boxes(
        dyn.xy[i],
        dyn.yaw[i],
        np.stack([ln * 0.82, wd * 1.02, np.full(len(i), 0.42)], 1),
        np.zeros(len(i)),
        np.full((len(i), 3), 18, np.uint8),
        dyn.tag[i],
    )
    back = dyn.xy[i] - np.stack([fx, fy], 1) * (ln[:, None] / 2 + 0.02)
    front = dyn.xy[i] + np.stack([fx, fy], 1) * (ln[:, None] / 2 + 0.02)
    red = (255, 40, 30) if night else (150, 25, 25)
    head = (255, 250, 225) if night else (205, 205, 200)
    lamp = np.stack([np.full(len(i), 0.06), wd * 0.96, np.full(len(i), 0.14)], 1)
    lamps = Boxes(
        np.concatenate([back, front]),
        np.concatenate([dyn.yaw[i], dyn.yaw[i]]),
        np.concatenate([lamp, lamp]),
        np.full(2 * len(i), 0.75),
        np.array([red] * len(i) + [head] * len(i), np.uint8),
        np.concatenate([dyn.tag[i], dyn.tag[i]]),
    )
    return concat(wheels, out), lamps
