"""Byte layouts of what goes down the streams, as the 0.9.16 client decodes them.

All packed little-endian without padding (LibCarla sensor/s11n). A wrong size in the episode
state makes the client abort the whole process, so every layout has a fixed struct here and a
test against the real client.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

SENSOR_HEADER = struct.Struct("<QQd6f")
"""SensorHeaderSerializer: sensor type (index in SensorRegistry), frame, timestamp, sensor transform."""
IMAGE_HEADER = struct.Struct("<IIf")
"""ImageSerializer: width, height, fov."""
EPISODE_HEADER = struct.Struct("<Qdf3iI")
"""EpisodeStateSerializer: episode id, platform time, delta seconds, map origin, simulation state."""
ACTOR_RECORD = struct.Struct("<IB6f3f3f3f54s")
"""ActorDynamicState: id, state, transform, velocity, angular velocity, acceleration, 54-byte union."""
VEHICLE_UNION = struct.Struct("<3f???ifB?I")
"""The union's vehicle member: control, gear, speed limit, traffic light state and id."""
WALKER_UNION = struct.Struct("<3ff?")
"""The union's walker member (PackedWalkerControl): direction, speed, jump."""
TRAFFIC_LIGHT_UNION = struct.Struct("<32s4fI?B")
"""The union's traffic light member (the union's largest, 54 bytes): sign id, green, yellow and
red time, elapsed time in the state, pole index, frozen, state (rpc/TrafficLightState.h)."""

# Indices in SensorRegistry.h (0.9.16).
TYPE_COLLISION = 0
TYPE_DEPTH = 1
TYPE_RGB = 13
TYPE_SEMANTIC = 14
TYPE_EPISODE = 17
ACTOR_ACTIVE = 1
assert ACTOR_RECORD.size == 119 and SENSOR_HEADER.size == 48 and EPISODE_HEADER.size == 36
assert TRAFFIC_LIGHT_UNION.size == 54


def sensor_header(sensor_type: int, frame: int, timestamp: float, transform: tuple) -> bytes:
    """transform = (x, y, z, pitch, yaw, roll) in CARLA's frame."""
    return SENSOR_HEADER.pack(sensor_type, frame, timestamp, *transform)


def image_payload(
    sensor_type: int, frame: int, timestamp: float, transform: tuple, fov: float, bgra: np.ndarray
) -> bytes:
    """A camera frame: header, image header, then height x width x 4 BGRA bytes."""
    h, w = bgra.shape[:2]
    return (
        sensor_header(sensor_type, frame, timestamp, transform)
        + IMAGE_HEADER.pack(w, h, fov)
        + np.ascontiguousarray(bgra, dtype=np.uint8).tobytes()
    )


DEPTH_FAR_M = 1000.0
"""CARLA's depth camera range: the 24-bit code 2**24 - 1 is 1000 m (and no return: sky, NaN)."""
_DEPTH_MAX_CODE = (1 << 24) - 1


def depth_bgra(depth_m: np.ndarray) -> np.ndarray:
    """HxW depth [m] -> HxWx4 BGRA in CARLA's depth encoding.

    The client decodes `(R + G * 256 + B * 65536) / (256**3 - 1) * 1000` metres
    (ColorConverter.Depth, carla/image/ColorConverter.h), so the 24-bit code goes low byte in R.
    Inf (sky) and NaN (an object with no ground below it) read as the far plane.
    """
    d = np.nan_to_num(np.asarray(depth_m, np.float64), nan=DEPTH_FAR_M, posinf=DEPTH_FAR_M)
    code = np.rint(np.clip(d, 0.0, DEPTH_FAR_M) * (_DEPTH_MAX_CODE / DEPTH_FAR_M)).astype(np.uint32)
    out = np.empty(d.shape + (4,), np.uint8)
    out[..., 2] = code & 0xFF
    out[..., 1] = (code >> 8) & 0xFF
    out[..., 0] = code >> 16
    out[..., 3] = 255
    return out


def depth_from_bgra(bgra: np.ndarray) -> np.ndarray:
    """The inverse of `depth_bgra`, as a CARLA user decodes `raw_data` [m]."""
    b = bgra.astype(np.float64)
    return (b[..., 2] + b[..., 1] * 256.0 + b[..., 0] * 65536.0) * (DEPTH_FAR_M / _DEPTH_MAX_CODE)


@dataclass
class ActorState:
    """One actor's row in the episode state (CARLA frame, SI units, degrees)."""

    id: int
    transform: tuple  # x, y, z, pitch, yaw, roll
    velocity: tuple = (0.0, 0.0, 0.0)
    angular_velocity: tuple = (0.0, 0.0, 0.0)
    acceleration: tuple = (0.0, 0.0, 0.0)
    control: tuple | None = None  # vehicles: throttle, steer, brake, hand_brake, reverse, manual, gear
    speed_limit: float = 30.0
    signal: tuple = (0, False, 0)  # vehicles: traffic light state, has a traffic light, its id
    light: tuple | None = None  # traffic lights: sign id, green, yellow, red, elapsed, pole, frozen, state
    walker: tuple | None = None  # walkers: direction (x, y, z), speed, jump


def _union(a: ActorState) -> bytes:
    if a.light is not None:
        sign, *rest = a.light
        return TRAFFIC_LIGHT_UNION.pack(str(sign).encode()[:31], *rest)
    if a.walker is not None:
        (dx, dy, dz), speed, jump = a.walker
        return WALKER_UNION.pack(dx, dy, dz, speed, bool(jump)) + bytes(54 - WALKER_UNION.size)
    if a.control is None:
        return bytes(54)
    t, s, b, hb, rev, man, gear = a.control
    state, has, light_id = a.signal
    body = VEHICLE_UNION.pack(
        t, s, b, bool(hb), bool(rev), bool(man), int(gear), a.speed_limit, int(state), bool(has), int(light_id)
    )
    return body + bytes(54 - len(body))


def episode_payload(
    frame: int, timestamp: float, episode_id: int, platform_time: float, dt: float, actors: list[ActorState]
) -> bytes:
    """The world-state frame every client tick waits for: header, episode header, one record per actor."""
    parts = [
        sensor_header(TYPE_EPISODE, frame, timestamp, (0.0,) * 6),
        EPISODE_HEADER.pack(episode_id, platform_time, dt, 0, 0, 0, 0),
    ]
    for a in actors:
        parts.append(
            ACTOR_RECORD.pack(
                a.id, ACTOR_ACTIVE, *a.transform, *a.velocity, *a.angular_velocity, *a.acceleration, _union(a)
            )
        )
    return b"".join(parts)
