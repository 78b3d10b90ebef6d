"""OpenDRIVE maps: load time (first, cached), lane centres vs carla.Map, sim speed and a 2 km drive.

    python benchmarks/bench_maps.py [--dir ../shared/data/opendrive] [--steps 1500] [--km 2]

Loads run in fresh processes (an empty cache, then the filled one), so neither the in-process
cache nor an imported module hides a cost. Wall and CPU seconds are both given: on a shared
machine the wall time grows with the load, the CPU time is what the build costs.
Targets (issue 17): Town03 <= 5 s first, <= 0.5 s cached; centres <= 5 cm; >= 200 steps/s at
320x160 with 16 NPCs; 2 km of autopilot without leaving the lane or colliding.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perception.cpu import cpu_info  # noqa: E402
from scenarios import Scenario  # noqa: E402
from sim import make_backend  # noqa: E402
from sim.types import CameraSpec  # noqa: E402

LOAD = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from sim.maps.load import load_map
town, md = load_map(sys.argv[1])
h, w = town.ground.data.shape[:2]
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                  "lanes": len(town.network.lanes), "cells": int(h * w)}))
"""


def load_times(path: Path) -> tuple[dict, dict]:
    """(first, cached) load of a file in fresh processes sharing one new cache folder."""
    with tempfile.TemporaryDirectory(prefix="bench-maps-") as cache:
        env = dict(os.environ, LANELOOP_CACHE=cache, PYTHONPATH=str(ROOT))
        out = []
        for _ in range(2):
            cp = subprocess.run(
                [sys.executable, "-c", LOAD, str(path)], env=env, capture_output=True, text=True, check=True
            )
            out.append(json.loads(cp.stdout.strip().splitlines()[-1]))
    return out[0], out[1]


def centre_errors(path: Path) -> np.ndarray | None:
    """Distance of every carla.Map driving waypoint (1 m apart, y negated) to our lane piece."""
    try:
        import carla
    except ImportError:
        return None
    from sim.maps.convert import build_map
    from sim.maps.opendrive import parse

    text = path.read_text()
    md = build_map(parse(text, str(path)))
    out = []
    for w in carla.Map(path.stem, text).generate_waypoints(1.0):
        line = md.pieces[(str(w.road_id), w.section_id, w.lane_id)]
        p = np.array([w.transform.location.x, -w.transform.location.y])
        a, d = line[:-1], np.diff(line, axis=0)
        t = np.clip(((p - a) * d).sum(1) / np.maximum((d**2).sum(1), 1e-12), 0, 1)
        out.append(np.sqrt((((a + t[:, None] * d) - p) ** 2).sum(1)).min())
    return np.array(out)


def steps_per_second(sc: Scenario, steps: int) -> tuple[float, float]:
    with make_backend("embedded") as sim:
        sim.reset(sc)
        for _ in range(50):
            sim.step()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            sim.step()
        return steps / (time.perf_counter() - t0), steps / (time.process_time() - c0)


def drive(path: Path, km: float, seed: int) -> dict:
    """The autopilot (no rendering) for `km` with 16 NPCs: worst lateral offset, collisions."""
    sc = Scenario(map=str(path), seed=seed, npc_vehicles=16, frames=None, cameras=(CameraSpec(width=64, height=32),))
    worst, collisions, steps = 0.0, 0, 0
    with make_backend("embedded") as sim:
        obs = sim.reset(sc)
        while obs.ego.distance < km * 1000 and steps < 200_000:
            obs = sim.step(render=False)
            steps += 1
            worst = max(worst, abs(obs.ego.lateral_offset))
            collisions += obs.ego.collision
    return {
        "km": obs.ego.distance / 1000,
        "minutes": steps * sc.dt / 60,
        "worst_lateral_m": worst,
        "collision_frames": collisions,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=str(ROOT.parent / "shared" / "data" / "opendrive"))
    ap.add_argument("--towns", default="Town01,Town03,Town10HD")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--km", type=float, default=2.0)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    folder = Path(args.dir)
    files = [folder / f"{t}.xodr" for t in args.towns.split(",")]
    if not all(f.is_file() for f in files):
        print(
            f"error: {folder} lacks {', '.join(f.name for f in files if not f.is_file())} "
            "(point --dir at a folder of CARLA .xodr files)",
            file=sys.stderr,
        )
        return 1
    print(f"machine: {cpu_info().describe()}; python {platform.python_version()}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    figures: dict = {"machine": cpu_info().describe(), "towns": {}}
    print(
        "\n| map | lanes | raster cells | first load wall / CPU s | cached wall / CPU s | centre error vs carla.Map "
        "max / p99 / mean (waypoints) |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for f in files:
        first, cached = load_times(f)
        err = centre_errors(f)
        e = (
            f"{err.max() * 100:.2f} / {np.percentile(err, 99) * 100:.2f} / {err.mean() * 100:.3f} cm ({len(err)})"
            if err is not None
            else "carla not installed"
        )
        print(
            f"| {f.name} | {first['lanes']} | {first['cells'] / 1e6:.0f} M | {first['wall']:.2f} / {first['cpu']:.2f}"
            f" | {cached['wall']:.2f} / {cached['cpu']:.2f} | {e} |",
            flush=True,
        )
        figures["towns"][f.stem] = {
            "first": first,
            "cached": cached,
            "centre_error_max_m": None if err is None else float(err.max()),
        }
    town03 = next((f for f in files if f.stem == "Town03"), files[0])
    cam = (CameraSpec(width=320, height=160),)
    print(f"\nsteps/s at 320x160 with 16 NPCs ({args.steps} steps after 50, rendering included), wall / CPU:")
    for label, sc in (
        ("procedural Town03", Scenario(town="Town03", seed=3, npc_vehicles=16, frames=None, cameras=cam)),
        (town03.name, Scenario(map=str(town03), seed=3, npc_vehicles=16, frames=None, cameras=cam)),
    ):
        wall, cpu = steps_per_second(sc, args.steps)
        print(f"  {label}: {wall:.0f} / {cpu:.0f}", flush=True)
        figures[f"steps_per_s {label}"] = {"wall": wall, "cpu": cpu}
    print(f"\nautopilot, {args.km:g} km, 16 NPCs:")
    for f in files:
        if f.stem in ("Town03", "Town10HD"):
            d = drive(f, args.km, seed=1)
            print(
                f"  {f.name}: {d['km']:.2f} km in {d['minutes']:.1f} simulated min, worst lateral offset "
                f"{d['worst_lateral_m']:.2f} m, {d['collision_frames']} colliding frames",
                flush=True,
            )
            figures["towns"][f.stem]["drive"] = d
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
