"""Embedded simulator speed and memory: steps/s at 320x160 and 640x320 with traffic, RSS drift.

    python benchmarks/bench_sim.py [--steps 2000] [--long 10000]
    python benchmarks/bench_sim.py --looks default,real,real+randomize --steps 600 --long 0 --no-large

Reports medians over the shipped scenarios; the simulator must never be the loop's bottleneck
(targets: >= 200 steps/s at 320x160, >= 80 at 640x320, flat memory over 10,000 steps).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace

import psutil

from perception.cpu import cpu_info  # no torch: the simulator's benchmark stays torch-free
from scenarios import list_scenarios, load_scenario
from sim import make_backend
from sim.types import CameraSpec


def steps_per_second(scenario, steps: int) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second), rendering included, after a warm-up.

    On a shared machine the wall rate drops with the load; the CPU-time rate (all threads of
    this process counted) is what the simulator costs and what an idle machine would see.
    """
    with make_backend("embedded") as sim:
        sim.reset(scenario)
        for _ in range(50):  # warm caches (weather tables, town)
            sim.step()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            sim.step()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return steps / wall, steps / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--long", type=int, default=10000, help="steps of the memory run (0 to skip)")
    ap.add_argument(
        "--looks",
        default="default",
        help="comma-separated renderer looks to time: default, real, real+randomize (docs/sim_to_real.md)",
    )
    ap.add_argument("--no-large", action="store_true", help="skip the 640x320 column")
    args = ap.parse_args()
    looks = [lk.strip() for lk in args.looks.split(",") if lk.strip()]
    bad = [lk for lk in looks if lk not in ("default", "real", "real+randomize")]
    if bad:
        ap.error(f"unknown look {bad[0]!r} (choose from default, real, real+randomize)")
    print(f"machine: {cpu_info().describe()}; python {platform.python_version()}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print("| scenario | look | traffic | 320x160 steps/s (wall / CPU) | 640x320 steps/s (wall / CPU) |")
    print("|---|---|---|---|---|")
    for name in list_scenarios():
        for look in looks:
            sc = load_scenario(name)
            sc = replace(sc, look=look.split("+")[0], randomize=look.endswith("+randomize"))
            small = replace(sc, cameras=(CameraSpec(width=320, height=160),))
            large = replace(sc, cameras=(CameraSpec(width=640, height=320),))
            s, s_cpu = steps_per_second(small, args.steps)
            big = "-"
            if not args.no_large:
                b, b_cpu = steps_per_second(large, args.steps // 2)
                big = f"{b:.0f} / {b_cpu:.0f}"
            print(f"| {name} | {look} | {sc.npc_vehicles} NPCs | {s:.0f} / {s_cpu:.0f} | {big} |", flush=True)
    if args.long:
        proc = psutil.Process()
        sc = replace(load_scenario("town03_clear"), frames=None)
        with make_backend("embedded") as sim:
            sim.reset(sc)
            for _ in range(200):
                sim.step()
            rss0 = proc.memory_info().rss
            t0 = time.perf_counter()
            for _ in range(args.long):
                sim.step()
            rss1 = proc.memory_info().rss
        rate = args.long / (time.perf_counter() - t0)
        print(
            f"\nmemory over {args.long} steps (town03_clear): RSS {rss0 / 2**20:.0f} MiB -> "
            f"{rss1 / 2**20:.0f} MiB ({(rss1 - rss0) / 2**20:+.1f} MiB), {rate:.0f} steps/s"
        )


if __name__ == "__main__":
    main()
