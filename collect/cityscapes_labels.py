"""Cityscapes label ids -> our CARLA tag ids: the one table the Cityscapes importer uses.

Source of the Cityscapes side: the official label definitions, `labels` in
`cityscapesscripts/helpers/labels.py` of cityscapesScripts 2.2.4 (PyPI `cityscapesscripts`,
github.com/mcordts/cityscapesScripts): ids 0..33 are what `*_gtFine_labelIds.png` holds;
'license plate' has id -1 and is never drawn into those images (json2labelImg.py skips
negative ids, so plates keep the id of the car under them). Any other id in a labelIds PNG
is an error, not a guess. The table is written out here rather than importing
`cityscapesscripts`, which would pull in matplotlib, pyquaternion, coloredlogs, requests and
the obsolete `typing` backport for 34 rows.

The CARLA side is `sim.tags` (0.9.14+ numbering, which follows Cityscapes' classes and
palette). Choices where the two differ:

- no counterpart -> Unlabeled (0): 'unlabeled', 'ego vehicle', 'rectification border',
  'out of roi' (void in Cityscapes too), 'parking', 'tunnel', 'caravan', 'trailer' (Cityscapes'
  own 19-class benchmark ignores these four as well; CARLA has no such tag);
- 'polegroup' -> Pole (6): a group of poles is still poles;
- 'static' -> Static (20), 'dynamic' -> Dynamic (21), 'ground' -> Ground (25): same names;
- CARLA tags Cityscapes never labels: Other (22), Water (23), RoadLine (24). Cityscapes has
  no lane-marking class: painted markings are part of 'road'. So the binary lane task is
  undefined on Cityscapes, and `ANNOTATED_TAGS` (what the manifest declares) leaves 24 out.

No torch, no OpenCV here: a table and a lookup array.
"""

from __future__ import annotations

import numpy as np

from sim.tags import NAMES, UNLABELED

#: (Cityscapes id, Cityscapes name, CARLA tag id), in Cityscapes id order.
CITYSCAPES_TO_CARLA: tuple[tuple[int, str, int], ...] = (
    (0, "unlabeled", UNLABELED),
    (1, "ego vehicle", UNLABELED),
    (2, "rectification border", UNLABELED),
    (3, "out of roi", UNLABELED),
    (4, "static", 20),  # Static
    (5, "dynamic", 21),  # Dynamic
    (6, "ground", 25),  # Ground
    (7, "road", 1),  # Road (lane markings included)
    (8, "sidewalk", 2),  # Sidewalk
    (9, "parking", UNLABELED),
    (10, "rail track", 27),  # RailTrack
    (11, "building", 3),  # Building
    (12, "wall", 4),  # Wall
    (13, "fence", 5),  # Fence
    (14, "guard rail", 28),  # GuardRail
    (15, "bridge", 26),  # Bridge
    (16, "tunnel", UNLABELED),
    (17, "pole", 6),  # Pole
    (18, "polegroup", 6),  # Pole
    (19, "traffic light", 7),  # TrafficLight
    (20, "traffic sign", 8),  # TrafficSign
    (21, "vegetation", 9),  # Vegetation
    (22, "terrain", 10),  # Terrain
    (23, "sky", 11),  # Sky
    (24, "person", 12),  # Pedestrian
    (25, "rider", 13),  # Rider
    (26, "car", 14),  # Car
    (27, "truck", 15),  # Truck
    (28, "bus", 16),  # Bus
    (29, "caravan", UNLABELED),
    (30, "trailer", UNLABELED),
    (31, "train", 17),  # Train
    (32, "motorcycle", 18),  # Motorcycle
    (33, "bicycle", 19),  # Bicycle
)

MAX_CITYSCAPES_ID = max(cs for cs, _, _ in CITYSCAPES_TO_CARLA)
#: Marks an id outside the table in `LUT`.
UNKNOWN = 255

#: Cityscapes id (0..255) -> CARLA tag id, or UNKNOWN.
LUT = np.full(256, UNKNOWN, dtype=np.uint8)
for _cs, _, _tag in CITYSCAPES_TO_CARLA:
    LUT[_cs] = _tag

#: Tags the imported labels define: every tag some Cityscapes class maps to (0 is "no label").
ANNOTATED_TAGS: tuple[int, ...] = tuple(sorted({tag for _, _, tag in CITYSCAPES_TO_CARLA} - {UNLABELED}))
#: Cityscapes classes that become Unlabeled (0).
UNMAPPED: tuple[str, ...] = tuple(name for _, name, tag in CITYSCAPES_TO_CARLA if tag == UNLABELED)
#: CARLA tags no Cityscapes class maps to (RoadLine among them).
MISSING_TAGS: tuple[int, ...] = tuple(t for t in sorted(NAMES) if t != UNLABELED and t not in ANNOTATED_TAGS)


def unknown_ids(label_ids: np.ndarray) -> list[int]:
    """Ids in a labelIds image that the table does not know (sorted)."""
    present = np.flatnonzero(np.bincount(label_ids.ravel(), minlength=256))
    return [int(i) for i in present if LUT[i] == UNKNOWN]


def to_tags(label_ids: np.ndarray) -> np.ndarray:
    """HxW uint8 Cityscapes ids -> HxW uint8 CARLA tag ids (check `unknown_ids` first)."""
    return LUT[label_ids]


__all__ = [
    "ANNOTATED_TAGS",
    "CITYSCAPES_TO_CARLA",
    "LUT",
    "MAX_CITYSCAPES_ID",
    "MISSING_TAGS",
    "UNKNOWN",
    "UNMAPPED",
    "to_tags",
    "unknown_ids",
]
