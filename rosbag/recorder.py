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
    /lane_markings/true                   visualization_msgs/MarkerArray, the map's markings near the ego
    /lane_markings/MODEL                  visualization_msgs/MarkerArray, MODEL's marking points on the ground

With `compressed`, the RGB, label and mask images are written as image_transport's
`compressed` plugin publishes them instead (`<image topic>/compressed`, sensor_msgs/
CompressedImage): RGB as JPEG, labels and masks as PNG (lossless); depth stays raw 32FC1.
Every message of a frame is stamped with the frame's simulation time.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from rosbag import messages as m
from rosbag.bag import LATCHED_QOS, BagError, BagWriter
from sim.types import CameraSpec, EgoState, Observation

IMAGE = "sensor_msgs/Image"
COMPRESSED = "sensor_msgs/CompressedImage"
MARKERS = "visualization_msgs/MarkerArray"
TRUE_MARKINGS = "/lane_markings/true"
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


def marker_topic(model: str) -> str:
    return f"/lane_markings/{topic_token(model)}"


class BagRecorder:
    """Writes episodes as bags: `episode(name)` opens one, `record(obs, masks)` adds a frame.

    One episode (the autopilot drive, a dataset) is the bag `out`; with several (each model
    driving its own), `episode(NAME)` writes `out/NAME`. `depth` adds the depth image of
    `sim.depth`, right only for the embedded world's flat ground.
    """

    def __init__(
        self,
        out: str | Path,
        overwrite: bool = False,
        depth: bool = True,
        per_episode: bool = False,
        compressed: bool = False,
        markers: bool = True,
        town: Any = None,
        lane_mapper: Any = None,
    ):
        """`town`: the embedded `Town` whose markings `/lane_markings/true` shows (default: the
        observation's town by name; none for a CARLA run). `markers=False` leaves both marker kinds out.
        `lane_mapper` (`harness.lanemap.LaneMapper`) is fed the same frames (not timed in `seconds`)."""
        self.lane_mapper = lane_mapper
        self.out = Path(out)
        self.depth = depth
        self.per_episode = per_episode
        self.compressed = compressed
        self.markers = markers
        self._town = town
        self._true: Any = None  # rosbag.markers.TrueMarkings, made on the first frame
        self._projectors: dict[tuple, Any] = {}
        self._colours: dict[str, tuple] = {}
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
            self._image(w, mask_topic(model), ns, optical, np.where(mask, 255, 0).astype(np.uint8))
        if self.markers:
            self._markers(w, ns, obs, masks or {})
        self.frames += 1
        self.seconds += time.perf_counter() - t0
        if self.lane_mapper is not None:
            self.lane_mapper.record(obs, masks)

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
        if self.markers and town:
            self._true_markings(w, ns, ego, town)
        self.frames += 1
        self.seconds += time.perf_counter() - t0

    def _image(self, w: BagWriter, topic: str, ns: int, frame_id: str, pixels: np.ndarray) -> None:
        """A raw Image on `topic`, or with `compressed` a CompressedImage on `topic/compressed`."""
        if self.compressed:
            w.write(f"{topic}/compressed", COMPRESSED, m.compressed_image(ns, frame_id, pixels), ns)
        else:
            w.write(topic, IMAGE, m.image(ns, frame_id, pixels), ns)

    def _markers(self, w: BagWriter, ns: int, obs: Observation, masks: dict[str, np.ndarray]) -> None:
        from rosbag import markers as mk

        self._true_markings(w, ns, obs.ego, obs.town)
        for model, mask in masks.items():
            key = (obs.camera.spec, mask.shape)
            if key not in self._projectors:
                from harness.drivers import GroundProjector

                self._projectors[key] = GroundProjector.from_camera(obs.camera.spec, mask.shape, max_range_m=25.0)
            colour = self._colours.setdefault(model, mk.MODEL_COLOURS[len(self._colours) % len(mk.MODEL_COLOURS)])
            pts = self._projectors[key].points(mask.astype(bool))
            w.write(marker_topic(model), MARKERS, mk.predicted_points(ns, model, pts, colour), ns)

    def _true_markings(self, w: BagWriter, ns: int, ego: EgoState, town: str) -> None:
        from rosbag.markers import TrueMarkings

        if self._true is None:
            self._true = TrueMarkings(_markings(self._town, town))
        if self._true.xy.size:
            w.write_raw(TRUE_MARKINGS, MARKERS, self._true.encoded(ns, ego.x, ego.y), ns)

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
        self._image(w, f"{cam_ns}/rgb/image_rect_color", ns, optical, rgb)
        w.write(f"{cam_ns}/rgb/camera_info", CAMERA_INFO, info, ns, same_but_stamp=spec)
        if labels is None:
            return
        self._image(w, f"{cam_ns}/semantic/image_raw", ns, optical, labels)
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


def _markings(town: Any, name: str) -> list[Any]:
    """The marking polylines of `town`, or of the embedded town called `name` (none if unknown)."""
    if town is None:
        from sim.embedded.town import load_town

        try:
            town = load_town(name)
        except KeyError:
            return []
    return list(town.network.markings)


def _looks_like_bags(path: Path) -> bool:
    if path.is_file():
        return False
    if not any(path.iterdir()) or (path / "metadata.yaml").exists():
        return True
    return all((p / "metadata.yaml").exists() for p in path.iterdir() if p.is_dir()) and not any(
        p.is_file() for p in path.iterdir()
    )


__all__ = ["BagRecorder", "camera_namespace", "marker_topic", "mask_topic", "topic_token"]
