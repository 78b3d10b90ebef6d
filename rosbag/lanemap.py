"""`python -m rosbag.lanemap BAG --out DIR`: each model's lane map of a drive, from its bag, scored.

Reads the bag back (mcap-ros2-support): /odom for the ego pose, the semantic labels for the
camera's footprint, every `/camera/lane_mask/MODEL/image_raw`; the camera's mounting and FOV
come from the bag itself (/tf_static and /camera/rgb/camera_info), the town from the bag's
`laneloop` metadata (or `--town`). Each model's marking pixels go into `harness.lanemap`,
scored against the embedded town's true markings. Outputs in DIR: `lanemap_MODEL.png`,
`lanemap_MODEL.geojson`, `lanemap.json` (precision and recall per model).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from plumbing import run_cli

MASK_PREFIX = "/camera/lane_mask/"
LABELS = "/camera/semantic/image_raw"


def camera_from_bag(static_tf: Any, info: Any, name: str = "front") -> Any:
    """The CameraSpec a bag was written with, from its camera link transform and camera info."""
    from sim.types import CameraSpec

    link = next(t for t in static_tf.transforms if t.header.frame_id == "base_link")
    q, p = link.transform.rotation, link.transform.translation
    x, y, z, w = q.x, q.y, q.z, q.w
    fwd = np.array([1 - 2 * (y * y + z * z), 2 * (x * y + z * w), 2 * (x * z - y * w)])  # link x axis in base_link
    fov = math.degrees(2 * math.atan(info.width / (2 * info.k[0])))
    return CameraSpec(
        name=link.child_frame_id.removesuffix("_camera_link") or name,
        width=info.width,
        height=info.height,
        fov_deg=fov,
        x=p.x,
        y=p.y,
        z=p.z,
        pitch_deg=math.degrees(math.asin(max(-1.0, min(1.0, fwd[2])))),
        yaw_deg=math.degrees(math.atan2(fwd[1], fwd[0])),
    )


def build_maps(bag: Path, town: str | None = None) -> tuple[dict[str, Any], str]:
    """Each model's LaneMap of the bag's drive, and the town's name."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from harness.drivers import GroundProjector
    from harness.lanemap import Grid, LaneMap
    from rosbag.messages import image_array
    from sim.embedded.town import load_town

    mcap = next(bag.glob("*.mcap"), None)
    if mcap is None:
        raise ValueError(f"{bag} has no .mcap file (give a bag folder written by --rosbag or rosbag.export)")
    with open(mcap, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
        town = town or meta.get("laneloop", {}).get("town")
        if not town:
            raise ValueError(f"{bag} does not name its town (pass --town, e.g. --town Town10HD)")
        ground = load_town(town).ground
        grid = Grid(ground.res, ground.xmin, ground.ymax, ground.data.shape[:2])
        maps: dict[str, LaneMap] = {}
        seen = np.zeros(grid.shape[0] * grid.shape[1], bool)
        static = info = None
        frame: dict[str, Any] = {}
        stamp = None

        def flush() -> None:
            if "odom" not in frame or static is None or info is None:
                return
            pose = frame["odom"]
            yaw = 2 * math.atan2(pose.orientation.z, pose.orientation.w)
            labels = frame.get("labels")  # the footprint: once a frame, shared by the models' maps
            for model, mask in frame.get("masks", {}).items():
                if model not in maps:
                    proj = GroundProjector.from_camera(camera_from_bag(static, info), max_range_m=25.0)
                    maps[model] = LaneMap(grid, proj, seen)
                maps[model].add(pose.position.x, pose.position.y, yaw, mask, labels)
                labels = None

        topics = ["/tf_static", "/camera/rgb/camera_info", "/odom", LABELS]
        for _, ch, msg, dec in reader.iter_decoded_messages(log_time_order=True):
            t = ch.topic
            if t not in topics and not t.startswith(MASK_PREFIX):
                continue
            if t == "/tf_static":
                static = dec
                continue
            if t == "/camera/rgb/camera_info":
                info = info or dec
                continue
            if msg.log_time != stamp:
                flush()
                frame, stamp = {}, msg.log_time
            if t == "/odom":
                frame["odom"] = dec.pose.pose
            elif t == LABELS:
                frame["labels"] = image_array(dec)
            else:
                model = t[len(MASK_PREFIX) :].removesuffix("/image_raw")
                frame.setdefault("masks", {})[model] = image_array(dec) > 0
        flush()
    if not maps:
        raise ValueError(f"{bag} has no lane mask topics ({MASK_PREFIX}MODEL/image_raw): nothing to map")
    return maps, town


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rosbag.lanemap", description=__doc__.splitlines()[0])
    p.add_argument("bag", help="bag folder with lane mask topics (run_sim.py --rosbag)")
    p.add_argument("--out", required=True, help="folder for the PNGs, GeoJSONs and lanemap.json")
    p.add_argument("--town", help="embedded town, if the bag does not say")
    p.add_argument("--tolerance", type=float, default=0.2, help="match distance [m] (default 0.2)")
    p.add_argument("--min-hits", type=int, default=2, help="frames a cell must be seen as marking (default 2)")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)

    def body() -> int:
        from harness.lanemap import save_geojson, save_png, score
        from sim.embedded.town import load_town
        from sim.tags import ROAD_LINE

        maps, town = build_maps(Path(args.bag), args.town)
        truth = load_town(town).ground.data[..., 0] == ROAD_LINE
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {"bag": str(args.bag), "town": town, "models": {}}
        for model, lm in maps.items():
            res = score(lm, truth, args.tolerance, args.min_hits)
            save_png(res, out / f"lanemap_{model}.png")
            save_geojson(lm, out / f"lanemap_{model}.geojson", model, args.min_hits)
            report["models"][model] = {k: v for k, v in res.items() if not k.startswith("_")}
            print(f"{model:24s} precision {res['precision']:.3f}  recall {res['recall']:.3f}  ({lm.frames} frames)")
        (out / "lanemap.json").write_text(json.dumps(report, indent=2))
        print(f"lane maps in {out}")
        return 0

    return run_cli(body, expected=(ValueError, OSError, KeyError), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
