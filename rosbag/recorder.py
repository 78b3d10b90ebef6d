"""Observations (and each model's lane mask) into a rosbag2 folder, frame by frame.

The closed loop's `--rosbag OUT` hook and the converters share it. Topics, for the first
camera (a further camera `NAME` uses the namespace `/camera_NAME`), named as RTAB-Map's RGB-D
launch file expects them by default (docs/rosbag.md):

    /camera/rgb/image_rect_color          sensor_msgs/Image rgb8 (a pinhole without distortion)
    /camera/rgb/camera_info               sensor_msgs/CameraInfo
    /camera/depth_registered/image_raw    sensor_msgs/Image 32FC1 [m], pixel-aligned (embedded world)
    /camera/depth_registered/camera_info  sensor_msgs/CameraInfo
    /camera/semantic/image_raw            sensor_msgs/Image mono8, CARLA tag ids
    /camera/lane_mask/MODEL/image_raw     sensor_msgs/Image mono8, 255 where MODEL sees a marking
    /odom                                 nav_msgs/Odometry (the true ego pose)
    /tf, /tf_static                       tf2_msgs/TFMessage (map -> odom -> base_link -> camera)

Every message of a frame is stamped with the frame's simulation time.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from pathlib import Path

import numpy as np

from rosbag import messages as m
from rosbag.bag import LATCHED_QOS, BagError, BagWriter
from sim.types import CameraSpec, EgoState, Observation

IMAGE = "sensor_msgs/Image"
CAMERA_INFO = "sensor_msgs/CameraInfo"
ODOMETRY = "nav_msgs/Odometry"
TF = "tf2_msgs/TFMessage"


def camera_namespace(index: int, name: str) -> str:
    """`/camera` for the first camera (RTAB-Map's default), `/camera_NAME` for the others."""
    return "/camera" if index == 0 else f"/camera_{topic_token(name)}"


def topic_token(name: str) -> str:
    """A name made valid as one ROS topic token (letters, digits, underscores; no leading digit)."""
    tok = re.sub(r"[^A-Za-z0-9_]", "_", name) or "_"
    return f"m_{tok}" if tok[0].isdigit() else tok


def mask_topic(model: str) -> str:
    return f"/camera/lane_mask/{topic_token(model)}/image_raw"


class BagRecorder:
    """Writes episodes as bags: `episode(name)` opens one, `record(obs, masks)` adds a frame.

    One episode (the autopilot drive, a dataset) is the bag `out`; with several (each model
    driving its own), `episode(NAME)` writes `out/NAME`. `depth` adds the depth image of
    `sim.depth`, right only for the embedded world's flat ground.
    """

    def __init__(self, out: str | Path, overwrite: bool = False, depth: bool = True, per_episode: bool = False):
        self.out = Path(out)
        self.depth = depth
        self.per_episode = per_episode
        self.seconds = 0.0  # wall time spent converting and writing [s]
        self.frames = 0
        self.bags: list[Path] = []
        self._writer: BagWriter | None = None
        self._prev: tuple[int, float] | None = None
        if self.out.exists():
            if not overwrite:
                raise BagError(f"{self.out} exists (pass --overwrite to replace it, or choose another folder)")
            if not _looks_like_bags(self.out):
                raise BagError(f"{self.out} is not a bag folder (no metadata.yaml in it): not replacing it")
            shutil.rmtree(self.out)

    def episode(self, name: str = "") -> None:
        """Start the next episode's bag (closing the previous one)."""
        self._finish()
        target = self.out / topic_token(name) if self.per_episode and name else self.out
        self._writer = BagWriter(target, overwrite=False)
        self._prev = None

    def record(self, obs: Observation, masks: dict[str, np.ndarray] | None = None) -> None:
        """One frame: every camera's images and info, the lane masks, odometry and tf."""
        t0 = time.perf_counter()
        if self._writer is None:
            self.episode()
        w = self._writer
        assert w is not None
        ns = m.sim_ns(obs.sim_time)
        if self._prev is None:
            w.add_metadata("laneloop", {"town": obs.town, "weather": obs.weather})
            w.write("/tf_static", TF, m.static_transforms(ns, [c.spec for c in obs.cameras.values()]), ns, LATCHED_QOS)
        self._ego(w, ns, obs.ego)
        for i, cam in enumerate(obs.cameras.values()):
            self._camera(w, ns, i, cam.spec, cam.rgb, cam.labels)
        optical = m.camera_frames(obs.camera.spec.name)[1]
        for model, mask in (masks or {}).items():
            w.write(mask_topic(model), IMAGE, m.image(ns, optical, np.where(mask, 255, 0).astype(np.uint8)), ns)
        self.frames += 1
        self.seconds += time.perf_counter() - t0

    def record_frame(
        self,
        sim_time: float,
        ego: EgoState,
        spec: CameraSpec,
        rgb: np.ndarray,
        labels: np.ndarray | None,
        town: str = "",
    ) -> None:
        """One frame from stored data (a dataset row): one camera, no masks."""
        t0 = time.perf_counter()
        if self._writer is None:
            self.episode()
        w = self._writer
        assert w is not None
        ns = m.sim_ns(sim_time)
        if self._prev is None:
            w.add_metadata("laneloop", {"town": town, "weather": ""})
            w.write("/tf_static", TF, m.static_transforms(ns, [spec]), ns, LATCHED_QOS)
        self._ego(w, ns, ego)
        self._camera(w, ns, 0, spec, rgb, labels)
        self.frames += 1
        self.seconds += time.perf_counter() - t0

    def _ego(self, w: BagWriter, ns: int, ego: EgoState) -> None:
        rate = 0.0
        if self._prev is not None and ns > self._prev[0]:
            dyaw = math.remainder(ego.yaw - self._prev[1], math.tau)
            rate = dyaw / ((ns - self._prev[0]) * 1e-9)
        self._prev = (ns, ego.yaw)
        w.write("/odom", ODOMETRY, m.odometry(ns, ego.x, ego.y, ego.z, ego.yaw, ego.speed, rate), ns)
        w.write("/tf", TF, m.odom_transform(ns, ego.x, ego.y, ego.z, ego.yaw), ns)

    def _camera(
        self, w: BagWriter, ns: int, index: int, spec: CameraSpec, rgb: np.ndarray, labels: np.ndarray | None
    ) -> None:
        cam_ns = camera_namespace(index, spec.name)
        optical = m.camera_frames(spec.name)[1]
        info = m.camera_info(ns, spec)
        w.write(f"{cam_ns}/rgb/image_rect_color", IMAGE, m.image(ns, optical, rgb), ns)
        w.write(f"{cam_ns}/rgb/camera_info", CAMERA_INFO, info, ns, same_but_stamp=spec)
        if labels is None:
            return
        w.write(f"{cam_ns}/semantic/image_raw", IMAGE, m.image(ns, optical, labels), ns)
        if self.depth:
            from sim.depth import depth_image

            w.write(f"{cam_ns}/depth_registered/image_raw", IMAGE, m.image(ns, optical, depth_image(spec, labels)), ns)
            w.write(f"{cam_ns}/depth_registered/camera_info", CAMERA_INFO, info, ns, same_but_stamp=spec)

    def _finish(self) -> None:
        if self._writer is not None:
            self.bags.append(self._writer.close())
            self._writer = None

    def close(self) -> list[Path]:
        """Finish the open bag; returns every bag folder written."""
        self._finish()
        return self.bags

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


def _looks_like_bags(path: Path) -> bool:
    if path.is_file():
        return False
    if not any(path.iterdir()) or (path / "metadata.yaml").exists():
        return True
    return all((p / "metadata.yaml").exists() for p in path.iterdir() if p.is_dir()) and not any(
        p.is_file() for p in path.iterdir()
    )


__all__ = ["BagRecorder", "camera_namespace", "mask_topic", "topic_token"]
