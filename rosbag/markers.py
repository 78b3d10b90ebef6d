"""Lane markings as visualization_msgs/MarkerArray: the map's true boundaries near the ego, and
each model's predicted marking points on the ground.

RViz and Foxglove keep a marker by (namespace, id) until it is replaced, deleted or its
lifetime runs out. Every array therefore starts with a DELETEALL (the previous frame's
markers go, so a boundary that left the radius does not linger) and each marker also carries
a lifetime of `LIFETIME_S`, so that the picture clears when playback stops feeding it.

- `/lane_markings/true` (frame `map`): one LINE_STRIP per marking polyline (or its part
  within `radius_m` of the ego), namespace = the marking's kind (`solid`, `dashed`, `double`,
  `stop`, `crosswalk`), id = the marking's index in the town (stable over the drive, so a
  viewer updates a boundary rather than stacking copies), colour white or yellow as painted.
- `/lane_markings/<model>` (frame `base_link`): one POINTS marker of the model's marking
  pixels projected to the ground (`harness.drivers.GroundProjector`), thinned to one point per
  `PREDICTED_CELL_M` cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rosbag.messages import header, stamp

LINE_STRIP, POINTS, ADD, DELETEALL = 4, 8, 0, 3
LIFETIME_S = 1.0
LINE_Z = 0.02  # [m] just above the ground, so the ground does not hide the lines
PREDICTED_CELL_M = 0.2
_COLOURS = {"white": (0.95, 0.95, 0.95), "yellow": (1.0, 0.8, 0.1)}
_IDENTITY = {"position": {"x": 0.0, "y": 0.0, "z": 0.0}, "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}


def marker(ns: int, frame_id: str, namespace: str, ident: int, kind: int, points: np.ndarray,
           rgba: tuple[float, float, float, float], width: float) -> dict[str, Any]:  # fmt: skip
    """visualization_msgs/Marker (Humble's fields) of (N, 3) points; `width` is scale.x [m]."""
    life = int(LIFETIME_S * 1e9)
    return {
        "header": header(ns, frame_id),
        "ns": namespace,
        "id": ident,
        "type": kind,
        "action": ADD,
        "pose": _IDENTITY,
        "scale": {"x": width, "y": width, "z": 0.0},
        "color": dict(zip("rgba", map(float, rgba), strict=True)),
        "lifetime": stamp(life),
        "frame_locked": False,
        "points": np.asarray(points, np.float64).reshape(-1, 3),
        "colors": np.zeros((0, 4), np.float32),
        "texture_resource": "",
        "texture": {"header": header(0, ""), "format": "", "data": b""},
        "uv_coordinates": [],
        "text": "",
        "mesh_resource": "",
        "mesh_file": {"filename": "", "data": b""},
        "mesh_use_embedded_materials": False,
    }


def delete_all(ns: int, frame_id: str) -> dict[str, Any]:
    out = marker(ns, frame_id, "", 0, POINTS, np.zeros((0, 3)), (0, 0, 0, 0), 0.0)
    out["action"] = DELETEALL
    return out


class TrueMarkings:
    """The town's marking polylines, and per frame the parts of them near the ego."""

    def __init__(self, markings: list[Any], radius_m: float = 30.0) -> None:
        self.radius = radius_m
        self.kinds = [mk.kind for mk in markings]
        self.rgba = [(*_COLOURS.get(mk.color, _COLOURS["white"]), 1.0) for mk in markings]
        self.widths = [float(mk.width) for mk in markings]
        pts = [np.asarray(mk.points, np.float64)[:, :2] for mk in markings]
        self.xy = np.concatenate(pts) if pts else np.zeros((0, 2))
        self.owner = np.repeat(np.arange(len(pts)), [len(p) for p in pts])

    def near(self, x: float, y: float) -> list[tuple[int, np.ndarray]]:
        """(marking index, (N, 2) points) of every marking's run of points within the radius."""
        d2 = (self.xy[:, 0] - x) ** 2 + (self.xy[:, 1] - y) ** 2
        idx = np.flatnonzero(d2 <= self.radius**2)
        if idx.size == 0:
            return []
        # A run ends where the point index jumps or the owner changes.
        cut = np.flatnonzero((np.diff(idx) != 1) | (np.diff(self.owner[idx]) != 0)) + 1
        return [(int(self.owner[r[0]]), self.xy[r]) for r in np.split(idx, cut) if len(r) >= 2]

    def message(self, ns: int, x: float, y: float, frame_id: str = "map") -> dict[str, Any]:
        """MarkerArray of the markings within the radius of (x, y) at time `ns`."""
        out = [delete_all(ns, frame_id)]
        seen: dict[int, int] = {}
        for k, xy in self.near(x, y):
            part = seen[k] = seen.get(k, -1) + 1  # a polyline leaving and re-entering the radius
            pts = np.column_stack([xy, np.full(len(xy), LINE_Z)])
            ident = k * 16 + part  # unique, and stable over the drive
            out.append(marker(ns, frame_id, self.kinds[k], ident, LINE_STRIP, pts, self.rgba[k], self.widths[k]))
        return {"markers": out}


def predicted_points(ns: int, model: str, ground_xy: np.ndarray, rgba: tuple[float, float, float, float],
                     frame_id: str = "base_link") -> dict[str, Any]:  # fmt: skip
    """MarkerArray of one POINTS marker: a model's marking points on the ground, thinned."""
    if len(ground_xy):
        c = np.floor(ground_xy / PREDICTED_CELL_M).astype(np.int64) + (1 << 20)  # >= 0 within 200 km
        key = np.unique(c[:, 0] << 21 | c[:, 1])  # one int per cell: a 1-D unique, 10x a unique of rows
        xy = (np.stack([key >> 21, key & ((1 << 21) - 1)], 1) - (1 << 20) + 0.5) * PREDICTED_CELL_M
    else:
        xy = np.zeros((0, 2))
    pts = np.column_stack([xy, np.full(len(xy), LINE_Z)])
    mk = marker(ns, frame_id, f"predicted/{model}", 0, POINTS, pts, rgba, PREDICTED_CELL_M)
    return {"markers": [delete_all(ns, frame_id), mk]}


#: Colours of the models' predicted points, in the order the models come.
MODEL_COLOURS = [(0.2, 0.9, 0.3, 1.0), (1.0, 0.3, 0.2, 1.0), (0.3, 0.6, 1.0, 1.0), (1.0, 0.4, 1.0, 1.0)]

__all__ = ["LINE_STRIP", "MODEL_COLOURS", "POINTS", "TrueMarkings", "delete_all", "marker", "predicted_points"]
