"""Episode settings and weather as they travel over the wire (rpc/EpisodeSettings.h, rpc/WeatherParameters.h)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from sim.types import PRESET_NAMES, Weather


class WorldError(RuntimeError):
    """An expected failure of a request (unknown actor, bad attribute): goes back as a CARLA error."""


WEATHER_FIELDS = (
    "cloudiness",
    "precipitation",
    "precipitation_deposits",
    "wind_intensity",
    "sun_azimuth_angle",
    "sun_altitude_angle",
    "fog_density",
    "fog_distance",
    "fog_falloff",
    "wetness",
    "scattering_intensity",
    "mie_scattering_scale",
    "rayleigh_scattering_scale",
    "dust_storm",
)
"""rpc/WeatherParameters.h's wire order."""


@dataclass
class Settings:
    synchronous_mode: bool = False
    no_rendering_mode: bool = False
    fixed_delta_seconds: float | None = None
    substepping: bool = True
    max_substep_delta_time: float = 0.01
    max_substeps: int = 10
    max_culling_distance: float = 0.0
    deterministic_ragdolls: bool = True
    tile_stream_distance: float = 3000.0
    actor_active_distance: float = 2000.0
    spectator_as_ego: bool = True

    def wire(self) -> list:
        dt = [False] if self.fixed_delta_seconds is None else [True, float(self.fixed_delta_seconds)]
        return [
            self.synchronous_mode,
            self.no_rendering_mode,
            dt,
            self.substepping,
            float(self.max_substep_delta_time),
            int(self.max_substeps),
            float(self.max_culling_distance),
            self.deterministic_ragdolls,
            float(self.tile_stream_distance),
            float(self.actor_active_distance),
            self.spectator_as_ego,
        ]

    @classmethod
    def from_wire(cls, v: list) -> Settings:
        if not isinstance(v, list) or len(v) < 6:
            raise WorldError("set_episode_settings: malformed settings")
        dt = v[2]
        fixed = float(dt[1]) if isinstance(dt, list) and len(dt) == 2 and dt[0] else None
        if fixed is not None and not (fixed > 0 and math.isfinite(fixed)):
            raise WorldError(f"set_episode_settings: fixed_delta_seconds must be > 0, got {fixed}")
        base = cls()
        rest = list(v[6:11]) + [None] * (11 - len(v))
        return cls(
            bool(v[0]),
            bool(v[1]),
            fixed,
            bool(v[3]),
            float(v[4]),
            int(v[5]),
            *(
                x if x is not None else getattr(base, f)
                for x, f in zip(
                    rest[:5],
                    (
                        "max_culling_distance",
                        "deterministic_ragdolls",
                        "tile_stream_distance",
                        "actor_active_distance",
                        "spectator_as_ego",
                    ),
                    strict=True,
                )
            ),
        )


def weather_from_wire(v: list) -> Weather:
    if not isinstance(v, list) or len(v) < len(WEATHER_FIELDS):
        raise WorldError("set_weather_parameters: expected 14 numbers")
    # The client sends float32: its shortest decimal is the value the script wrote (0.1, not
    # 0.10000000149), so a preset arrives as exactly the preset and renders as the embedded one.
    values = {k: float(str(np.float32(x))) for k, x in zip(WEATHER_FIELDS, v, strict=False)}
    w = Weather(**values, name="Custom")
    for name in PRESET_NAMES:
        if name != "Default" and replace(Weather.preset(name), name="Custom") == w:
            return replace(w, name=name)
    return w


def weather_to_wire(w: Weather) -> list:
    return [float(getattr(w, k)) for k in WEATHER_FIELDS]
