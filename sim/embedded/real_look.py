"""Colour side of the `real` look: the ground LUT, the horizon, vehicle shadows, lamps, camera effects.

Each function only changes RGB; tags are written by the same draws as the default look (the
horizon silhouettes carry their own tags: terrain, buildings, vegetation).
"""

from __future__ import annotations

import cv2
import numpy as np

from sim import tags
from sim.embedded import raster as rmat
from sim.embedded.look import Look
from sim.embedded.props import Boxes

OTHER_RGB = {
    rmat.GRASS: (86, 112, 66),
    rmat.CONCRETE: (160, 156, 150),
    rmat.CURB: (182, 178, 170),
    rmat.DIRT: (122, 110, 92),
}


def material_lut(lt, look: Look, cloudiness: float) -> np.ndarray:
    """256x3 uint8 for the real raster: shades 0..3 in shadow, 4..15 the lit grain."""
    asphalt = np.array(look.asphalt_rgb, np.float32)
    k = look.paint_contrast
    base = {
        rmat.ASPHALT: asphalt,
        rmat.PATCH: asphalt * 0.78,
        rmat.TAR: asphalt * 0.42,
        rmat.TRACK: asphalt * (1 - 0.22 * look.tracks),
        rmat.WHITE: asphalt + (np.array(look.white_rgb, np.float32) - asphalt) * k,
        rmat.YELLOW: asphalt + (np.array(look.yellow_rgb, np.float32) - asphalt) * k,
        **{m: np.array(v, np.float32) for m, v in OTHER_RGB.items()},
    }
    sun = 0.0 if lt.night else (1 - cloudiness / 100.0)
    shadow_k = 1.0 - 0.58 * sun
    light = lt.light / max(lt.light.mean(), 1e-3) * (lt.light.mean() * 0.75 + lt.ambient * 0.35)
    lut = np.zeros((256, 3), np.float32)
    for m, rgb in base.items():
        wet = 1 - (0.45 if m not in (rmat.WHITE, rmat.YELLOW, rmat.GRASS) else 0.15) * lt.wet
        grain = look.asphalt_texture * (0.5 if m in (rmat.WHITE, rmat.YELLOW) else 1.0)
        for s in range(16):
            if s < 4:
                f = shadow_k * (1 + grain * 0.3 * (s / 3 - 0.5))
            else:
                f = 1 + grain * 0.5 * ((s - 4) / 11 - 0.5)
            lut[m * 16 + s] = rgb * wet * f * light
    return np.clip(lut, 0, 255).astype(np.uint8)


