"""CARLA semantic tags (0.9.14+ numbering) and the CityScapes palette: the one tag table.

Every other module takes tag ids and colours from here; servers older than 0.9.14 are
remapped through `LEGACY_TO_CURRENT` in one place.
"""

from __future__ import annotations

import numpy as np

# id -> (name, RGB colour), exactly CARLA 0.9.14+ `carla.CityObjectLabel` numbering.
TAGS: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("Unlabeled", (0, 0, 0)),
    1: ("Road", (128, 64, 128)),
    2: ("Sidewalk", (244, 35, 232)),
    3: ("Building", (70, 70, 70)),
    4: ("Wall", (102, 102, 156)),
    5: ("Fence", (190, 153, 153)),
    6: ("Pole", (153, 153, 153)),
    7: ("TrafficLight", (250, 170, 30)),
    8: ("TrafficSign", (220, 220, 0)),
    9: ("Vegetation", (107, 142, 35)),
    10: ("Terrain", (152, 251, 152)),
    11: ("Sky", (70, 130, 180)),
    12: ("Pedestrian", (220, 20, 60)),
    13: ("Rider", (255, 0, 0)),
    14: ("Car", (0, 0, 142)),
    15: ("Truck", (0, 0, 70)),
    16: ("Bus", (0, 60, 100)),
    17: ("Train", (0, 80, 100)),
    18: ("Motorcycle", (0, 0, 230)),
    19: ("Bicycle", (119, 11, 32)),
    20: ("Static", (110, 190, 160)),
    21: ("Dynamic", (170, 120, 50)),
    22: ("Other", (55, 90, 80)),
    23: ("Water", (45, 60, 150)),
    24: ("RoadLine", (157, 234, 50)),
    25: ("Ground", (81, 0, 81)),
    26: ("Bridge", (150, 100, 100)),
    27: ("RailTrack", (230, 150, 140)),
    28: ("GuardRail", (180, 165, 180)),
}

NAMES: dict[int, str] = {i: name for i, (name, _) in TAGS.items()}
IDS: dict[str, int] = {name: i for i, name in NAMES.items()}
MAX_TAG = max(TAGS)

UNLABELED = 0
ROAD = 1
SIDEWALK = 2
BUILDING = 3
WALL = 4
FENCE = 5
POLE = 6
TRAFFIC_LIGHT = 7
TRAFFIC_SIGN = 8
VEGETATION = 9
TERRAIN = 10
SKY = 11
PEDESTRIAN = 12
CAR = 14
TRUCK = 15
BUS = 16
STATIC = 20
ROAD_LINE = 24
GROUND = 25
GUARD_RAIL = 28

LANE_TAGS: tuple[int, ...] = (ROAD_LINE,)
"""The default binary task: lane marking = RoadLine (stop lines and crosswalks included)."""

# Pre-0.9.14 servers: old id -> current id (RoadLine was 6, Road 7, Vehicles 10).
LEGACY_TO_CURRENT: dict[int, int] = {
    0: UNLABELED,
    1: BUILDING,
    2: FENCE,
    3: 22,
    4: PEDESTRIAN,
    5: POLE,
    6: ROAD_LINE,
    7: ROAD,
    8: SIDEWALK,
    9: VEGETATION,
    10: CAR,
    11: WALL,
    12: TRAFFIC_SIGN,
    13: SKY,
    14: GROUND,
    15: 26,
    16: 27,
    17: GUARD_RAIL,
    18: TRAFFIC_LIGHT,
    19: STATIC,
    20: 21,
    21: 23,
    22: TERRAIN,
}

PALETTE = np.zeros((256, 3), dtype=np.uint8)
for _i, (_, _rgb) in TAGS.items():
    PALETTE[_i] = _rgb

_LEGACY_LUT = np.zeros(256, dtype=np.uint8)
for _old, _new in LEGACY_TO_CURRENT.items():
    _LEGACY_LUT[_old] = _new


def colorize(labels: np.ndarray) -> np.ndarray:
    """HxW tag ids -> HxWx3 uint8 RGB in the CityScapes palette (unknown ids are black)."""
    return PALETTE[labels]


def overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB blended with the label colours; lane markings drawn opaque so they stand out."""
    colours = colorize(labels)
    out = (rgb * (1.0 - alpha) + colours * alpha).astype(np.uint8)
    lane = labels == ROAD_LINE
    out[lane] = colours[lane]
    return out


def remap_legacy(labels: np.ndarray) -> np.ndarray:
    """Labels from a pre-0.9.14 CARLA server -> current numbering."""
    return _LEGACY_LUT[labels]


def is_valid(labels: np.ndarray) -> bool:
    """True when every id is a known tag."""
    return labels.size == 0 or int(labels.max()) <= MAX_TAG


def parse_tags(spec: str | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """'1,24,14' or names ('Road,RoadLine') -> validated tag ids."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        s = str(item).strip()
        if s.isdigit() and int(s) in TAGS:
            out.append(int(s))
        elif s in IDS:
            out.append(IDS[s])
        else:
            raise ValueError(f"unknown tag {s!r} (use ids 0-{MAX_TAG} or names such as RoadLine, Road)")
    return tuple(out)
