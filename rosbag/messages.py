"""Simulator data as ROS 2 messages (plain dicts shaped like the .msg of `rosbag.msgdefs`).

Frames follow REP 103/105: `map` -> `odom` -> `base_link` (x forward, y left, z up, on the
ground under the ego's reference point) -> `<camera>_camera_link` (x forward along the camera's
axis) -> `<camera>_camera_optical_frame` (x right, y down, z forward; what images are stamped in).
The odometry is the simulator's true ego pose, so `map` -> `odom` is the identity.

The mounting comes from `sim.camera.optical_to_vehicle`, the one home of the camera geometry.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sim.camera import optical_to_vehicle
from sim.types import CameraSpec

MAP_FRAME = "map"
ODOM_FRAME = "odom"
BASE_FRAME = "base_link"
POSE_VARIANCE = 1e-6  # [m^2, rad^2] the pose is the simulator's truth; zero covariance upsets some consumers


def camera_frames(name: str) -> tuple[str, str]:
    """(link frame, optical frame) of the camera called `name`."""
    return f"{name}_camera_link", f"{name}_camera_optical_frame"


def stamp(ns: int) -> dict[str, int]:
    """builtin_interfaces/Time of a time in nanoseconds."""
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def sim_ns(sim_time_s: float) -> int:
    """Simulation time [s] -> integer nanoseconds (rounded, so 0.05 s steps stay exact)."""
    return int(round(sim_time_s * 1e9))


def header(ns: int, frame_id: str) -> dict[str, Any]:
    return {"stamp": stamp(ns), "frame_id": frame_id}


def quaternion(r: np.ndarray) -> dict[str, float]:
    """geometry_msgs/Quaternion of a 3x3 rotation matrix (w >= 0)."""
    m = np.asarray(r, float)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        q = (0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = ((m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s)
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = ((m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s)
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = ((m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s)
    w, x, y, z = q
    if w < 0:
        w, x, y, z = -w, -x, -y, -z
    return {"x": x, "y": y, "z": z, "w": w}


def yaw_quaternion(yaw: float) -> dict[str, float]:
    return {"x": 0.0, "y": 0.0, "z": math.sin(yaw / 2.0), "w": math.cos(yaw / 2.0)}


def transform(ns: int, parent: str, child: str, xyz: tuple[float, float, float], q: dict[str, float]) -> dict:
    """geometry_msgs/TransformStamped: the pose of `child` in `parent`."""
    return {
        "header": header(ns, parent),
        "child_frame_id": child,
        "transform": {"translation": {"x": xyz[0], "y": xyz[1], "z": xyz[2]}, "rotation": q},
    }


def camera_link_rotation(spec: CameraSpec) -> np.ndarray:
    """3x3: the camera link's axes (x along the view, y left, z up) in base_link."""
    r_opt = optical_to_vehicle(spec.pitch_deg, spec.yaw_deg)  # columns: optical x right, y down, z forward
    return np.stack([r_opt[:, 2], -r_opt[:, 0], -r_opt[:, 1]], axis=1)


#: The optical frame's axes in the camera link frame (REP 103: z forward, x right, y down).
LINK_TO_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def static_transforms(ns: int, cameras: list[CameraSpec]) -> dict[str, Any]:
    """tf2_msgs/TFMessage for /tf_static: map -> odom, and each camera's mounting on base_link."""
    tfs = [transform(ns, MAP_FRAME, ODOM_FRAME, (0.0, 0.0, 0.0), quaternion(np.eye(3)))]
    for spec in cameras:
        link, optical = camera_frames(spec.name)
        tfs.append(transform(ns, BASE_FRAME, link, (spec.x, spec.y, spec.z), quaternion(camera_link_rotation(spec))))
        tfs.append(transform(ns, link, optical, (0.0, 0.0, 0.0), quaternion(LINK_TO_OPTICAL)))
    return {"transforms": tfs}


def odom_transform(ns: int, x: float, y: float, z: float, yaw: float) -> dict[str, Any]:
    """tf2_msgs/TFMessage for /tf: odom -> base_link at the ego pose."""
    return {"transforms": [transform(ns, ODOM_FRAME, BASE_FRAME, (x, y, z), yaw_quaternion(yaw))]}


def _diag6(v: float) -> list[float]:
    return [v if i % 7 == 0 else 0.0 for i in range(36)]


