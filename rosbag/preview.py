"""`python -m rosbag.preview BAG --out PNG`: one frame of a bag's image topics, side by side.

A viewer that runs where ROS and Foxglove do not: it reads the bag back with
`mcap-ros2-support` (not with the code that wrote it) and draws, for the frame nearest
`--time`, every sensor_msgs/Image and CompressedImage topic (RGB as is, tag ids in CARLA's
palette, depth in a colour map to `--max-depth`, masks as grey), then a top-down view around
the ego of the frame's visualization_msgs/MarkerArray topics (the map's true markings, each
model's predicted ground points) beside the path of /odom.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from plumbing import run_cli
from rosbag.messages import compressed_array, image_array
from sim.tags import PALETTE

TILE_W = 320


def _tile(topic: str, img: np.ndarray, max_depth: float) -> np.ndarray:
    if img.dtype == np.float32:
        finite = np.isfinite(img)
        v = np.where(finite, np.clip(img / max_depth, 0, 1) * 255, 0).astype(np.uint8)
        out = cv2.cvtColor(cv2.applyColorMap(v, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
        out[~finite] = 0
    elif img.ndim == 3:
        out = img
    elif "semantic" in topic:
        out = PALETTE[img]
    else:
        out = np.repeat(img[..., None], 3, axis=2)
    h = round(out.shape[0] * TILE_W / out.shape[1])
    out = cv2.resize(np.ascontiguousarray(out), (TILE_W, h), interpolation=cv2.INTER_NEAREST)
    bar = np.full((18, TILE_W, 3), 30, np.uint8)
    cv2.putText(bar, topic, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (235, 235, 235), 1, cv2.LINE_AA)
    return np.vstack([bar, out])


def _order(topic: str) -> tuple:
    """RGB, labels, depth, then the masks."""
    return ("/rgb/" not in topic, "/semantic/" not in topic, "/depth" not in topic, topic)


def _path(xy: np.ndarray, here: np.ndarray, width: int) -> np.ndarray:
    h = 200
    canvas = np.full((h, width, 3), 245, np.uint8)
    lo, hi = xy.min(0), xy.max(0)
    scale = min((width - 20) / max(hi[0] - lo[0], 1e-6), (h - 20) / max(hi[1] - lo[1], 1e-6))
    px = ((xy - lo) * scale + 10).astype(int)
    px[:, 1] = h - px[:, 1]
    cv2.polylines(canvas, [px.reshape(-1, 1, 2)], False, (40, 90, 200), 2, cv2.LINE_AA)
    p = ((here - lo) * scale + 10).astype(int)
    cv2.circle(canvas, (int(p[0]), int(h - p[1])), 5, (220, 40, 40), -1, cv2.LINE_AA)
    cv2.putText(canvas, "/odom (map frame)", (8, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (30, 30, 30), 1, cv2.LINE_AA)
    return canvas


def _markers_view(arrays: dict[str, object], pose: tuple[float, float, float], size: tuple[int, int]) -> np.ndarray:
    """Top-down view in the ego's frame (forward up, 5 m behind to 35 m ahead) of the MarkerArrays:
    LINE_STRIPs in the map frame drawn as lines, POINTS in base_link as dots in the marker's colour."""
    w, h = size
    canvas = np.full((h, w, 3), 35, np.uint8)
    x0, y0, yaw = pose
    px_m = h / 40.0
    c, s = np.cos(yaw), np.sin(yaw)

    def to_px(pts: np.ndarray, frame: str) -> np.ndarray:
        if frame != "base_link":  # map -> ego frame
            d = pts - (x0, y0)
            pts = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], 1)
        return np.stack([w / 2 - pts[:, 1] * px_m, h - (pts[:, 0] + 5.0) * px_m], 1).round().astype(np.int32)

    legend = []
    for topic, arr in sorted(arrays.items(), key=lambda kv: kv[0] != "/lane_markings/true"):
        for mk in arr.markers:
            if mk.action != 0 or not len(mk.points):
                continue
            pts = to_px(np.array([(p.x, p.y) for p in mk.points]), mk.header.frame_id)
            rgb = tuple(int(255 * v) for v in (mk.color.r, mk.color.g, mk.color.b))
            if mk.type == 4:  # LINE_STRIP
                cv2.polylines(
                    canvas, [pts.reshape(-1, 1, 2)], False, rgb, max(2, round(mk.scale.x * px_m)), cv2.LINE_AA
                )
            else:
                for u, v in pts:
                    cv2.circle(canvas, (int(u), int(v)), 2 if not legend else 1, rgb, -1)  # later models on top
                legend.append((topic, rgb))
    ego = np.array([[w / 2, h - 5 * px_m - 10], [w / 2 - 5, h - 5 * px_m + 4], [w / 2 + 5, h - 5 * px_m + 4]])
    cv2.fillPoly(canvas, [ego.astype(np.int32)], (250, 250, 250))
    entries = [("/lane_markings/true", (240, 240, 240)), *legend]
    canvas[: 22 + 15 * len(entries), :200] //= 3  # darken behind the legend
    cv2.putText(canvas, "markers, ego frame (40 m)", (6, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (235, 235, 235), 1,
                cv2.LINE_AA)  # fmt: skip
    for k, (topic, rgb) in enumerate(entries):
        cv2.putText(canvas, topic, (6, 32 + 15 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.38, rgb, 1, cv2.LINE_AA)
    return canvas


def render(bag: Path, at_s: float | None = None, max_depth: float = 60.0) -> np.ndarray:
    """RGB image of the frame nearest `at_s` (default: the middle of the bag)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    files = sorted(bag.glob("*.mcap"))
    if not (bag / "metadata.yaml").exists() or not files:
        raise ValueError(f"{bag} is not a bag folder (metadata.yaml and a .mcap file) (give the folder --rosbag wrote)")
    times: list[int] = []
    odom: list[tuple[int, float, float]] = []
    with open(files[0], "rb") as f:
        for _, _ch, msg in make_reader(f).iter_messages(topics=["/odom"]):
            times.append(msg.log_time)
    if not times:
        raise ValueError(f"{bag} has no /odom messages to find frames by")
    target = times[len(times) // 2] if at_s is None else min(times, key=lambda t: abs(t - at_s * 1e9))
    images: dict[str, np.ndarray] = {}
    markers: dict[str, object] = {}
    yaw = 0.0
    with open(files[0], "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, ch, msg, dec in reader.iter_decoded_messages():
            if ch.topic == "/odom":
                p = dec.pose.pose.position
                odom.append((msg.log_time, p.x, p.y))
                if msg.log_time == target:
                    q = dec.pose.pose.orientation
                    yaw = 2 * float(np.arctan2(q.z, q.w))
            elif msg.log_time != target:
                continue
            elif schema.name == "sensor_msgs/msg/Image":
                images[ch.topic] = image_array(dec)
            elif schema.name == "sensor_msgs/msg/CompressedImage":
                images[ch.topic] = compressed_array(dec)
            elif schema.name == "visualization_msgs/msg/MarkerArray":
                markers[ch.topic] = dec
    tiles = [_tile(t, images[t], max_depth) for t in sorted(images, key=_order)]
    while len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    h = max(t.shape[0] for t in tiles)
    tiles = [np.vstack([t, np.zeros((h - t.shape[0], TILE_W, 3), np.uint8)]) for t in tiles]
    grid = np.vstack([np.hstack(tiles[i : i + 2]) for i in range(0, len(tiles), 2)])
    xy = np.array([(x, y) for _, x, y in odom])
    here = next(np.array((x, y)) for t, x, y in odom if t == target)
    if not markers:
        return np.vstack([grid, _path(xy, here, grid.shape[1])])
    top = _markers_view(markers, (float(here[0]), float(here[1]), yaw), (TILE_W, 320))
    path = _path(xy, here, grid.shape[1] - TILE_W)
    path = np.vstack([path, np.full((320 - path.shape[0], path.shape[1], 3), 245, np.uint8)])
    return np.vstack([grid, np.hstack([top, path])])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rosbag.preview", description=__doc__.splitlines()[0])
    p.add_argument("bag", help="bag folder (metadata.yaml + .mcap)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--time", type=float, help="stamp [s] of the frame to draw (default: the middle)")
    p.add_argument("--max-depth", type=float, default=60.0, help="depth colour map range [m] (default 60)")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)

    def body() -> int:
        img = render(Path(args.bag), args.time, args.max_depth)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(args.out, cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {args.out}")
        print(f"{args.out}: {img.shape[1]}x{img.shape[0]}")
        return 0

    return run_cli(body, expected=(ValueError, OSError), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
