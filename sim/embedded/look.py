"""The look of the embedded world: `default` (clean procedural) or `real` (roads as cameras see them).

A `Look` holds every appearance knob of one episode: road and paint colours, marking wear,
seams, cracks, tyre tracks, shadows, roadside barriers, vehicle detail, horizon silhouettes,
camera mounting and camera effects. With `randomize` the knobs are drawn from the episode
seed (domain randomization), so a model cannot learn one fixed look; `Look.record()` is what
a dataset stores per frame to say how it was made. The look changes colours only: every
label stays the object (or paint) that coloured the pixel.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from sim.types import CameraSpec

LOOKS = ("default", "real")


@dataclass(frozen=True)
class Look:
    """Appearance knobs of one episode (the `real` look; `default` renders without one)."""

    name: str = "real"
    seed: int = 0
    asphalt_rgb: tuple[float, float, float] = (88.0, 88.0, 92.0)
    asphalt_texture: float = 0.55  # relative brightness spread of the road's grain
    white_rgb: tuple[float, float, float] = (210.0, 210.0, 204.0)
    yellow_rgb: tuple[float, float, float] = (206.0, 170.0, 62.0)
    paint_contrast: float = 0.8  # 1 = fresh paint, 0 = the colour of the road
    paint_wear: float = 0.25  # share of paint worn off (the label follows the paint left)
    dash_m: float = 3.0  # dash length of broken lines [m] (US 3 m / 12 m period, EU 3-6 m / 9-18 m)
    dash_period_m: float = 9.0  # (the defaults are the towns' own pattern: no repaint)
    paint_width_k: float = 1.0  # marking widths times this (0.10-0.30 m lines)
    seams: float = 1.0  # tar seams and crack density (x per 100 m of road)
    tracks: float = 0.5  # tyre-track polish contrast, 0..1
    shadows: float = 1.0  # 0 = none; shadows of trees, poles and buildings across the road
    sun_azimuth_deg: float = 135.0
    barriers: float = 0.6  # share of road sides with a guard rail or concrete barrier
    horizon: str = "hills"  # hills | skyline | trees
    exposure: float = 1.0
    gamma: float = 1.0
    noise: float = 3.0  # sensor noise sigma [grey levels]
    blur: float = 0.6  # Gaussian blur sigma [px] (0 = sharp)
    vignette: float = 0.25
    jpeg_quality: int = 70  # 0 = no JPEG round trip
    night_exposure: float = 2.2  # auto-exposure gain of a camera at night
    hood: float = 0.0  # share of the image height the ego's bonnet covers at the bottom (0 = none)
    traffic: float = 1.0  # multiplier of the scenario's traffic vehicles
    cam_fov_deg: float = 90.0
    cam_pitch_deg: float = -10.0
    cam_z: float = 1.6
    cam_yaw_deg: float = 0.0

    def record(self) -> dict:
        """The knobs as plain JSON-able values (a dataset index stores them per frame)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def camera(self, spec: CameraSpec) -> CameraSpec:
        """`spec` with this look's mounting and intrinsics (image size kept)."""
        return replace(
            spec, fov_deg=self.cam_fov_deg, pitch_deg=self.cam_pitch_deg, z=self.cam_z, yaw_deg=self.cam_yaw_deg
        )


def make_look(name: str, seed: int, randomize: bool, spec: CameraSpec) -> Look | None:
    """The look of an episode: None for `default` (the renderer's clean path, bit for bit the
    old frames), the fixed `real` look, or with `randomize` a draw seeded by `seed`."""
    if name not in LOOKS:
        raise ValueError(f"unknown look {name!r} (choose one of: {', '.join(LOOKS)})")
    if name == "default" and not randomize:
        return None
    base = Look(
        seed=int(seed), cam_fov_deg=spec.fov_deg, cam_pitch_deg=spec.pitch_deg, cam_z=spec.z, cam_yaw_deg=spec.yaw_deg
    )
    if not randomize:
        return base
    rng = np.random.default_rng([int(seed), 19])
    u = rng.uniform
    grey = u(55, 175)  # dark asphalt to pale concrete
    tint = u(-5, 5, 3)
    fov = u(48, 95)
    f = spec.width / (2 * math.tan(math.radians(fov) / 2))
    horizon_frac = u(0.26, 0.48)  # where the horizon lies, as real dash-cam frames have it
    pitch = -math.degrees(math.atan((0.5 - horizon_frac) * spec.height / f))
    white = u(170, 240)
    return replace(
        base,
        asphalt_rgb=tuple(float(v) for v in np.clip(grey + tint, 30, 170)),
        asphalt_texture=float(u(0.25, 0.9)),
        white_rgb=(white, white, white - u(0, 14)),
        yellow_rgb=(u(180, 235), u(140, 190), u(30, 90)),
        paint_contrast=float(u(0.35, 1.0)),
        paint_wear=float(u(0.0, 0.55)),
        **_dashes(rng),
        paint_width_k=float(u(0.7, 1.6)),
        seams=float(u(0.0, 2.5)),
        tracks=float(u(0.0, 1.0)),
        shadows=float(u(0.0, 1.0)),
        sun_azimuth_deg=float(u(0, 360)),
        barriers=float(u(0.1, 1.0)),
        horizon=str(rng.choice(["hills", "skyline", "trees"])),
        exposure=float(u(0.7, 1.35)),
        gamma=float(u(0.8, 1.25)),
        noise=float(u(0.0, 5.0)),
        blur=float(u(0.0, 1.3)),
        vignette=float(u(0.0, 0.45)),
        jpeg_quality=int(rng.choice([0, 40, 60, 80, 95])),
        night_exposure=float(u(1.6, 3.2)),
        hood=float(u(0.06, 0.2)) if rng.random() < 0.4 else 0.0,
        traffic=float(u(0.8, 2.5)),
        cam_fov_deg=float(fov),
        cam_pitch_deg=float(pitch),
        cam_z=float(u(1.25, 2.1)),
        cam_yaw_deg=float(u(-3, 3)),
    )


# Broken-line patterns (dash, period) [m]: US interstate 3/12, EU motorway 6/18 and 4.5/13.5,
# EU urban 3/9 and 3/6, long-gap rural 3/15.
DASH_PATTERNS = ((3.0, 12.0), (6.0, 18.0), (4.5, 13.5), (3.0, 9.0), (3.0, 6.0), (3.0, 15.0))


def _dashes(rng: np.random.Generator) -> dict:
    d, p = DASH_PATTERNS[int(rng.integers(len(DASH_PATTERNS)))]
    return {"dash_m": d, "dash_period_m": p}
