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

import struct
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
    """The town's marking polylines, and per frame those that come within the radius of the ego.

    A marking near the ego is sent whole (every polyline is at most a road's length), so each
    marker is the same every frame but for its stamp: its CDR is built once (for either
    4-byte phase it can fall at in the array) and only the stamp is written per frame.
    """

    def __init__(self, markings: list[Any], radius_m: float = 30.0) -> None:
        self.radius = radius_m
        self.markings = markings
        pts = [np.asarray(mk.points, np.float64)[:, :2] for mk in markings]
        self.xy = np.concatenate(pts) if pts else np.zeros((0, 2))
        self.owner = np.repeat(np.arange(len(pts)), [len(p) for p in pts])
        self._bytes: dict[tuple[int, int], bytes] = {}

    def near(self, x: float, y: float) -> np.ndarray:
        """Indices of the markings with a point within the radius of (x, y)."""
        d2 = (self.xy[:, 0] - x) ** 2 + (self.xy[:, 1] - y) ** 2
        return np.unique(self.owner[d2 <= self.radius**2])

    def _marker(self, ns: int, k: int, frame_id: str) -> dict[str, Any]:
        mkg = self.markings[k]
        pts = np.asarray(mkg.points, np.float64)[:, :2]
        rgba = (*_COLOURS.get(mkg.color, _COLOURS["white"]), 1.0)
        return marker(ns, frame_id, mkg.kind, k, LINE_STRIP, np.column_stack([pts, np.full(len(pts), LINE_Z)]),
                      rgba, float(mkg.width))  # fmt: skip

    def message(self, ns: int, x: float, y: float, frame_id: str = "map") -> dict[str, Any]:
        """MarkerArray (dicts) of the markings near (x, y) at time `ns`: a DELETEALL, then one LINE_STRIP each."""
        return {"markers": [delete_all(ns, frame_id)] + [self._marker(ns, int(k), frame_id) for k in self.near(x, y)]}

    def encoded(self, ns: int, x: float, y: float, frame_id: str = "map") -> bytes:
        """The CDR of `message(ns, x, y)`, from the cached markers."""
        from rosbag.cdr import marker_fragment

        ks = self.near(x, y)
        st = struct.pack("<iI", *stamp(ns).values())
        parts = [b"\x00\x01\x00\x00", struct.pack("<I", len(ks) + 1)]
        n = 4
        for k in (-1, *ks.tolist()):
            pad = -n % 4  # a marker ends with a bool; the next one's header starts 4-aligned
            parts.append(b"\0" * pad)
            n += pad
            key = (k, n % 8, frame_id)
            frag = self._bytes.get(key)
            if frag is None:
                mk = delete_all(0, frame_id) if k < 0 else self._marker(0, k, frame_id)
                frag = self._bytes[key] = marker_fragment(mk, n)
            parts += (st, frag[8:])
            n += len(frag)
        return b"".join(parts)


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
