"""Recording throughput: recorded frames/s (simulation + PNG encoding + index) and where the time goes.

    python benchmarks/bench_collect.py --frames 300 --width 320 --height 160

Target (issue 4): >= 100 recorded frames/s at 320x160 on the embedded backend, 2 cores.
Measures, for each --every K, a full `record()` into a temporary folder, then the parts
alone on the main thread: the simulator stepping K ticks per frame, PNG encoding of the
RGB and the label image, writing both files atomically, and one index rewrite.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import os
import tempfile
import time
from dataclasses import replace

from collect.record import episode_scenario, plan_recording, record
from dataset.format import encode_label_png, encode_rgb_png, tag_histogram, write_index
from plumbing import atomic_write_bytes
from scenarios import Scenario
from sim.backend import make_backend


def bench(
    frames: int, width: int, height: int, every: int, episodes: int, workers: int, town: str, backend: str
) -> dict[str, float]:
    """One end-to-end recording plus the parts timed alone; seconds and rates in a dict."""
    scenario = Scenario(name="bench", town=town, ego_spawn=None)
    scenario = replace(scenario, cameras=(replace(scenario.cameras[0], width=width, height=height),))
    manifest = plan_recording(
        scenario, backend=backend, episodes=episodes, frames=frames, every=every, weather="cycle", seed=1
    )
    with tempfile.TemporaryDirectory(prefix="bench_collect_") as tmp:
        # build the town once first (cached per process): a one-off cost, reported apart
        t0 = time.perf_counter()
        with make_backend(backend) as sim:
            sim.reset(episode_scenario(manifest, manifest.episodes[0]), seed=0)
        town_s = time.perf_counter() - t0
        out = Path(tmp) / "ds"
        cpu0, main0 = time.process_time(), time.thread_time()
        res = record(out, manifest, workers=workers)
        cpu_s, main_s = time.process_time() - cpu0, time.thread_time() - main0
        n = res.new_frames
        row = {
            "every": every,
            "frames": n,
            "wall_s": res.seconds,
            "fps": n / res.seconds,
            "town_s": town_s,
            "reset_ms": 1e3 * res.reset_s / len(manifest.episodes),
            "cpu_ms": 1e3 * cpu_s / n,
            "main_ms": 1e3 * main_s / n,
            # on 2 idle cores the main thread (sim) and the total CPU/2 bound the rate
            "fps_idle": 1e3 / max(1e3 * main_s / n, 1e3 * cpu_s / n / 2),
            "sim_ms": 1e3 * res.sim_s / n,
            "enc_ms": 1e3 * res.writer.encode_s / n,
            "write_ms": 1e3 * res.writer.write_s / n,
            "index_ms": 1e3 * res.writer.index_s / n,
            "wait_ms": 1e3 * res.writer.wait_s / n,
        }
        # the parts alone, on the main thread
        sim = make_backend(backend)
        plan = manifest.episodes[0]
        obs = sim.reset(episode_scenario(manifest, plan), seed=plan.seed)
        m = min(100, plan.frames)
        captured = []
        t0 = time.perf_counter()
        for _ in range(m):
            for _ in range(every):
                obs = sim.step(None)
            captured.append((obs.camera.rgb.copy(), obs.camera.labels.copy()))
        row["sim_alone_ms"] = 1e3 * (time.perf_counter() - t0) / m
        sim.close()
        t0 = time.perf_counter()
        encoded = [(encode_rgb_png(rgb), encode_label_png(lab), tag_histogram(lab)) for rgb, lab in captured]
        row["enc_alone_ms"] = 1e3 * (time.perf_counter() - t0) / m
        t0 = time.perf_counter()
        for i, (a, b, _) in enumerate(encoded):
            atomic_write_bytes(Path(tmp) / f"a{i}.png", a)
            atomic_write_bytes(Path(tmp) / f"b{i}.png", b)
        row["write_alone_ms"] = 1e3 * (time.perf_counter() - t0) / m
        t0 = time.perf_counter()
        write_index(tmp, res.rows)
        row["index_rewrite_ms"] = 1e3 * (time.perf_counter() - t0)
        row["rgb_kb"] = sum(len(a) for a, _, _ in encoded) / m / 1024
        row["label_kb"] = sum(len(b) for _, b, _ in encoded) / m / 1024
    return row


def _table(cols: list[tuple[str, str, str]], rows: list[dict[str, float]]) -> None:
    print(" ".join(f"{title:>{max(len(title), 7)}}" for title, _, _ in cols))
    for r in rows:
        print(" ".join(f"{r[key]:>{max(len(title), 7)}{fmt}}" for title, key, fmt in cols))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Benchmark data recording (frames/s and time split).",
        epilog="example:\n  python benchmarks/bench_collect.py --frames 300 --every 1 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--frames", type=int, default=300, help="recorded frames per run (default 300)")
    p.add_argument("--episodes", type=int, default=3, help="episodes per run (default 3)")
    p.add_argument("--every", type=int, nargs="+", default=[1, 2], help="tick strides to measure (default 1 2)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=160)
    p.add_argument("--workers", type=int, default=2, help="PNG writer threads (default 2)")
    p.add_argument("--town", default="Town03")
    p.add_argument("--backend", default="embedded")
    args = p.parse_args(argv)
    print(
        f"# {args.backend} backend, {args.width}x{args.height}, {args.frames} frames in {args.episodes} "
        f"episodes, {args.workers} writer threads, {os.cpu_count()} CPUs"
    )
    rows = [
        bench(args.frames, args.width, args.height, k, args.episodes, args.workers, args.town, args.backend)
        for k in args.every
    ]
    e2e = [
        ("every", "every", "d"),
        ("frames", "frames", "d"),
        ("wall s", "wall_s", ".2f"),
        ("frames/s", "fps", ".1f"),
        ("cpu ms", "cpu_ms", ".2f"),
        ("main ms", "main_ms", ".2f"),
        ("fps@idle", "fps_idle", ".1f"),
        ("town s", "town_s", ".2f"),
        ("reset ms", "reset_ms", ".1f"),
        ("sim ms", "sim_ms", ".2f"),
        ("enc ms", "enc_ms", ".2f"),
        ("write ms", "write_ms", ".2f"),
        ("index ms", "index_ms", ".2f"),
        ("wait ms", "wait_ms", ".2f"),
    ]
    parts = [
        ("every", "every", "d"),
        ("sim ms", "sim_alone_ms", ".2f"),
        ("encode ms", "enc_alone_ms", ".2f"),
        ("write ms", "write_alone_ms", ".2f"),
        ("index rewrite ms", "index_rewrite_ms", ".1f"),
        ("rgb KiB", "rgb_kb", ".1f"),
        ("label KiB", "label_kb", ".1f"),
    ]
    print(
        "\nend to end: record(), per recorded frame (reset: per episode, town: first build,\n"
        "before the run; encode/write: worker threads, overlapping the sim;\n"
        "cpu/main: CPU time of all threads / the main thread; fps@idle = 1000 / max(main, cpu / 2),\n"
        "the rate on 2 otherwise idle cores)"
    )
    _table(e2e, rows)
    print("\nparts alone: main thread, per recorded frame (index rewrite: whole index, once)")
    _table(parts, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
