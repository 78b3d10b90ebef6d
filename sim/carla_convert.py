"""CARLA's conventions as pure functions: image decoding, coordinates, synchronous settings, versions.

No server and no `carla` import: everything here is tested on its own, and `sim.carla_backend`
uses it at the edge where the client's data comes in and goes out. CARLA's frame is left-handed
(y right, yaw clockwise); ours is right-handed. `from_carla` and `to_carla` are the only places
where the two meet.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from sim.backend import BackendError
from sim.tags import remap_legacy
from sim.types import CameraSpec

__all__ = [
    "MAX_SUBSTEPS",
    "MAX_SUBSTEP_DT",
    "SyncSettings",
    "bgra_to_labels",
    "bgra_to_rgb",
    "camera_pose",
    "from_carla",
    "is_legacy_server",
    "lane_errors",
    "parse_version",
    "same_town",
    "sync_settings",
    "to_carla",
]

MAX_SUBSTEP_DT = 0.01
"""CARLA's recommended upper bound for one physics substep (s)."""
MAX_SUBSTEPS = 16
"""CARLA refuses more substeps than this per tick."""


def _bgra(raw: bytes | bytearray | memoryview | np.ndarray, width: int, height: int) -> np.ndarray:
    buf = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw.reshape(-1)
    if buf.size != width * height * 4:
        raise BackendError(
            f"camera buffer has {buf.size} bytes, expected {width}x{height}x4 = {width * height * 4} "
            "(server and sensor attributes disagree)"
        )
    return buf.reshape(height, width, 4)


def bgra_to_rgb(raw: bytes | bytearray | memoryview | np.ndarray, width: int, height: int) -> np.ndarray:
    """CARLA's raw BGRA image buffer -> HxWx3 uint8 in RGB order (a copy, the buffer is reused)."""
    return np.ascontiguousarray(_bgra(raw, width, height)[:, :, 2::-1])


def bgra_to_labels(
    raw: bytes | bytearray | memoryview | np.ndarray, width: int, height: int, legacy: bool = False
) -> np.ndarray:
    """A semantic-segmentation camera buffer -> HxW uint8 tag ids.

    CARLA writes the tag into the red channel, which is index 2 of BGRA. Servers before 0.9.14
    used another numbering; `legacy=True` maps it through the one table in `sim.tags`.
    """
    labels = np.ascontiguousarray(_bgra(raw, width, height)[:, :, 2])
    return remap_legacy(labels) if legacy else labels


def from_carla(x: float, y: float, z: float, yaw_deg: float) -> tuple[float, float, float, float]:
    """CARLA (left-handed, yaw degrees clockwise) -> ours (right-handed, yaw radians counter-clockwise)."""
    return float(x), -float(y), float(z), -math.radians(float(yaw_deg))


def to_carla(x: float, y: float, z: float, yaw: float) -> tuple[float, float, float, float]:
    """Ours -> CARLA; the exact inverse of `from_carla`."""
    return float(x), -float(y), float(z), -math.degrees(float(yaw))


def camera_pose(spec: CameraSpec) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """A camera's mounting in CARLA terms: ((x, y, z), (pitch, yaw, roll)) in metres and degrees.

    Pitch needs no conversion: our convention is CARLA's (positive looks up).
    """
    x, y, z, yaw = to_carla(spec.x, spec.y, spec.z, math.radians(spec.yaw_deg))
    return (x, y, z), (float(spec.pitch_deg), yaw, 0.0)


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def lane_errors(
    ego_x: float, ego_y: float, ego_yaw: float, lane_x: float, lane_y: float, lane_yaw: float
) -> tuple[float, float]:
    """(lateral offset, heading error) of the ego against a lane-centre point, in our frame.

    Offset is metres to the left of the lane centre, heading error radians to the left of the lane
    direction, wrapped to [-pi, pi).
    """
    dx, dy = ego_x - lane_x, ego_y - lane_y
    lateral = -math.sin(lane_yaw) * dx + math.cos(lane_yaw) * dy
    return lateral, _wrap(ego_yaw - lane_yaw)


@dataclass(frozen=True)
class SyncSettings:
    """The world settings the backend applies (the other fields are kept as found)."""

    synchronous_mode: bool
    fixed_delta_seconds: float
    substepping: bool
    max_substep_delta_time: float
    max_substeps: int
    no_rendering_mode: bool = False


def sync_settings(dt: float) -> SyncSettings:
    """Synchronous settings for a tick of `dt` seconds that satisfy CARLA's substepping rule.

    CARLA requires fixed_delta_seconds <= max_substep_delta_time * max_substeps with at most 16
    substeps; physics stays stable with substeps of at most 0.01 s, so the substep is 0.01 s
    while that fits and grows only when dt needs more than 16 of them.
    """
    if not (dt > 0.0 and math.isfinite(dt)):
        raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
    substeps = max(1, math.ceil(dt / MAX_SUBSTEP_DT - 1e-9))
    if substeps <= MAX_SUBSTEPS:
        delta = MAX_SUBSTEP_DT
    else:
        substeps = MAX_SUBSTEPS
        # Round up in the 6th decimal so that floating point never breaks the rule.
        delta = math.ceil(dt / MAX_SUBSTEPS * 1e6) / 1e6
    return SyncSettings(
        synchronous_mode=True,
        fixed_delta_seconds=float(dt),
        substepping=True,
        max_substep_delta_time=delta,
        max_substeps=substeps,
    )


def parse_version(text: str) -> tuple[int, int, int] | None:
    """'0.9.16', '0.9.13-dirty', '0.9.15.2' -> (major, minor, patch); None if unrecognised."""
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def is_legacy_server(version: str) -> bool:
    """True for servers older than 0.9.14, which number the semantic tags differently."""
    v = parse_version(version)
    return v is not None and v < (0, 9, 14)


def same_town(map_name: str, town: str) -> bool:
    """Whether the loaded map ('Carla/Maps/Town10HD_Opt') is the scenario's town ('Town10HD')."""

    def base(name: str) -> str:
        name = name.rsplit("/", 1)[-1]
        return name[: -len("_Opt")] if name.endswith("_Opt") else name

    return base(map_name).lower() == base(town).lower()
