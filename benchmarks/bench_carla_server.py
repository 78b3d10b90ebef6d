"""What the CARLA wire costs: ticks/s through the real carla client vs the embedded backend in-process.

    python benchmarks/bench_carla_server.py [--ticks 200] [--town Town03] [--depth]

Both sides run the same world: one ego, no traffic, one RGB + one semantic camera at 320x160,
synchronous 0.05 s ticks under a constant throttle. Through the client a tick is
`world.tick()` plus waiting for both images of that frame and decoding them to numpy; in-process
it is `EmbeddedBackend.step()`. The server runs as a subprocess (the client holds the GIL while it
waits), so on a 2-core machine server and client share the cores. The two are measured in
alternating rounds in one run and reported as a ratio (goal: the wire costs <= 30 %).
With --depth a depth camera joins on the same mount (decoded to metres on the client; the
in-process side computes sim/depth.py's depth of its frame, the same work).
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perception.cpu import describe  # noqa: E402  (no torch: perception.cpu is plain Python)
from scenarios.schema import Scenario  # noqa: E402
from sim import make_backend  # noqa: E402
from sim.carla_backend import camera_pose  # noqa: E402
from sim.carla_server.layouts import depth_from_bgra  # noqa: E402
from sim.depth import depth_image  # noqa: E402
from sim.types import CameraSpec, Control  # noqa: E402

CAM = CameraSpec(name="front", width=320, height=160)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(town: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.carla_server", "--port", str(port), "--town", town],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    "error: the CARLA server did not start (run python -m sim.carla_server to see why)"
                ) from None
            time.sleep(0.1)


class WireRun:
    """A synchronous client session with an ego and both cameras, ticked on demand."""

    def __init__(self, carla, port: int, depth: bool = False) -> None:
        self.carla = carla
        self.client = carla.Client("127.0.0.1", port)
        self.client.set_timeout(10.0)
        self.world = self.client.get_world()
        s = self.world.get_settings()
        s.synchronous_mode, s.fixed_delta_seconds = True, 0.05
        self.world.apply_settings(s)
        lib = self.world.get_blueprint_library()
        start = self.world.get_map().get_spawn_points()[0]
        self.ego = self.world.spawn_actor(lib.find("vehicle.lincoln.mkz_2020"), start)
        (x, y, z), (p, yw, r) = camera_pose(CAM)
        mount = carla.Transform(carla.Location(x=x, y=y, z=z), carla.Rotation(pitch=p, yaw=yw, roll=r))
        self.cams, self.queues = [], []
        kinds = ["sensor.camera.rgb", "sensor.camera.semantic_segmentation"] + ["sensor.camera.depth"] * depth
        for kind in kinds:
            bp = lib.find(kind)
            bp.set_attribute("image_size_x", str(CAM.width))
            bp.set_attribute("image_size_y", str(CAM.height))
            cam = self.world.spawn_actor(bp, mount, attach_to=self.ego)
            q: queue.Queue = queue.Queue()
            cam.listen(q.put)
            self.cams.append(cam)
            self.queues.append(q)
        self.ego.apply_control(carla.VehicleControl(throttle=0.3))

    def tick(self) -> None:
        f = self.world.tick()
        for k, q in enumerate(self.queues):
            while True:
                d = q.get(timeout=10.0)
                if d.frame == f:
                    bgra = np.frombuffer(d.raw_data, np.uint8).reshape(d.height, d.width, 4)
                    if k == 2:
                        depth_from_bgra(bgra)  # metres, as a user decodes raw_data
                    else:
                        bgra[..., 2].copy()
                    break

    def close(self) -> None:
        for c in self.cams:
            c.stop()
            c.destroy()
        self.ego.destroy()
        s = self.world.get_settings()
        s.synchronous_mode, s.fixed_delta_seconds = False, None
        self.world.apply_settings(s)


def rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ticks", type=int, default=200, help="ticks per side, in 4 alternating rounds")
    ap.add_argument("--town", default="Town03")
    ap.add_argument("--depth", action="store_true", help="add a depth camera (and depth in-process)")
    args = ap.parse_args()
    try:
        import carla
    except ImportError:
        print("error: the carla client is not installed (pip install 'laneloop[carla]')", file=sys.stderr)
        return 1
    print(f"CPU: {describe()}; load average {os.getloadavg()[0]:.2f}")
    proc, port = _start_server(args.town)
    try:
        wire = WireRun(carla, port, depth=args.depth)
        emb = make_backend("embedded")
        emb.reset(Scenario(town=args.town, seed=0, npc_vehicles=0, ego_spawn=0, cameras=(CAM,), frames=10**6))
        ctrl = Control(throttle=0.3)

        def emb_tick() -> None:
            obs = emb.step(ctrl)
            if args.depth:
                depth_image(CAM, obs.cameras["front"].labels)

        for _ in range(10):  # warm-up both
            wire.tick()
            emb_tick()
        per = max(args.ticks // 4, 1)
        wire_rates, emb_rates = [], []
        for _ in range(4):
            wire_rates.append(rate(wire.tick, per))
            emb_rates.append(rate(emb_tick, per))
        wire.close()
        emb.close()
    finally:
        proc.terminate()
        proc.wait(10)
    w, e = statistics.median(wire_rates), statistics.median(emb_rates)
    cams = "one RGB + one semantic" + (" + one depth" if args.depth else "") + " camera"
    print(f"{cams} at {CAM.width}x{CAM.height}, sync 0.05 s, {args.town}, no traffic")
    print(f"  embedded backend in-process : {e:7.1f} ticks/s  (rounds: {', '.join(f'{r:.0f}' for r in emb_rates)})")
    print(f"  real carla client over wire : {w:7.1f} ticks/s  (rounds: {', '.join(f'{r:.0f}' for r in wire_rates)})")
    print(f"  wire / embedded = {w / e:.2f} (the wire costs {100 * (1 - w / e):.0f} % of the rate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
