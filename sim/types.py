"""Plain data classes of the simulator contract (DESIGN.md "Contracts").

Units: metres, seconds, radians; our world frame is right-handed (x forward/east,
y left/north, z up). CARLA's left-handed frame is converted in the CARLA adapter only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np


@dataclass(frozen=True)
class CameraSpec:
    """A camera: image size, horizontal FOV and mounting on the ego (vehicle frame).

    `pitch_deg` follows CARLA: positive looks up, so a camera looking slightly down has a
    negative pitch. x/y/z are metres from the vehicle's centre on the ground.
    """

    name: str = "front"
    width: int = 320
    height: int = 160
    fov_deg: float = 90.0
    x: float = 0.4
    y: float = 0.0
    z: float = 1.6
    pitch_deg: float = -10.0
    yaw_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"camera {self.name!r}: size {self.width}x{self.height} too small (min 16x16)")
        if not 10.0 <= self.fov_deg <= 170.0:
            raise ValueError(f"camera {self.name!r}: fov_deg {self.fov_deg} outside 10..170")

    @property
    def focal(self) -> float:
        """Focal length in pixels (square pixels, FOV is horizontal as in CARLA)."""
        return self.width / (2.0 * math.tan(math.radians(self.fov_deg) / 2.0))

    def intrinsics(self) -> np.ndarray:
        """3x3 pinhole matrix K."""
        f = self.focal
        return np.array([[f, 0.0, self.width / 2.0], [0.0, f, self.height / 2.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Weather:
    """Weather with `carla.WeatherParameters` field names and ranges (angles in degrees)."""

    cloudiness: float = 5.0
    precipitation: float = 0.0
    precipitation_deposits: float = 0.0
    wind_intensity: float = 10.0
    sun_azimuth_angle: float = -1.0
    sun_altitude_angle: float = 45.0
    fog_density: float = 2.0
    fog_distance: float = 0.75
    wetness: float = 0.0
    fog_falloff: float = 0.1
    scattering_intensity: float = 1.0
    mie_scattering_scale: float = 0.03
    rayleigh_scattering_scale: float = 0.0331
    dust_storm: float = 0.0
    name: str = "Custom"

    @property
    def is_night(self) -> bool:
        return self.sun_altitude_angle < 0.0

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "name")

    @classmethod
    def preset(cls, name: str) -> Weather:
        """A CARLA 0.9.16 preset by name ('Default' is ClearNoon here)."""
        key = "ClearNoon" if name == "Default" else name
        try:
            values = _PRESETS[key]
        except KeyError:
            raise ValueError(f"unknown weather {name!r} (choose one of: {', '.join(PRESET_NAMES)})") from None
        return replace(cls(**values), name=name)

    @classmethod
    def from_params(cls, params: dict, name: str = "Custom") -> Weather:
        """Custom weather from WeatherParameters field names; unknown keys are errors."""
        unknown = sorted(set(params) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown weather parameter {unknown[0]!r} (allowed: {', '.join(cls.field_names())})")
        return replace(cls(), **{k: float(v) for k, v in params.items()}, name=name)


def _p(cloud, prec, dep, wind, alt, fog, wet, fog_dist=0.75, fall=0.1, dust=0.0) -> dict:
    vals = dict(
        cloudiness=cloud,
        precipitation=prec,
        precipitation_deposits=dep,
        wind_intensity=wind,
        sun_altitude_angle=alt,
        fog_density=fog,
        wetness=wet,
        fog_distance=fog_dist,
        fog_falloff=fall,
        dust_storm=dust,
    )
    return {k: float(v) for k, v in vals.items()}


# Values of carla.WeatherParameters presets in 0.9.16 (checked against the real module by a test).
_PRESETS: dict[str, dict] = {
    "ClearNoon": _p(5, 0, 0, 10, 45, 2, 0),
    "CloudyNoon": _p(60, 0, 0, 10, 45, 3, 0),
    "WetNoon": _p(5, 0, 50, 10, 45, 3, 0),
    "WetCloudyNoon": _p(60, 0, 50, 10, 45, 3, 0),
    "SoftRainNoon": _p(20, 30, 50, 30, 45, 3, 0),
    "MidRainyNoon": _p(60, 60, 60, 60, 45, 3, 0),
    "HardRainNoon": _p(100, 100, 90, 100, 45, 7, 0),
    "ClearSunset": _p(5, 0, 0, 10, 15, 2, 0),
    "CloudySunset": _p(60, 0, 0, 10, 15, 3, 0),
    "WetSunset": _p(5, 0, 50, 10, 15, 2, 0),
    "WetCloudySunset": _p(60, 0, 50, 10, 15, 2, 0),
    "SoftRainSunset": _p(20, 30, 50, 30, 15, 2, 0),
    "MidRainSunset": _p(60, 60, 60, 60, 15, 3, 0),
    "HardRainSunset": _p(100, 100, 90, 100, 15, 7, 0),
    "ClearNight": _p(5, 0, 0, 10, -90, 60, 0, 75.0, 1.0),
    "CloudyNight": _p(60, 0, 0, 10, -90, 60, 0),
    "WetNight": _p(5, 0, 50, 10, -90, 60, 60, 75.0, 1.0),
    "WetCloudyNight": _p(60, 0, 50, 10, -90, 60, 60),
    "SoftRainNight": _p(60, 30, 50, 30, -90, 60, 60),
    "MidRainyNight": _p(80, 60, 60, 60, -90, 60, 80),
    "HardRainNight": _p(100, 100, 90, 100, -90, 100, 100),
    "DustStorm": _p(100, 0, 0, 100, 45, 2, 0, dust=100.0),
}
PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS) + ("Default",)


@dataclass(frozen=True)
class Control:
    """Vehicle command, as `carla.VehicleControl`: throttle/brake 0..1, steer -1..1 (right +)."""

    throttle: float = 0.0
    steer: float = 0.0
    brake: float = 0.0
    hand_brake: bool = False
    reverse: bool = False

    def clipped(self) -> Control:
        return replace(
            self,
            throttle=min(max(self.throttle, 0.0), 1.0),
            steer=min(max(self.steer, -1.0), 1.0),
            brake=min(max(self.brake, 0.0), 1.0),
        )


@dataclass(frozen=True)
class EgoState:
    """Ego pose and motion; lane fields are None where the backend does not know them.

    `lateral_offset` is metres from the true lane centre, positive to the left;
    `heading_error` is the ego yaw minus the lane direction, radians, positive to the left.
    `in_junction` is True inside a junction, where lanes have no markings to keep to.
    `lead_distance` / `lead_speed` are what a forward radar gives an adaptive cruise control:
    the gap [m] to the vehicle (or the stop line of a junction that crossing traffic holds)
    ahead on the ego's lane, and that vehicle's speed; None where nothing is ahead or the
    backend does not know.
    """

    x: float
    y: float
    z: float
    yaw: float
    speed: float
    steer: float = 0.0
    lane_id: int | None = None
    lane_width: float | None = None
    lateral_offset: float | None = None
    heading_error: float | None = None
    distance: float = 0.0
    collision: bool = False
    in_junction: bool = False
    lead_distance: float | None = None
    lead_speed: float | None = None


@dataclass(frozen=True)
class CameraFrame:
    """One camera's output of one tick: RGB and a pixel-aligned label image of tag ids."""

    spec: CameraSpec
    rgb: np.ndarray  # HxWx3 uint8, RGB order
    labels: np.ndarray  # HxW uint8, CARLA tag ids

    @property
    def intrinsics(self) -> np.ndarray:
        return self.spec.intrinsics()


@dataclass(frozen=True)
class Observation:
    """Everything a backend returns per tick."""

    frame: int
    sim_time: float
    ego: EgoState
    cameras: dict[str, CameraFrame] = field(default_factory=dict)
    weather: str = ""
    town: str = ""

    @property
    def camera(self) -> CameraFrame:
        """The first (usually the only) camera."""
        return next(iter(self.cameras.values()))
