"""The loaded map as CARLA hands it out: a name, spawn points, and the OpenDRIVE text.

The client builds `carla.Map` (waypoints, topology) from the OpenDRIVE text itself, so the
text must describe the same roads the embedded world drives and renders: for a procedural town
it is our writer's export of that town, for `--map FILE.xodr` the file itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from sim.embedded.town import Town, load_town
from sim.embedded.towns import town_names
from sim.maps.export import export_town
from sim.maps.load import load_xodr_town

SPAWN_Z = 0.3
"""CARLA's spawn points float a little above the road; our ground is flat at z = 0."""


@dataclass
class MapData:
    name: str  # 'Town03', or the file's stem
    town: Town
    xodr: str
    spawn_points: list  # CARLA transforms [[x, y, z], [pitch, yaw, roll]]

    spawn_poses: list  # the same points in our frame, (x, y, yaw) exactly as the network gives them

    def exact_spawn(self, x: float, y: float, yaw: float) -> tuple[float, float, float] | None:
        """Our exact pose of the spawn point at (x, y, yaw) in our frame, if the pose is one.

        The client sends transforms as float32 (and yaw in degrees); snapping back to the network's
        pose makes a car spawned at `get_spawn_points()[k]` stand exactly where the embedded
        backend puts its ego.
        """
        for px, py, pyaw in self.spawn_poses:
            if (
                abs(px - x) < 1e-3
                and abs(py - y) < 1e-3
                and abs((pyaw - yaw + math.pi) % (2 * math.pi) - math.pi) < 1e-5
            ):
                return px, py, pyaw
        return None

    @property
    def carla_name(self) -> str:
        return f"Carla/Maps/{self.name}"


class MapError(ValueError):
    """An unknown town or an unreadable map file."""


def spawn_poses(town: Town) -> list[tuple[float, float, float]]:
    """The embedded network's spawn points, in its order, as (x, y, yaw) in our frame."""
    return [town.network.lanes[lane].path.pose(s) for lane, s in town.network.spawn_points]


def carla_spawn_points(poses: list) -> list:
    """Spawn poses as CARLA transforms (y and yaw flipped, degrees)."""
    return [[[x, -y, SPAWN_Z], [0.0, -math.degrees(yaw), 0.0]] for x, y, yaw in poses]


def _data(name: str, town: Town, xodr: str) -> MapData:
    poses = spawn_poses(town)
    return MapData(name, town, xodr, carla_spawn_points(poses), poses)


def load_map_data(town: str | None = None, xodr: str | Path | None = None) -> MapData:
    """The world of a procedural town name or of an OpenDRIVE file."""
    if xodr is not None:
        p = Path(xodr)
        if not p.is_file():
            raise MapError(f"map file {str(p)!r} not found (give an existing .xodr file)")
        from sim.maps.opendrive import OpenDriveError

        try:
            t = load_xodr_town(p)
        except OpenDriveError as e:
            raise MapError(str(e)) from None
        return _data(p.stem, t, p.read_text(encoding="utf-8"))
    name = town or "Town03"
    base = name[:-4] if name.endswith("_Opt") else name
    if base not in town_names():
        raise MapError(f"unknown town {name!r} (choose one of: {', '.join(town_names())})")
    t = load_town(base)
    return _data(base, t, export_town(base))
