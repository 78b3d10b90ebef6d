"""A town's static assets (network, ground raster, scenery), built once per name and cached."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sim.embedded.props import Scenery, build_scenery
from sim.embedded.raster import GroundRaster, paint_ground
from sim.embedded.roadnet import RoadNetwork, build_network
from sim.embedded.towns import TownRecipe, recipe


@dataclass
class Town:
    name: str
    recipe: TownRecipe
    network: RoadNetwork
    ground: GroundRaster
    scenery: Scenery
    lane_xy: np.ndarray  # all lane sample points, for nearest-lane queries
    lane_of_point: np.ndarray


@lru_cache(maxsize=3)
def load_town(name: str) -> Town:
    """The town of a name: the same map every time (seeded from the name, not the episode)."""
    r = recipe(name)
    base = name[:-4] if name.endswith("_Opt") else name
    seed = zlib.crc32(base.encode())
    net = build_network(r, np.random.default_rng(seed))
    scenery = build_scenery(net, r, np.random.default_rng(seed + 1))
    ground = paint_ground(
        net,
        r.resolution if r.kind == "loop" else 0.06,
        r.sidewalk,
        np.random.default_rng(seed + 2),
        scenery.footprints(),
    )
    xy, ids = net.lane_points()
    return Town(name, r, net, ground, scenery, xy, ids)
