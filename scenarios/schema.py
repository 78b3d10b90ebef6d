"""Scenario schema: TOML validated into a frozen dataclass; unknown keys are errors."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sim.types import PRESET_NAMES, CameraSpec, Weather

HERE = Path(__file__).resolve().parent


class ScenarioError(ValueError):
    """A scenario file or value that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Scenario:
    """One episode's setting. A scenario plus a seed fixes every frame of the episode."""

    name: str = "default"
    town: str = "Town03"
    map: str | None = None  # an OpenDRIVE file (.xodr): the road network instead of the town's
    seed: int = 0
    dt: float = 0.05
    frames: int | None = 600
    metres: float | None = None
    weathers: tuple[Weather, ...] = (Weather.preset("ClearNoon"),)
    weather_every: int = 200
    npc_vehicles: int = 12
    npc_walkers: int = 0
    target_speed: float = 8.0
    ego_spawn: int | None = None
    cameras: tuple[CameraSpec, ...] = (CameraSpec(),)
    look: str = "default"  # embedded renderer: "default" (clean) or "real" (sim/embedded/look.py)
    randomize: bool = False  # draw the look's knobs and the camera mounting from the seed
    description: str = ""
    source: str = field(default="", compare=False)

    @property
    def place(self) -> str:
        """What the episode drives on, for names and logs: the map file's name, else the town."""
        return Path(self.map).name if self.map else self.town

    def weather_at(self, frame: int) -> Weather:
        """The weather in force at a frame (a list of weathers cycles every `weather_every`)."""
        return self.weathers[(frame // max(self.weather_every, 1)) % len(self.weathers)]

    def is_done(self, frame: int, distance: float) -> bool:
        """True when the episode's duration (frames or metres) is reached."""
        if self.frames is not None and frame >= self.frames:
            return True
        return self.metres is not None and distance >= self.metres


_TOP_KEYS = {
    "name": str,
    "town": str,
    "map": str,
    "seed": int,
    "dt": float,
    "frames": int,
    "metres": float,
    "weather": object,
    "weather_every": int,
    "npc_vehicles": int,
    "npc_walkers": int,
    "target_speed": float,
    "ego": dict,
    "camera": list,
    "look": str,
    "randomize": bool,
    "description": str,
}
_EGO_KEYS = {"spawn": (int, str)}
_CAMERA_KEYS = {f.name: f.type for f in fields(CameraSpec)}


def _fail(where: str, msg: str) -> ScenarioError:
    return ScenarioError(f"{where}: {msg}")


def _check_type(where: str, key: str, value: Any, typ: Any) -> Any:
    if typ is object:
        return value
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    types = typ if isinstance(typ, tuple) else (typ,)
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        raise _fail(where, f"key {key!r} must be {names}, got {type(value).__name__} {value!r}")
    return value


def _weathers(where: str, value: Any) -> tuple[Weather, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise _fail(where, "key 'weather' is an empty list (give a preset name or a list of them)")
    out = []
    for item in items:
        if isinstance(item, str):
            if item not in PRESET_NAMES:
                raise _fail(where, f"key 'weather': unknown preset {item!r} (allowed: {', '.join(PRESET_NAMES)})")
            out.append(Weather.preset(item))
        elif isinstance(item, dict):
            params = dict(item)
            name = str(params.pop("name", "Custom"))
            try:
                out.append(Weather.from_params(params, name=name))
            except (ValueError, TypeError) as e:
                raise _fail(where, f"key 'weather': {e}") from None
        else:
            raise _fail(where, f"key 'weather' must be a preset name, a table or a list, got {item!r}")
    return tuple(out)


def _camera(where: str, table: Any, index: int) -> CameraSpec:
    if not isinstance(table, dict):
        raise _fail(where, f"[[camera]] #{index} must be a table")
    kwargs = {}
    for key, value in table.items():
        if key not in _CAMERA_KEYS:
            raise _fail(where, f"unknown key 'camera.{key}' (allowed: {', '.join(_CAMERA_KEYS)})")
        typ = {"str": str, "int": int, "float": float}[_CAMERA_KEYS[key]]
        kwargs[key] = _check_type(where, f"camera.{key}", value, typ)
    try:
        return CameraSpec(**kwargs)
    except ValueError as e:
        raise _fail(where, str(e)) from None


def scenario_from_dict(data: dict, where: str = "scenario") -> Scenario:
    """Validate a parsed TOML table into a Scenario."""
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _TOP_KEYS:
            raise _fail(where, f"unknown key {key!r} (allowed: {', '.join(_TOP_KEYS)})")
        value = _check_type(where, key, value, _TOP_KEYS[key])
        if key == "weather":
            kwargs["weathers"] = _weathers(where, value)
        elif key == "ego":
            for ek, ev in value.items():
                if ek not in _EGO_KEYS:
                    raise _fail(where, f"unknown key 'ego.{ek}' (allowed: {', '.join(_EGO_KEYS)})")
                _check_type(where, f"ego.{ek}", ev, _EGO_KEYS[ek])
            spawn = value.get("spawn", "random")
            if isinstance(spawn, str) and spawn != "random":
                raise _fail(where, f"key 'ego.spawn' must be an index or \"random\", got {spawn!r}")
            kwargs["ego_spawn"] = None if spawn == "random" else spawn
        elif key == "camera":
            cams = tuple(_camera(where, t, i) for i, t in enumerate(value))
            if not cams:
                raise _fail(where, "key 'camera' is empty (give at least one [[camera]] table)")
            if len({c.name for c in cams}) != len(cams):
                raise _fail(where, "two [[camera]] tables share a name (names must be unique)")
            kwargs["cameras"] = cams
        else:
            kwargs[key] = value
    if "metres" in kwargs and "frames" not in kwargs:
        kwargs["frames"] = None
    for key in ("frames", "npc_vehicles", "npc_walkers", "weather_every"):
        if kwargs.get(key) is not None and kwargs[key] < 0:
            raise _fail(where, f"key {key!r} must be >= 0, got {kwargs[key]}")
    if not 0.005 <= kwargs.get("dt", 0.05) <= 0.5:
        raise _fail(where, f"key 'dt' must be between 0.005 and 0.5 s, got {kwargs['dt']}")
    if "map" in kwargs and not kwargs["map"].strip():
        raise _fail(where, "key 'map' is empty (give the path of an OpenDRIVE .xodr file)")
    if kwargs.get("look", "default") not in ("default", "real"):
        raise _fail(where, f'key \'look\' must be "default" or "real", got {kwargs["look"]!r}')
    if kwargs.get("target_speed", 8.0) <= 0:
        raise _fail(where, "key 'target_speed' must be > 0 (metres per second)")
    return Scenario(**kwargs, source=where)


def list_scenarios() -> list[str]:
    """Names of the scenario files shipped in scenarios/."""
    return sorted(p.stem for p in HERE.glob("*.toml"))


def load_scenario(path_or_name: str | Path) -> Scenario:
    """Load a TOML file, or a shipped scenario by name (e.g. 'town03_clear')."""
    path = Path(path_or_name)
    if not path.exists() and path.suffix == "" and (HERE / f"{path.name}.toml").exists():
        path = HERE / f"{path.name}.toml"
    if not path.exists():
        raise ScenarioError(
            f"scenario {str(path_or_name)!r} not found (give a .toml path or one of: {', '.join(list_scenarios())})"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{path}: cannot read ({e})") from None
    data.setdefault("name", path.stem)
    if isinstance(data.get("map"), str) and not Path(data["map"]).is_absolute():
        beside = path.parent / data["map"]  # a map path is relative to the scenario file when it is there
        if beside.exists():
            data["map"] = str(beside)
    return scenario_from_dict(data, where=str(path))
