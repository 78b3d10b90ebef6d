"""Route files: TOML validated into a frozen `Route`; every error is one line naming the file and key.

A route is where a driving benchmark episode goes (town or OpenDRIVE map, start, waypoints,
end or length), in what conditions (weather, traffic) and how fast (the speed limit of its
road type). `Route.scenario()` turns it into the simulator's `Scenario`.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenarios.schema import Scenario
from sim.types import PRESET_NAMES, Weather

ROAD_TYPES = ("urban", "rural", "highway")
#: Default speed limits by road type [km/h] (urban 30-50, highway 90-130 in the issue's words).
SPEED_LIMITS_KMH: dict[str, float] = {"urban": 50.0, "rural": 80.0, "highway": 100.0}


class RouteError(ValueError):
    """A route file or value that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Route:
    """One benchmark route; with a seed it fixes every frame an agent sees."""

    name: str
    town: str = "Town03"
    map: str | None = None
    seed: int = 0
    start: int = 0  # spawn point index of the town or map
    waypoints: tuple[tuple[float, float], ...] = ()
    end: tuple[float, float] | None = None
    length_m: float | None = None  # without `end`: drive this far along the planned route
    weathers: tuple[Weather, ...] = (Weather.preset("ClearNoon"),)
    weather_every: int = 600
    traffic: int = 10
    road: str = "urban"
    speed_limits_kmh: dict[str, float] = field(default_factory=lambda: dict(SPEED_LIMITS_KMH))
    description: str = ""
    source: str = ""

    @property
    def speed_limit_kmh(self) -> float:
        return float(self.speed_limits_kmh[self.road])

    @property
    def speed_limit(self) -> float:
        """The route's speed limit [m/s]: the lane keeper's cruise speed."""
        return self.speed_limit_kmh / 3.6

    def scenario(self) -> Scenario:
        """The simulator's episode setting: runs open-ended (the benchmark decides when it ends)."""
        return Scenario(
            name=self.name,
            town=self.town,
            map=self.map,
            seed=self.seed,
            frames=None,
            metres=None,
            weathers=self.weathers,
            weather_every=self.weather_every,
            npc_vehicles=self.traffic,
            target_speed=self.speed_limit,
            ego_spawn=self.start,
            description=self.description,
            source=self.source,
        )


_KEYS = {
    "name", "description", "town", "map", "seed", "start", "waypoints", "end", "length_m",
    "weather", "weather_every", "traffic", "road", "speed_limit_kmh",
}  # fmt: skip


def _point(where: str, key: str, value: Any) -> tuple[float, float]:
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )
    if not ok:
        raise RouteError(f"{where}: key {key!r} must be a point [x, y] in metres, got {value!r}")
    return float(value[0]), float(value[1])


def _int(where: str, key: str, value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise RouteError(f"{where}: key {key!r} must be an integer >= {low}, got {value!r}")
    return value


def _weathers(where: str, value: Any) -> tuple[Weather, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) for i in items):
        raise RouteError(f"{where}: key 'weather' must be a preset name or a list of them, got {value!r}")
    for item in items:
        if item not in PRESET_NAMES:
            raise RouteError(f"{where}: key 'weather': unknown preset {item!r} (allowed: {', '.join(PRESET_NAMES)})")
    return tuple(Weather.preset(i) for i in items)


def route_from_dict(data: dict[str, Any], where: str = "route") -> Route:
    """Validate a parsed TOML table into a Route (unknown keys are errors)."""
    kw: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _KEYS:
            raise RouteError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(_KEYS))})")
        if key in ("name", "description", "town", "map", "road"):
            if not isinstance(value, str) or not value.strip():
                raise RouteError(f"{where}: key {key!r} must be a non-empty string, got {value!r}")
            kw[key] = value
        elif key in ("seed", "start", "traffic"):
            kw[key] = _int(where, key, value)
        elif key == "weather_every":
            kw[key] = _int(where, key, value, low=1)
        elif key == "waypoints":
            if not isinstance(value, list):
                raise RouteError(f"{where}: key 'waypoints' must be a list of points [[x, y], ...], got {value!r}")
            kw[key] = tuple(_point(where, f"waypoints[{i}]", p) for i, p in enumerate(value))
        elif key == "end":
            kw[key] = _point(where, key, value)
        elif key == "length_m":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise RouteError(f"{where}: key 'length_m' must be a number > 0 (metres), got {value!r}")
            kw[key] = float(value)
        elif key == "weather":
            kw["weathers"] = _weathers(where, value)
        elif key == "speed_limit_kmh":
            if not isinstance(value, dict):
                raise RouteError(f"{where}: key 'speed_limit_kmh' must be a table like {{ urban = 50 }}")
            limits = dict(SPEED_LIMITS_KMH)
            for rt, kmh in value.items():
                if rt not in ROAD_TYPES:
                    raise RouteError(
                        f"{where}: key 'speed_limit_kmh.{rt}': unknown road type (allowed: {', '.join(ROAD_TYPES)})"
                    )
                if isinstance(kmh, bool) or not isinstance(kmh, (int, float)) or not 5 <= kmh <= 200:
                    raise RouteError(f"{where}: key 'speed_limit_kmh.{rt}' must be 5..200 km/h, got {kmh!r}")
                limits[rt] = float(kmh)
            kw["speed_limits_kmh"] = limits
    if "name" not in kw:
        raise RouteError(f"{where}: key 'name' is missing")
    if "town" in kw and "map" in kw:
        raise RouteError(f"{where}: keys 'town' and 'map' exclude each other (a procedural town or an OpenDRIVE file)")
    if kw.get("road", "urban") not in ROAD_TYPES:
        raise RouteError(f"{where}: key 'road': unknown road type {kw['road']!r} (allowed: {', '.join(ROAD_TYPES)})")
    if ("end" in kw) == ("length_m" in kw):
        raise RouteError(f"{where}: give exactly one of 'end' (a point [x, y]) and 'length_m' (metres)")
    return Route(**kw, source=where)


def load_route(path: str | Path) -> Route:
    """Read and validate one route file; a map path is taken relative to the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RouteError(f"{path}: route file not found (check the path)") from None
    except tomllib.TOMLDecodeError as e:
        raise RouteError(f"{path}: not valid TOML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RouteError(f"{path}: cannot read ({e})") from None
    data.setdefault("name", path.stem)
    if isinstance(data.get("map"), str) and not Path(data["map"]).is_absolute():
        beside = path.parent / data["map"]
        if beside.exists():
            data["map"] = str(beside)
    return route_from_dict(data, where=str(path))


def load_routes(where: str | Path) -> list[Route]:
    """Every *.toml of a folder (sorted by name), or one file; names must be unique."""
    where = Path(where)
    if where.is_dir():
        files = sorted(where.glob("*.toml"))
        if not files:
            raise RouteError(f"{where}: no route files (*.toml) in this folder")
    elif where.exists():
        files = [where]
    else:
        raise RouteError(f"{where}: no such route file or folder (try routes/)")
    routes = [load_route(f) for f in files]
    names = [r.name for r in routes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RouteError(f"{where}: route name {dup[0]!r} is used twice (names must be unique)")
    return routes


__all__ = ["ROAD_TYPES", "SPEED_LIMITS_KMH", "Route", "RouteError", "load_route", "load_routes", "route_from_dict"]