def horizon(bg: np.ndarray, v0: int, look: Look, lt, seed: int) -> None:
    """Hills, a skyline or a tree line just above the horizon (hazy, tagged as what they are)."""
    h, w = bg.shape[:2]
    if v0 < 3:
        return
    rng = np.random.default_rng([look.seed, seed, 31])
    top = np.zeros(w)
    if look.horizon == "hills":
        prof = cv2.resize(rng.uniform(0, 1, (1, 5)).astype(np.float32), (w, 1), interpolation=cv2.INTER_CUBIC)[0]
        top = np.clip(prof, 0, 1) * 0.12 * h + 1
        col, tag = np.array([70, 88, 80.0]), tags.TERRAIN
    elif look.horizon == "skyline":
        x = 0
        while x < w:
            bw = int(rng.integers(4, 22))
            top[x : x + bw] = rng.uniform(0.0, 0.16) * h
            x += bw
        col, tag = np.array([95, 100, 112.0]), tags.BUILDING
    else:
        prof = cv2.resize(rng.uniform(0, 1, (1, w // 3)).astype(np.float32), (w, 1))[0]
        top = (0.03 + 0.06 * prof) * h
        col, tag = np.array([45, 62, 40.0]), tags.VEGETATION
    haze = 0.5 if not lt.night else 0.0
    col = col * (1 - haze) + lt.fog_rgb * haze
    if lt.night:
        col = col * 0.15
    rows = np.arange(v0)[:, None]
    mask = rows >= (v0 - top[None, :])
    bg[:v0, :, :3][mask] = np.clip(col, 0, 255).astype(np.uint8)
    bg[:v0, :, 3][mask] = tag


def vehicle_shadows(img: np.ndarray, dyn: Boxes, r_wc, c, f: float, v0: int, lt) -> None:
    """Darken the ground under every vehicle within 60 m (RGB only: the 4th channel is multiplied by 1)."""
    if not len(dyn.yaw) or lt.night:
        return
    d = dyn.xy - c[:2]
    low = np.nonzero((dyn.z0 < 0.05) & (np.abs(d[:, 0]) + np.abs(d[:, 1]) < 60.0) & (d @ r_wc[2, :2] > 0))[0]
    if not len(low):
        return
    h, w = img.shape[:2]
    cy, sy = np.cos(dyn.yaw[low]), np.sin(dyn.yaw[low])
    hl, hw = dyn.size[low, 0] * 0.56, dyn.size[low, 1] * 0.56
    sx = np.array([1, -1, -1, 1.0])
    sw = np.array([1, 1, -1, -1.0])
    fx = dyn.xy[low, 0:1] + hl[:, None] * sx * cy[:, None] - hw[:, None] * sw * sy[:, None]
    fy = dyn.xy[low, 1:2] + hl[:, None] * sx * sy[:, None] + hw[:, None] * sw * cy[:, None]
    foot = np.stack([fx, fy, np.zeros_like(fx)], -1)  # (n, 4, 3) ground corners, a little outside the body
    cam = (foot - c) @ r_wc.T
    ok = (cam[..., 2] > 0.5).all(1)
    if not ok.any():
        return
    uv = cam[ok][..., :2] / cam[ok][..., 2:3] * f + (w / 2, h / 2)
    k = int(255 * (0.35 + 0.4 * (1 - lt.light.mean())))
    mask = np.full((h, w, 4), 255, np.uint8)
    for q in np.round(np.clip(uv, -4 * w, 4 * w) * 4).astype(np.int32):
        cv2.fillConvexPoly(mask, q, (k, k, k, 255), cv2.LINE_8, 2)
    cv2.multiply(img, mask, img, scale=1 / 255)


def lamp_items(r, lamps: Boxes, r_wc, c) -> list:
    """Painter items of lamps (vehicle lights, street lamps); emissive (their own colour) at night."""
    d = lamps.xy - c[:2]
    dist = np.hypot(d[:, 0], d[:, 1])
    fwd = r_wc[2, :2]
    keep = np.nonzero((dist < (90.0 if r.lt.night else 40.0)) & (d @ fwd > 0))[0]  # small: only near ones show
    if not len(keep):
        return []
    if not r.lt.night:
        return r._box_faces(lamps, keep, r_wc, c, dist[keep])
    key = lamps.color[keep].astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    out = []
    for k in np.unique(key):
        part = keep[key == k]
        items = r._box_faces(lamps, part, r_wc, c, dist[part])
        rgb = lamps.color[part[0]]
        col = (int(rgb[0]), int(rgb[1]), int(rgb[2]), int(lamps.tag[part[0]]))
        out += [(it[0], it[1], col) for it in items]
    return out


def hood(img: np.ndarray, look: Look, lt) -> None:
    """The ego's bonnet across the bottom of the image (tagged Car, as CARLA tags the ego)."""
    if look.hood <= 0.01:
        return
    h, w = img.shape[:2]
    top = int(h * (1 - look.hood))
    xs = np.linspace(0, w, 24)
    ys = top + (h - top) * 0.6 * ((xs - w / 2) / (w / 2)) ** 2
    poly = np.concatenate([np.stack([xs, ys], 1), [[w, h], [0, h]]]).astype(np.int32)
    shade = 0.35 if lt.night else 1.0
    col = np.array([42, 44, 48.0]) * shade * lt.light.mean() / max(lt.light.max(), 1e-3)
    cv2.fillPoly(img, [poly], (int(col[0]), int(col[1]), int(col[2]), tags.CAR))


class CameraEffects:
    """Exposure and gamma (auto-exposure at night), vignetting, blur, sensor noise, JPEG, seeded."""

    def __init__(self, look: Look, h: int, w: int, seed: int, night: bool = False):
        self.look = look
        x = np.arange(256) / 255.0
        gain = look.exposure * (look.night_exposure if night else 1.0)
        self.tone = np.clip(255 * np.power(np.clip(x * gain, 0, 1), look.gamma), 0, 255).astype(np.uint8)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        vig = np.clip(1 - look.vignette * r2 / 2, 0, 1) * 255
        self.vig = cv2.merge([vig.astype(np.uint8)] * 3) if look.vignette > 0.01 else None
        self.noise = []
        if look.noise > 0.3:
            rng = np.random.default_rng([look.seed, seed, 37])
            for _ in range(4):
                n = rng.normal(0, look.noise, (h, w, 1)).repeat(3, 2) + rng.normal(0, look.noise * 0.3, (h, w, 3))
                self.noise.append((np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)))

    def __call__(self, rgb: np.ndarray, frame: int) -> np.ndarray:
        lk = self.look
        rgb = cv2.LUT(rgb, self.tone)
        if self.vig is not None:
            rgb = cv2.multiply(rgb, self.vig, scale=1 / 255)
        if lk.blur > 0.15:
            k = 3 if lk.blur < 0.8 else 5  # a small kernel: the blur is sub-pixel to 1.3 px
            rgb = cv2.GaussianBlur(rgb, (k, k), lk.blur)
        if self.noise:
            pos, neg = self.noise[frame % len(self.noise)]
            rgb = cv2.subtract(cv2.add(rgb, pos), neg)
        if lk.jpeg_quality > 0:
            ok, buf = cv2.imencode(
                ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, lk.jpeg_quality]
            )
            rgb = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return rgb