def odometry(ns: int, x: float, y: float, z: float, yaw: float, speed: float, yaw_rate: float) -> dict[str, Any]:
    """nav_msgs/Odometry: pose in odom, twist in base_link (forward speed [m/s], yaw rate [rad/s])."""
    return {
        "header": header(ns, ODOM_FRAME),
        "child_frame_id": BASE_FRAME,
        "pose": {
            "pose": {"position": {"x": x, "y": y, "z": z}, "orientation": yaw_quaternion(yaw)},
            "covariance": _diag6(POSE_VARIANCE),
        },
        "twist": {
            "twist": {"linear": {"x": speed, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": yaw_rate}},
            "covariance": _diag6(POSE_VARIANCE),
        },
    }


def camera_matrix(spec: CameraSpec) -> np.ndarray:
    """3x3 K in ROS's pixel convention, where pixel (0, 0)'s centre is at (0, 0).

    `CameraSpec.intrinsics` puts the principal point at (W/2, H/2) with pixel centres at
    +0.5 (the renderer's rays go through u = column + 0.5): in ROS's convention that is
    (W/2 - 0.5, H/2 - 0.5). The focal length [px] is the same: W / (2 tan(fov/2)).
    """
    k = spec.intrinsics().astype(float).copy()
    k[0, 2] -= 0.5
    k[1, 2] -= 0.5
    return k


def camera_info(ns: int, spec: CameraSpec) -> dict[str, Any]:
    """sensor_msgs/CameraInfo of a distortion-free pinhole camera (plumb_bob, D = 0)."""
    k = camera_matrix(spec)
    p = np.hstack([k, np.zeros((3, 1))])
    return {
        "header": header(ns, camera_frames(spec.name)[1]),
        "height": spec.height,
        "width": spec.width,
        "distortion_model": "plumb_bob",
        "d": [0.0] * 5,
        "k": k.ravel().tolist(),
        "r": np.eye(3).ravel().tolist(),
        "p": p.ravel().tolist(),
        "binning_x": 0,
        "binning_y": 0,
        "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False},
    }


_ENCODINGS = {(np.dtype(np.uint8), 3): "rgb8", (np.dtype(np.uint8), 1): "mono8", (np.dtype(np.float32), 1): "32FC1"}


def image(ns: int, frame_id: str, pixels: np.ndarray) -> dict[str, Any]:
    """sensor_msgs/Image: HxWx3 uint8 -> rgb8, HxW uint8 -> mono8, HxW float32 -> 32FC1 (little endian)."""
    a = np.ascontiguousarray(pixels)
    channels = 1 if a.ndim == 2 else a.shape[2]
    enc = _ENCODINGS.get((a.dtype, channels))
    if enc is None:
        raise ValueError(f"no ROS image encoding for {a.dtype} with {channels} channels (uint8 1/3, float32 1)")
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    h, w = a.shape[:2]
    return {
        "header": header(ns, frame_id),
        "height": h,
        "width": w,
        "encoding": enc,
        "is_bigendian": 0,
        "step": w * channels * a.dtype.itemsize,
        "data": a.tobytes(),
    }


JPEG_QUALITY = 95  # compressed_image_transport's default jpeg_quality (ROS 2)
PNG_LEVEL = 1  # zlib level: the fastest (image_transport's default is 3); lossless either way


def compressed_image(ns: int, frame_id: str, pixels: np.ndarray) -> dict[str, Any]:
    """sensor_msgs/CompressedImage as image_transport's `compressed` plugin writes it.

    Colour (rgb8) as JPEG, format "rgb8; jpeg compressed bgr8"; mono8 (labels, masks) as PNG,
    format "mono8; png compressed " (the plugin appends a target format only for colour).
    """
    import cv2

    a = np.ascontiguousarray(pixels)
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(a, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        fmt = "rgb8; jpeg compressed bgr8"
    elif a.dtype == np.uint8 and a.ndim == 2:
        ok, buf = cv2.imencode(".png", a, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
        fmt = "mono8; png compressed "
    else:
        raise ValueError(f"no compressed encoding for {a.dtype} {a.shape} (uint8 HxWx3 or HxW)")
    if not ok:
        raise ValueError(f"OpenCV could not encode a {a.shape} image")
    return {"header": header(ns, frame_id), "format": fmt, "data": buf.tobytes()}


def compressed_array(msg: Any) -> np.ndarray:
    """The pixels of a decoded CompressedImage of `compressed_image` (RGB order for colour)."""
    import cv2

    get = msg.get if isinstance(msg, dict) else lambda k: getattr(msg, k)
    buf = np.frombuffer(bytes(get("data")), np.uint8)
    if "jpeg" in get("format"):
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def image_array(msg: Any) -> np.ndarray:
    """The pixels of a decoded sensor_msgs/Image (rgb8, mono8, 32FC1), for readers and tests."""
    get = msg.get if isinstance(msg, dict) else lambda k: getattr(msg, k)
    enc, h, w = get("encoding"), get("height"), get("width")
    dtype, ch = {"rgb8": (np.uint8, 3), "mono8": (np.uint8, 1), "32FC1": (np.dtype("<f4"), 1)}[enc]
    a = np.frombuffer(bytes(get("data")), dtype=dtype)
    return a.reshape(h, w, ch) if ch > 1 else a.reshape(h, w)


__all__ = [
    "BASE_FRAME",
    "MAP_FRAME",
    "ODOM_FRAME",
    "camera_frames",
    "camera_info",
    "camera_matrix",
    "compressed_array",
    "compressed_image",
    "image",
    "image_array",
    "odom_transform",
    "odometry",
    "quaternion",
    "sim_ns",
    "static_transforms",
]
