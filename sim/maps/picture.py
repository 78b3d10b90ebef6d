"""Top-down pictures of a map: the ground raster in its daylight colours, lane centres and junctions."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sim.embedded.render import MATERIAL_RGB
from sim.maps.load import load_map


def top_view(path: str | Path, width_px: int = 2000, lanes: bool = True) -> np.ndarray:
    """RGB picture `width_px` wide: ground colours, drivable lane centres (blue), junctions (orange)."""
    town, md = load_map(path)
    g = town.ground
    lut = np.zeros((256, 3), np.uint8)
    for m, rgb in MATERIAL_RGB.items():
        lut[m * 16 : m * 16 + 16] = rgb
    h, w = g.data.shape[:2]
    scale = width_px / w
    step = max(int(1 / scale), 1)
    img = lut[np.asarray(g.data[::step, ::step, 1])]
    img = cv2.resize(img, (width_px, int(round(h * scale))), interpolation=cv2.INTER_AREA)
    s = scale / g.res

    def px(pts: np.ndarray) -> np.ndarray:
        return np.round(np.stack([(pts[:, 0] - g.xmin) * s, (g.ymax - pts[:, 1]) * s], 1) * 4).astype(np.int32)

    if lanes:
        for ln in town.network.lanes:
            color = (40, 110, 230) if ln.road is not None else (150, 60, 200)
            cv2.polylines(img, [px(ln.path.points)], False, color, 1, cv2.LINE_AA, 2)
    for polys in md.junction_lanes.values():
        hull = cv2.convexHull(px(np.vstack(polys)))
        cv2.polylines(img, [hull], True, (255, 140, 0), 2, cv2.LINE_AA, 2)
    return img
