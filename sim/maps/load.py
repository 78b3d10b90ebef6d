"""A Town from an .xodr file, built once and cached on disk by the file's sha256.

The build (parse, convert, paint, scenery) takes seconds for a CARLA town; the cache keeps
the network and scenery as a pickle and the ground raster as a .npy that is memory-mapped on
load, so a second start takes a fraction of a second. The cache lives in
``$LANELOOP_CACHE/maps`` (else ``$XDG_CACHE_HOME/laneloop/maps``, else ``~/.cache/laneloop/maps``);
entries are written to a temporary folder and renamed, so a crash never leaves half a map.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tempfile
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from sim.embedded.raster import GroundRaster
from sim.embedded.town import Town
from sim.embedded.towns import TownRecipe
from sim.maps.convert import MapData, build_map
from sim.maps.opendrive import OpenDriveError, parse
from sim.maps.paint import paint_map
from sim.maps.scenery import build_map_scenery

BUILD_VERSION = "5"  # bump when the conversion, painting or a pickled class (Path) changes
RESOLUTION = 0.08  # metres per ground raster cell (CARLA towns are 3-4x larger than ours)
XODR_RECIPE = TownRecipe("xodr", sidewalk=0.0)


def cache_dir() -> Path:
    if os.environ.get("LANELOOP_CACHE"):
        root = Path(os.environ["LANELOOP_CACHE"])
    elif os.environ.get("XDG_CACHE_HOME"):
        root = Path(os.environ["XDG_CACHE_HOME"]) / "laneloop"
    else:
        root = Path("~/.cache/laneloop")
    return root.expanduser() / "maps"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise OpenDriveError(f"{path}: cannot read ({e.strerror or e})") from None


def build_town(data: bytes, name: str, source: str, res: float = RESOLUTION) -> tuple[Town, MapData]:
    """Everything of a town from the bytes of a file (no cache)."""
    seed = zlib.crc32(data)
    md = build_map(parse(data, source))
    if not md.network.lanes:
        raise OpenDriveError(
            f"{source}: no loop of drivable lanes (every driving lane ends in a dead end: traffic needs lanes "
            "that lead on, through linked roads and junctions)"
        )
    ground = paint_map(md, res, np.random.default_rng([seed, 2]))
    scenery = build_map_scenery(md, ground, np.random.default_rng([seed, 1]))
    xy, ids = md.network.lane_points()
    return Town(name, XODR_RECIPE, md.network, ground, scenery, xy, ids), md


def _store(entry: Path, town: Town, md: MapData) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=entry.name + ".", dir=entry.parent))
    try:
        g = town.ground
        np.save(tmp / "ground.npy", g.data)
        meta = {
            "name": town.name,
            "network": town.network,
            "scenery": town.scenery,
            "res": g.res,
            "xmin": g.xmin,
            "ymax": g.ymax,
            "map": md,
        }
        with open(tmp / "town.pkl", "wb") as f:
            pickle.dump(meta, f, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            os.rename(tmp, entry)
        except OSError:  # another process stored it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _restore(entry: Path) -> tuple[Town, MapData] | None:
    try:
        with open(entry / "town.pkl", "rb") as f:
            meta = pickle.load(f)
        data = np.load(entry / "ground.npy", mmap_mode="r")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, AttributeError, ModuleNotFoundError):
        return None
    ground = GroundRaster(data, meta["res"], meta["xmin"], meta["ymax"])
    net = meta["network"]
    xy, ids = net.lane_points()
    return Town(meta["name"], XODR_RECIPE, net, ground, meta["scenery"], xy, ids), meta["map"]


def load_map(path: str | Path, use_cache: bool = True, res: float = RESOLUTION) -> tuple[Town, MapData]:
    """The Town of an .xodr file and its converted map, from the disk cache when it has it."""
    p = Path(path)
    data = _read(p)
    return _load_cached(str(p.resolve()), hashlib.sha256(data).hexdigest(), use_cache, res, p.name)


@lru_cache(maxsize=2)
def _load_cached(resolved: str, sha: str, use_cache: bool, res: float, name: str) -> tuple[Town, MapData]:
    entry = cache_dir() / f"{Path(resolved).stem}-{sha[:20]}-v{BUILD_VERSION}-r{res:g}"
    if use_cache and entry.is_dir():
        got = _restore(entry)
        if got is not None:
            return got
        shutil.rmtree(entry, ignore_errors=True)  # unreadable (an older build): rebuild it
    data = Path(resolved).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        raise OpenDriveError(f"{resolved}: changed while being read (try again)")
    town, md = build_town(data, name, resolved, res)
    if use_cache:
        _store(entry, town, md)
    return town, md


def load_xodr_town(path: str | Path) -> Town:
    """The Town of an .xodr file (for the embedded backend)."""
    return load_map(path)[0]
