"""Camera renderer: the ground raster through a homography, then boxes and spheres far to near.

Colour and tag are drawn together into one 4-channel image (R, G, B, tag), so every pixel's
label is the object that coloured it. Weather changes colours only (LUTs, fog, light, rain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sim import tags
from sim.camera import optical_to_vehicle, pixel_rays
from sim.embedded import raster as rmat
from sim.embedded import real_look, real_props
from sim.embedded.look import Look
from sim.embedded.props import Boxes, Scenery
from sim.types import CameraSpec, Weather

NEAR = 0.15
FAR = 160.0
MATERIAL_RGB = {
    rmat.GRASS: (86, 122, 66),
    rmat.ASPHALT: (92, 92, 96),
    rmat.WHITE: (228, 228, 222),
    rmat.YELLOW: (222, 184, 58),
    rmat.CONCRETE: (168, 163, 156),
    rmat.CURB: (196, 192, 186),
    rmat.DIRT: (118, 104, 86),
    rmat.PATCH: (72, 72, 76),
}
# Corner indices of the faces of a box: front(+x) back(-x) left(+y) right(-y) top.
FACES = np.array([[0, 3, 7, 4], [1, 5, 6, 2], [0, 4, 5, 1], [3, 2, 6, 7], [4, 5, 6, 7]])
_CORNERS = np.array(
    [[1, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0], [1, 1, 1], [-1, 1, 1], [-1, -1, 1], [1, -1, 1]], float
)


@dataclass
class Lighting:
    """What a weather does to colours (derived once per weather and camera)."""

    light: np.ndarray  # (3,) multiplier of sunlit colours
    ambient: float
    sun: np.ndarray  # (3,) unit vector towards the sun (world)
    fog_k: float  # extinction per metre
    fog_rgb: np.ndarray  # (3,)
    wet: float
    rain: float
    night: bool


def lighting(w: Weather) -> Lighting:
    alt = math.radians(max(w.sun_altitude_angle, -10.0))
    az = math.radians(w.sun_azimuth_angle if w.sun_azimuth_angle >= 0 else 135.0)
    sun = np.array([math.cos(alt) * math.cos(az), math.cos(alt) * math.sin(az), math.sin(alt)])
    cloud = w.cloudiness / 100.0
    night = w.is_night
    if night:
        light, ambient = np.array([0.55, 0.6, 0.75]) * 0.22, 0.22
        fog_rgb = np.array([12.0, 14.0, 22.0])
    elif w.sun_altitude_angle < 25:
        light, ambient = np.array([1.05, 0.86, 0.68]) * (0.85 - 0.25 * cloud), 0.55
        fog_rgb = np.array([205.0, 165.0, 130.0]) * (1 - 0.3 * cloud)
    else:
        light, ambient = np.array([1.0, 1.0, 1.0]) * (1.0 - 0.3 * cloud), 0.6
        fog_rgb = np.array([200.0, 208.0, 218.0]) * (1 - 0.25 * cloud)
    if w.dust_storm > 0:
        fog_rgb = np.array([170.0, 135.0, 90.0])
    rain = w.precipitation / 100.0
    fog_k = 0.004 + 0.0009 * (w.fog_density if not night else w.fog_density * 0.2) + 0.012 * rain
    fog_k += 0.03 * w.dust_storm / 100.0
    wet = max(w.wetness, w.precipitation_deposits, w.precipitation) / 100.0
    return Lighting(light, ambient, sun, fog_k, fog_rgb, wet, rain, night)


def material_lut(lt: Lighting) -> np.ndarray:
    """256x3 uint8: material byte -> lit colour."""
    lut = np.zeros((256, 3), np.float32)
    for m, rgb in MATERIAL_RGB.items():
        base = np.array(rgb, np.float32)
        if m in (rmat.ASPHALT, rmat.PATCH, rmat.CONCRETE, rmat.CURB, rmat.DIRT):
            base = base * (1 - 0.45 * lt.wet)
        elif m in (rmat.WHITE, rmat.YELLOW):
            base = base * (1 - 0.15 * lt.wet)
        for s in range(16):
            spread = 0.28 * (1 - 0.5 * lt.wet)
            lut[m * 16 + s] = (
                base
                * (1 - spread / 2 + spread * s / 15)
                * lt.light
                / max(lt.light.mean(), 1e-3)
                * (lt.light.mean() * 0.75 + lt.ambient * 0.35)
            )
    return np.clip(lut, 0, 255).astype(np.uint8)


class CameraRenderer:
    """Renders one CameraSpec; precomputes everything that depends only on the mounting."""

    def __init__(self, spec: CameraSpec, ground: rmat.GroundRaster, seed: int = 0, look: Look | None = None):
        self.look = look  # None: the default look (the frames the determinism goldens hold)
        self.spec = spec
        self.ground = ground
        self.K = spec.intrinsics()
        self.f = spec.focal
        w, h = spec.width, spec.height
        pitch = math.radians(spec.pitch_deg)
        cy = h / 2.0
        horizon = cy + self.f * math.tan(pitch)  # pitch < 0 puts the horizon above centre
        self.v0 = int(min(max(math.floor(horizon) + 2, 0), h))
        self._seed = seed
        self._optical = optical_to_vehicle(spec.pitch_deg)
        # Ground homography factors that do not move: raster <- world, and the image row offset.
        self._w2px = ground.world_to_px()
        self._shift = np.array([[1, 0, 0], [0, 1, self.v0], [0, 0, 1.0]])
        self._weather_key: tuple | None = None
        # Ground points of every ground pixel in the camera's body frame (fixed to the car).
        vv, uu = np.mgrid[self.v0 : h, 0:w].astype(np.float64) + 0.5
        rays = pixel_rays(uu, vv, w, h, self.f)
        rb = optical_to_vehicle(spec.pitch_deg) @ rays.reshape(-1, 3).T  # body frame x fwd, y left, z up
        t = np.where(rb[2] < -1e-6, -spec.z / np.minimum(rb[2], -1e-6), 1e4)
        gx = (rb[0] * t).reshape(uu.shape)
        gy = (rb[1] * t).reshape(uu.shape)
        self.ground_dist = np.hypot(gx, gy).astype(np.float32)
        self.ground_x, self.ground_y = gx.astype(np.float32), gy.astype(np.float32)

    def pose(self, x: float, y: float, yaw: float) -> tuple[np.ndarray, np.ndarray]:
        """(R world->optical, camera centre in world) for an ego pose."""
        s = self.spec
        yaw_c = yaw + math.radians(s.yaw_deg)
        cz, sz = math.cos(yaw), math.sin(yaw)
        cx_ = x + cz * s.x - sz * s.y
        cy_ = y + sz * s.x + cz * s.y
        c2, s2 = math.cos(yaw_c), math.sin(yaw_c)
        rz = np.array([[c2, -s2, 0], [s2, c2, 0], [0, 0, 1.0]])
        r_cw = rz @ self._optical  # optical -> world
        return r_cw.T, np.array([cx_, cy_, s.z])

    def _set_weather(self, w: Weather) -> None:
        key = (w,)
        if key == self._weather_key:
            return
        self._weather_key = key
        lt = self.lt = lighting(w)
        self.lut = material_lut(lt) if self.look is None else real_look.material_lut(lt, self.look, w.cloudiness)
        h, wd = self.spec.height, self.spec.width
        # Sky: gradient plus soft clouds, tag Sky; rows between horizon and ground are haze.
        rng = np.random.default_rng(self._seed + 7)
        rows = np.linspace(0, 1, max(self.v0, 1))[:, None, None]
        if lt.night:
            top, bottom = np.array([5, 7, 16.0]), np.array([18, 20, 34.0])
        elif w.sun_altitude_angle < 25:
            top, bottom = np.array([70, 100, 160.0]), np.array([245, 170, 110.0])
        else:
            top, bottom = np.array([70, 130, 205.0]), np.array([185, 210, 235.0])
        cloud = w.cloudiness / 100.0
        grey = np.array([150, 152, 158.0]) * (0.25 if lt.night else 1.0) * (1 - 0.25 * lt.rain)
        sky = (top * (1 - rows) + bottom * rows) * (1 - 0.8 * cloud) + grey * 0.8 * cloud
        noise = cv2.resize(rng.uniform(0, 1, (6, 12)).astype(np.float32), (wd, max(self.v0, 1)))
        sky = sky + (noise[..., None] - 0.5) * 40 * (0.3 + cloud) * (0.2 if lt.night else 1)
        sky = sky * (1 - rows * 0) + 0
        sky = np.clip(sky * 1.0, 0, 255)
        bg = np.zeros((h, wd, 4), np.uint8)
        bg[: self.v0, :, :3] = np.broadcast_to(sky, (self.v0, wd, 3)).astype(np.uint8)
        bg[: self.v0, :, 3] = tags.SKY
        if self.look is not None:
            real_look.horizon(bg, self.v0, self.look, lt, self._seed)
            self.post = real_look.CameraEffects(self.look, h, wd, self._seed, lt.night)
        self.background = bg
        # Ground: per-pixel fog and light (headlights at night), quantised into lighting classes
        # so that a frame's ground colour is one table look-up of (class, material byte).
        fog = 1.0 - np.exp(-lt.fog_k * np.minimum(self.ground_dist, 400.0))
        gain = np.ones_like(fog)
        if lt.night:
            ang = np.abs(np.arctan2(self.ground_y, np.maximum(self.ground_x, 0.1)))
            spread = 0.45 + 0.9 * np.exp(-np.maximum(self.ground_x, 0) / 6.0)  # wide near the car
            beam = np.exp(-np.maximum(self.ground_x, 0) / 22.0) * np.clip(1.2 - ang / spread, 0, 1)
            gain = 0.45 + 3.2 * beam * (self.ground_x > 0)
        n_f, n_g = 32, (24 if lt.night else 1)
        fi = np.minimum((fog * n_f).astype(np.int32), n_f - 1)
        gmax = float(gain.max())
        gi = np.minimum((gain / gmax * n_g).astype(np.int32), n_g - 1) if n_g > 1 else np.zeros_like(fi)
        self.g_index = ((gi * n_f + fi) * 256).astype(np.int32)
        fog_c = (np.arange(n_f) + 0.5) / n_f
        gain_c = (np.arange(n_g) + 0.5) / n_g * gmax if n_g > 1 else np.ones(1)
        lut = self.lut.astype(np.float32)[None, None]  # (1, 1, 256, 3)
        table = lut * gain_c[:, None, None, None] * (1 - fog_c)[None, :, None, None] + (
            fog_c[None, :, None, None] * lt.fog_rgb[None, None, None, :]
        )
        rgb = np.clip(table, 0, 255).astype(np.uint8).reshape(-1, 3)
        # (R, G, B, tag) of each (class, material byte) packed in one uint32: a frame's ground is
        # then one gather straight into the 4-channel image, seen as uint32 pixels.
        tag = np.tile(rmat.TAG_OF_BYTE, len(rgb) // 256)[:, None]
        self.g_table = np.ascontiguousarray(np.concatenate([rgb, tag], 1)).view(np.uint32)[:, 0]
        self._g_idx = np.empty(self.g_index.shape, np.int32)
        # Rain streaks: a few precomputed layers, one per frame in turn.
        self.rain_layers = []
        if lt.rain > 0:
            for k in range(4):
                layer = np.zeros((h, wd), np.uint8)
                r2 = np.random.default_rng(self._seed + 100 + k)
                for _ in range(int(60 * lt.rain * wd * h / 51200)):
                    x0, y0 = r2.integers(0, wd), r2.integers(0, h)
                    ln = int(r2.integers(4, 12))
                    cv2.line(layer, (int(x0), int(y0)), (int(x0 + ln * 0.25), int(y0 + ln)), 60, 1)
                self.rain_layers.append(cv2.merge([layer, layer, layer]))

    def render(
        self, x: float, y: float, yaw: float, scenery: Scenery, dynamic: Boxes, weather: Weather, frame: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """RGB (HxWx3 uint8) and tag ids (HxW uint8) seen from the ego pose."""
        self._set_weather(weather)
        r_wc, c = self.pose(x, y, yaw)
        img = np.empty_like(self.background)
        img[: self.v0] = self.background[: self.v0]  # _ground writes every row below
        self._ground(img, r_wc, c)
        lamps = None
        if self.look is not None:
            dynamic, lamps = real_props.detail_vehicles(dynamic, self.look, self.lt.night)
            if self.lt.night and scenery.lamps is not None:
                lamps = real_props.concat(lamps, scenery.lamps)
            real_look.vehicle_shadows(img, dynamic, r_wc, c, self.f, self.v0, self.lt)
        self._objects(img, r_wc, c, scenery, dynamic, lamps)
        if self.look is not None:
            real_look.hood(img, self.look, self.lt)
        rgb = cv2.cvtColor(img, cv2.COLOR_RGBA2RGB)  # OpenCV splits channels far faster than numpy
        if self.rain_layers:
            rgb = cv2.add(rgb, self.rain_layers[frame % len(self.rain_layers)])
        if self.look is not None:
            rgb = self.post(rgb, frame)
        return rgb, cv2.extractChannel(img, 3)

    def _ground(self, img: np.ndarray, r_wc: np.ndarray, c: np.ndarray) -> None:
        h, w = self.spec.height, self.spec.width
        if self.v0 >= h:
            return
        t = -r_wc @ c
        h_wi = self.K @ np.column_stack([r_wc[:, 0], r_wc[:, 1], t])  # world ground -> image
        m = self._w2px @ np.linalg.inv(h_wi) @ self._shift
        border = (tags.TERRAIN, rmat.GRASS * 16 + 8, 0, 0)
        # Warp both raster channels, not the material alone: OpenCV 5 samples 1-channel images
        # with other (float) coordinate kernels, which would move some pixels.
        out = cv2.warpPerspective(
            self.ground.data,
            m,
            (w, h - self.v0),
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=border,
        )
        # The tag comes from the material byte (raster.TAG_OF_BYTE); out[..., 0] equals it.
        np.add(self.g_index, out[..., 1], out=self._g_idx)
        np.take(self.g_table, self._g_idx, out=img.view(np.uint32)[self.v0 :, :, 0], mode="clip")

    def _objects(self, img, r_wc, c, scenery: Scenery, dynamic: Boxes, lamps: Boxes | None = None) -> None:
        items: list[tuple] = []  # (depth, polygon int32 (k, 2) or circle, colour + tag)
        fwd = r_wc[2, :2]
        for boxes in (scenery.boxes, dynamic):
            if len(boxes.yaw) == 0:
                continue
            d = boxes.xy - c[:2]
            dist = np.hypot(d[:, 0], d[:, 1])
            reach = np.hypot(boxes.size[:, 0], boxes.size[:, 1]) / 2
            big = np.maximum(boxes.size.max(1), 0.3)
            keep = np.nonzero(
                (dist < FAR + reach) & (d @ fwd > -reach - 1.0) & (big * self.f > 0.6 * np.maximum(dist - reach, 0.1))
            )[0]
            if len(keep):
                items += self._box_faces(boxes, keep, r_wc, c, dist[keep])
        sph = scenery.spheres
        if len(sph.radius):
            items += self._spheres(sph, r_wc, c)
        if lamps is not None and len(lamps.yaw):
            items += real_look.lamp_items(self, lamps, r_wc, c)
        items.sort(key=lambda it: -it[0])
        for _, poly, color in items:
            if poly.ndim == 2:
                cv2.fillConvexPoly(img, poly, color, cv2.LINE_8, 2)
            else:
                cv2.circle(img, (int(poly[0]), int(poly[1])), int(poly[2]), color, -1, cv2.LINE_8, 2)

    def _colors(self, base: np.ndarray, dist: np.ndarray, tag: np.ndarray) -> list:
        """Lit, fogged colours (rows of base) with their tag as a 4th channel, as int tuples."""
        lt = self.lt
        rgb = base * lt.light
        if lt.night:
            rgb = rgb * (1.0 + 2.5 * np.exp(-dist / 18.0))[..., None]
        fog = (1.0 - np.exp(-lt.fog_k * dist))[..., None]
        rgb = np.clip(rgb * (1 - fog) + lt.fog_rgb * fog, 0, 255).astype(np.int32)
        out = np.concatenate([rgb, tag[..., None].astype(np.int32)], -1)
        return [tuple(row) for row in out.tolist()]

    def _spheres(self, sph, r_wc, c) -> list:
        w, h = self.spec.width, self.spec.height
        d = sph.center - c
        dist = np.linalg.norm(d, axis=1)
        pc = d @ r_wc.T
        z = np.maximum(pc[:, 2], NEAR)
        u = self.f * pc[:, 0] / z + w / 2
        v = self.f * pc[:, 1] / z + h / 2
        rp = self.f * sph.radius / z
        keep = np.nonzero(
            (dist < FAR)
            & (pc[:, 2] > NEAR + sph.radius)
            & (rp > 0.4)
            & (u + rp > 0)
            & (u - rp < w)
            & (v + rp > 0)
            & (v - rp < h)
        )[0]
        if not len(keep):
            return []
        base = sph.color[keep].astype(float) * (0.85 + 0.15 * self.lt.ambient)
        cols = self._colors(base, dist[keep], sph.tag[keep])
        circ = np.round(np.stack([u[keep], v[keep], np.maximum(rp[keep], 1.0)], 1) * 4)
        return [(float(dist[i]), circ[j], cols[j]) for j, i in enumerate(keep)]

    def _box_faces(self, boxes: Boxes, idx: np.ndarray, r_wc, c, dist) -> list:
        w, h = self.spec.width, self.spec.height
        world_all, normals_all, centers_all = boxes.geometry()
        world, normals, centers = world_all[idx], normals_all[idx], centers_all[idx]
        cam = (world - c) @ r_wc.T  # (M, 8, 3)
        zc = cam[..., 2]
        front = (zc > NEAR).all(1)
        uv = cam[..., :2] / np.maximum(zc, NEAR)[..., None] * self.f + (w / 2, h / 2)
        onscreen = ~front | (
            (uv[..., 0].max(1) > 0) & (uv[..., 0].min(1) < w) & (uv[..., 1].max(1) > 0) & (uv[..., 1].min(1) < h)
        )
        onscreen &= (zc > NEAR).any(1)
        visible = (((c - centers) * normals).sum(-1) > 0) & onscreen[:, None]
        ks, fs = np.nonzero(visible)
        if not len(ks):
            return []
        lt = self.lt
        shade = lt.ambient + (1 - lt.ambient) * np.clip((normals[ks, fs] @ lt.sun), 0, 1)
        shade = np.where(fs == 4, np.maximum(shade, 0.9), shade)
        base = boxes.color[idx[ks]].astype(float) * shade[:, None]
        cols = self._colors(base, dist[ks], boxes.tag[idx[ks]])
        pix = np.round(np.clip(uv, -8 * w, 8 * w) * 4).astype(np.int32)
        # Every visible face's corners in one gather; only faces crossing the near plane loop.
        quads = pix[ks[:, None], FACES[fs]]  # (n, 4, 2)
        crossing = np.nonzero(~front[ks])[0].tolist()
        out = list(zip(dist[ks].tolist(), quads, cols, strict=True))
        for j in crossing:
            q = _clip_near(cam[ks[j], FACES[fs[j]]])
            if len(q) < 3:
                out[j] = None
                continue
            quv = q[:, :2] / q[:, 2:3] * self.f + (w / 2, h / 2)
            out[j] = (out[j][0], np.round(np.clip(quv, -8 * w, 8 * w) * 4).astype(np.int32), cols[j])
        return [it for it in out if it is not None] if crossing else out


def _clip_near(poly: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a camera-space polygon against z = NEAR."""
    out = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        ina, inb = a[2] > NEAR, b[2] > NEAR
        if ina:
            out.append(a)
        if ina != inb:
            t = (NEAR - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out) if out else np.zeros((0, 3))
