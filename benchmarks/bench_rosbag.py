"""What --rosbag costs the closed loop, and what a bag weighs.

    python benchmarks/bench_rosbag.py                      # 4 rounds x 150 frames, ground-truth "model"
    python benchmarks/bench_rosbag.py --model models/unet_qat.pth --threads 1
    python benchmarks/bench_rosbag.py --export 1200        # python -m rosbag.export of a 1,200-frame run

One process, rounds interleaved (without, with, without, with, ...) on the same scenario and
seed, so both arms see the same frames and the same machine load. Per arm: loop frames/s
(ticks over wall time, episode start left out), the recorder's own time per frame
(converting and writing every message: RGB, labels, depth, camera info, masks, odometry,
tf), and the bag's size per frame. The default "model" is the ground-truth mask (no
inference), so the loop is as fast as it gets and the overhead is the largest share it can be;
`--model` puts a real one in. A third arm, `--lanemap` without a bag, gives the lane map's
own cost per frame (`harness.lanemap.LaneMapper`).

`--export N` instead times the converter on a finished embedded autopilot run of N frames
(town10_rain, no masks: the world simulated again and written), wall clock of the whole
`rosbag.export` call and the recorder's share, with the load average before and after.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import shutil
import statistics
import tempfile


def _arm(scenario, frames: int, slots, predictor, out: Path, bag: Path | None, lanemap: bool = False) -> dict:
    from harness.contracts import LoopConfig
    from harness.loop import run_loop
    from harness.oracle import truth_backend
    from perception.metrics import BinaryConfusion
    from rosbag.recorder import BagRecorder
    from sim.backend import make_backend

    shutil.rmtree(out, ignore_errors=True)
    rec = BagRecorder(bag, overwrite=True) if bag is not None else None
    if lanemap:
        from harness.lanemap import LaneMapper
        from sim.embedded.town import load_town

        rec = LaneMapper(load_town(scenario.town))
    cfg = LoopConfig(scenario=scenario, out=out, frames=frames, strip_size=0)
    factory = truth_backend(predictor) if predictor is not None else make_backend
    result = run_loop(cfg, slots, BinaryConfusion, backend_factory=factory, recorder=rec)
    t = result.times
    row = {"fps": t.ticks / (t.wall_s - t.reset_s), "record_ms": 1000 * t.record_s / t.ticks}
    if bag is not None:
        row["bag_kb_per_frame"] = sum(f.stat().st_size for f in bag.iterdir()) / 1024 / t.ticks
    if lanemap:
        row["lanemap_ms"] = 1000 * rec.seconds / t.ticks
    return row


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _export(frames: int, scenario: str, seed: int, workers: int = 1) -> dict:
    """Wall time of `rosbag.export` on a finished autopilot run of `frames` frames (no masks)."""
    import time

    from perception.cpu import describe
    from rosbag.export import export_run

    tmp = Path(tempfile.mkdtemp(prefix="bench_rosbag_export_"))
    try:
        run = tmp / "run"
        run.mkdir()
        summary = {"backend": "embedded", "drive": "autopilot", "models": [], "rows": frames, "seed": seed,
                   "command": f"python run_sim.py --scenario {scenario} --frames {frames}"}  # fmt: skip
        (run / "summary.json").write_text(json.dumps(summary))
        load0 = os.getloadavg()
        cpu0 = _cpu_s()
        t0 = time.perf_counter()
        rec = export_run(run, tmp / "bag", workers=workers)
        wall = time.perf_counter() - t0
        cpu = _cpu_s() - cpu0
        size = sum(f.stat().st_size for f in (tmp / "bag").iterdir())
        return {"cpu": describe(), "frames": rec.frames, "workers": workers, "export_wall_s": wall,
                "cpu_s_all_processes": cpu, "recorder_s": rec.seconds,
                "simulating_and_rest_s": wall - rec.seconds, "bag_mb": size / 1e6,
                "loadavg_before": load0, "loadavg_after": os.getloadavg()}  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=150, help="frames per round (default 150)")
    p.add_argument("--rounds", type=int, default=4, help="rounds per arm (default 4)")
    p.add_argument("--scenario", default="town03_clear")
    p.add_argument("--model", help="a checkpoint instead of the ground-truth mask")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--export", type=int, metavar="N", help="time rosbag.export of an N-frame run instead")
    p.add_argument("--seed", type=int, default=10, help="--export: the run's seed (default 10, town10_rain's)")
    p.add_argument("--workers", type=int, default=1, help="--export: simulator processes (default 1)")
    args = p.parse_args(argv)
    if args.export:
        scenario = "town10_rain" if args.scenario == "town03_clear" else args.scenario
        print(json.dumps(_export(args.export, scenario, args.seed, args.workers), indent=2))
        return 0

    from harness.contracts import ModelSlot
    from harness.oracle import GroundTruthMaskPredictor
    from perception.cpu import describe
    from scenarios import load_scenario

    scenario = load_scenario(args.scenario)
    predictor = None
    if args.model:
        import run_sim

        cam = scenario.cameras[0]
        slots = run_sim.load_models([args.model], (cam.height, cam.width), "torch", args.threads)
    else:
        predictor = GroundTruthMaskPredictor("truth")
        slots = [ModelSlot(predictor.name, predictor)]
    tmp = Path(tempfile.mkdtemp(prefix="bench_rosbag_"))
    arms: dict[str, list[dict]] = {"without": [], "with": [], "lanemap": []}
    try:
        for _ in range(args.rounds):
            arms["without"].append(_arm(scenario, args.frames, slots, predictor, tmp / "run", None))
            arms["with"].append(_arm(scenario, args.frames, slots, predictor, tmp / "run", tmp / "bag"))
            arms["lanemap"].append(_arm(scenario, args.frames, slots, predictor, tmp / "run", None, lanemap=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {arm: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for arm, rows in arms.items()}
    rec_ms = med["with"]["record_ms"]
    summary = {
        "cpu": describe(),
        "model": args.model or "ground-truth mask (no inference)",
        "frames_x_rounds": [args.frames, args.rounds],
        "fps_without": med["without"]["fps"],
        "fps_with": med["with"]["fps"],
        "fps_ratio": med["with"]["fps"] / med["without"]["fps"],
        "wall_ms_per_frame_added": 1000 / med["with"]["fps"] - 1000 / med["without"]["fps"],
        "recorder_ms_per_frame": rec_ms,
        "bag_kb_per_frame": med["with"]["bag_kb_per_frame"],
        "export_1200_frames_s_recorder_only": 1200 * rec_ms / 1000,
        "fps_lanemap_only": med["lanemap"]["fps"],
        "lanemap_ms_per_frame": med["lanemap"]["lanemap_ms"],
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
