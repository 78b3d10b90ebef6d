"""A plain CARLA script, as CARLA users write them: nothing laneloop-specific in it.

    python scripts/carla_sync_loop.py --port 2000 --frames 100

Synchronous mode, an ego driven by the Traffic Manager, an RGB and a semantic camera whose data
is matched to each `world.tick()` by frame id through one queue per sensor; prints the share of
lane-marking pixels (RoadLine = 24) per frame and leaves the server as it found it. It runs
unchanged against a real CARLA 0.9.16 server and against `python -m sim.carla_server`.
"""

from __future__ import annotations

import argparse
import queue
import sys

import numpy as np


def retrieve(q: queue.Queue, frame: int, timeout: float):
    """The sensor data of exactly `frame`, dropping older data."""
    while True:
        data = q.get(timeout=timeout)
        if data.frame == frame:
            return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2000)
    ap.add_argument("--tm-port", type=int, default=8000)
    ap.add_argument("--frames", type=int, default=100)
    args = ap.parse_args()
    try:
        import carla
    except ImportError:
        print("error: the carla client is not installed (pip install carla==0.9.16)", file=sys.stderr)
        return 1
    client = carla.Client(args.host, args.port)
    client.set_timeout(10.0)
    try:
        world = client.get_world()
    except RuntimeError as e:
        print(f"error: no CARLA server at {args.host}:{args.port} ({e})", file=sys.stderr)
        return 1
    found = world.get_settings()
    settings = world.get_settings()
    settings.synchronous_mode = True
    settings.fixed_delta_seconds = 0.05
    world.apply_settings(settings)
    tm = client.get_trafficmanager(args.tm_port)
    tm.set_synchronous_mode(True)
    actors = []
    try:
        lib = world.get_blueprint_library()
        bp = lib.find("vehicle.lincoln.mkz_2020")
        bp.set_attribute("role_name", "hero")
        ego = world.spawn_actor(bp, world.get_map().get_spawn_points()[0])
        actors.append(ego)
        mount = carla.Transform(carla.Location(x=0.4, z=1.6), carla.Rotation(pitch=-10.0))
        queues = []
        for kind in ("sensor.camera.rgb", "sensor.camera.semantic_segmentation"):
            cbp = lib.find(kind)
            cbp.set_attribute("image_size_x", "320")
            cbp.set_attribute("image_size_y", "160")
            cam = world.spawn_actor(cbp, mount, attach_to=ego)
            actors.append(cam)
            q: queue.Queue = queue.Queue()
            cam.listen(q.put)
            queues.append(q)
        ego.set_autopilot(True, args.tm_port)
        for _ in range(args.frames):
            frame = world.tick()
            rgb, sem = (retrieve(q, frame, 5.0) for q in queues)
            labels = np.frombuffer(sem.raw_data, np.uint8).reshape(sem.height, sem.width, 4)[..., 2]
            speed = ego.get_velocity().length()
            print(
                f"frame {frame} rgb {rgb.width}x{rgb.height} roadline {100 * (labels == 24).mean():.1f} % "
                f"speed {speed:.1f} m/s",
                flush=True,
            )
    finally:
        for a in reversed(actors):
            if a.type_id.startswith("sensor."):
                a.stop()
        client.apply_batch_sync([carla.command.DestroyActor(a.id) for a in actors])
        tm.set_synchronous_mode(False)
        world.apply_settings(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
