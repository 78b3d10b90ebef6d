"""Procedural stand-ins for CARLA's towns: each name fixes a recipe, the seed the details.

These are not CARLA's maps: `Town03` here means "a mid-size town with 4-lane avenues,
curves, T and X junctions", built the same way every time from the name and seed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TownRecipe:
    kind: str  # "grid" or "loop"
    nx: int = 4
    ny: int = 4
    spacing: float = 100.0
    jitter: float = 0.08  # node jitter as a fraction of spacing
    drop_edges: float = 0.15  # fraction of grid edges removed (T junctions)
    lanes: tuple[int, ...] = (1, 2)  # lanes per direction, chosen per road
    lane_width: float = 3.5
    bend: float = 0.0  # max lateral bend of a road, metres
    sidewalk: float = 3.0
    building_height: tuple[float, float] = (6.0, 20.0)
    building_density: float = 0.8
    tree_every: float = 18.0
    radius: float = 260.0  # loop towns
    resolution: float = 0.05  # ground raster metres per pixel
    edge_lines: bool = True


TOWNS: dict[str, TownRecipe] = {
    "Town01": TownRecipe("grid", nx=4, ny=3, spacing=90, lanes=(1,), bend=0.0, building_height=(5, 12), drop_edges=0.1),
    "Town02": TownRecipe("grid", nx=3, ny=3, spacing=75, lanes=(1,), bend=0.0, building_height=(5, 10), drop_edges=0.1),
    "Town03": TownRecipe(
        "grid", nx=4, ny=4, spacing=110, lanes=(1, 2, 2), bend=14.0, building_height=(6, 24), drop_edges=0.18
    ),
    "Town04": TownRecipe(
        "loop",
        lanes=(3,),
        lane_width=3.6,
        radius=260.0,
        sidewalk=0.0,
        building_density=0.15,
        tree_every=14.0,
        resolution=0.08,
    ),
    "Town05": TownRecipe(
        "grid", nx=4, ny=4, spacing=100, lanes=(2,), bend=0.0, building_height=(8, 30), drop_edges=0.12
    ),
    "Town10HD": TownRecipe(
        "grid",
        nx=4,
        ny=4,
        spacing=80,
        lanes=(1, 2),
        bend=6.0,
        building_height=(12, 45),
        building_density=1.0,
        drop_edges=0.15,
    ),
}


def town_names() -> tuple[str, ...]:
    return tuple(TOWNS)


def recipe(town: str) -> TownRecipe:
    """The recipe of a town name (CARLA's '_Opt' variants map to the same recipe)."""
    key = town[:-4] if town.endswith("_Opt") else town
    if key not in TOWNS:
        raise KeyError(town)
    return TOWNS[key]
