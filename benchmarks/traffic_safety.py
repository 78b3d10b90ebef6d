"""Does the simulator's own traffic crash? Autopilot drives over the public routes and the recorder's towns.

Counts, per drive: ego-vehicle collisions (a new contact with a traffic car), car-car overlaps
between traffic cars (a pair that starts to overlap), ego contact with static scenery, and the
longest time the ego stood still (a locked junction shows up there). Rendering is off: traffic
does not depend on it. `--first-come on|off` overrides the backend's junction rule for an A/B.

    python benchmarks/traffic_safety.py --set routes --steps 3000
    python benchmarks/traffic_safety.py --set recorder --steps 2400 --first-come off
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from collect.plan import episode_seed
from harness.drive.route import load_routes
from scenarios.schema import Scenario
from sim.embedded.backend import EGO_SIZE, EmbeddedBackend
from sim.embedded.traffic import obb_overlap

# The recorder's towns and seeds in scripts/pipeline.py's full setting: (town, recording seed, episodes).
RECORDER = (("Town03", 100, 12), ("Town05", 101, 12), ("Town01", 102, 12), ("Town10HD", 900, 6))


@dataclass
class Drive:
    name: str
    steps: int = 0
    metres: float = 0.0
    ego_hits: int = 0  # new contacts ego <-> traffic car
    npc_overlaps: int = 0  # new overlapping pairs of traffic cars
    static_hits: int = 0  # new contacts ego <-> scenery
    longest_stop_s: float = 0.0


def _box(v) -> tuple:
    return (v.x, v.y, v.yaw, v.size[0], v.size[1])


def drive(name: str, scenario: Scenario, steps: int, first_come: str) -> Drive:
    """One autopilot drive without rendering; counts contacts as events (a contact that starts)."""
    sim = EmbeddedBackend()
    sim.reset(replace(scenario, frames=None, metres=None, cameras=scenario.cameras[:1]))
    if first_come != "auto":
        sim.traffic.first_come = first_come == "on"
    d = Drive(name)
    ego_prev: set[int] = set()
    npc_prev: set[tuple[int, int]] = set()
    static_prev = False
    stop = 0
    for _ in range(steps):
        obs = sim.step(None, render=False)
        vs = sim.traffic.vehicles
        ego = vs[0]
        me = (ego.x, ego.y, ego.yaw, EGO_SIZE[0], EGO_SIZE[1])
        ego_now = {o.id for o in vs[1:] if obb_overlap(me, _box(o))}
        d.ego_hits += len(ego_now - ego_prev)
        ego_prev = ego_now
        npc_now = {(a.id, b.id) for a, b in itertools.combinations(vs[1:], 2) if obb_overlap(_box(a), _box(b))}
        d.npc_overlaps += len(npc_now - npc_prev)
        npc_prev = npc_now
        static_now = obs.ego.collision and not ego_now
        d.static_hits += int(static_now and not static_prev)
        static_prev = static_now
        stop = stop + 1 if ego.v < 0.1 else 0
        d.longest_stop_s = max(d.longest_stop_s, stop * scenario.dt)
        d.steps += 1
    d.metres = sim.distance
    sim.close()
    return d


def drives(which: str) -> list[tuple[str, Scenario]]:
    """(name, scenario) of every drive of a set."""
    out = []
    if which in ("routes", "all"):
        root = Path(__file__).resolve().parents[1] / "routes"
        out += [(f"route {r.name}", r.scenario()) for r in load_routes(root)]
    if which in ("recorder", "all"):
        for town, seed, episodes in RECORDER:
            for e in range(episodes):
                s = episode_seed(seed, e)
                out.append((f"{town} seed {seed} ep {e}", Scenario(name="record", town=town, seed=s, ego_spawn=None)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", choices=("routes", "recorder", "all"), default="all")
    p.add_argument("--steps", type=int, default=2400, help="simulator steps per drive (20 Hz)")
    p.add_argument("--first-come", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    if args.steps < 1:
        print(f"error: --steps must be >= 1, got {args.steps} (give a positive count)", file=sys.stderr)
        return 1
    rows = []
    for name, sc in drives(args.set):
        d = drive(name, sc, args.steps, args.first_come)
        rows.append(d)
        print(
            f"{d.name:32s} {d.metres:7.0f} m  ego-car {d.ego_hits}  car-car {d.npc_overlaps}  "
            f"ego-scenery {d.static_hits}  longest stop {d.longest_stop_s:5.1f} s",
            flush=True,
        )
    km = sum(r.metres for r in rows) / 1000
    tot = {k: sum(getattr(r, k) for r in rows) for k in ("ego_hits", "npc_overlaps", "static_hits")}
    worst = max((r.longest_stop_s for r in rows), default=0.0)
    print(f"total: {len(rows)} drives, {km:.1f} km, {tot}, longest stop {worst:.1f} s (first_come={args.first_come})")
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 0 if not math.isnan(km) else 1


if __name__ == "__main__":
    sys.exit(main())
