"""Closed-loop numbers: harness overhead against int8 inference, and lane keeping on masks.

    python benchmarks/bench_loop.py overhead --model models/unet_qat.pth
    python benchmarks/bench_loop.py lanekeeping --model models/unet_float.pth --model models/unet_ptq.pth \\
        --model models/unet_qat.pth

overhead: one autopilot run of the loop (view off, logging on) with one model at the
default camera size; per frame it splits the wall time into the model's inference and
everything else (simulation step, pre/post-processing, IoU, Parquet logging, bookkeeping),
all measured in the same run. Target: harness <= 25% of the int8 U-Net's inference.

lanekeeping: every model drives every scenario (``--drive model``) for up to ``--km``,
with and without the real-time budget, with the junction policies asked for; one table
of distance, departures per km, lateral offsets, collisions, why an episode ended, IoU and
latency. Target: the shipped QAT U-Net >= 2 km with <= 1 departure per km on each shipped
scenario. Outputs: a Markdown table on stdout (and --md FILE) and the runs' folders.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import time
from dataclasses import replace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ("unet_float.pth", "unet_ptq.pth", "unet_qat.pth")
SCENARIOS = ("town03_clear", "town03_night", "town10_rain", "highway_curves")


def machine() -> str:
    """One line naming the machine the numbers come from."""
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    from perception.cpu import cpu_info

    return f"{cpu_info().describe()}; torch {torch.__version__}, load average {load[0]:.1f} at start"


def _slots(models: list[str], camera_hw: tuple[int, int], threads: int | None, runtime: str) -> list[Any]:
    import run_sim

    return run_sim.load_models(models, camera_hw, runtime=runtime, threads=threads, announce=True)


def overhead(model: str, frames: int, threads: int | None, runtime: str, out: Path) -> dict[str, Any]:
    """Harness overhead vs inference per frame, autopilot drive, one model, view off."""
    from harness.contracts import LoopConfig
    from harness.loop import run_loop
    from harness.outputs import prepare_out
    from perception.metrics import BinaryConfusion
    from scenarios import load_scenario

    scenario = replace(load_scenario("town03_clear"), frames=frames, metres=None)
    cam = scenario.cameras[0]
    (slot,) = _slots([model], (cam.height, cam.width), threads, runtime)
    prepare_out(out, overwrite=True)
    cfg = LoopConfig(scenario=scenario, out=out, threads=threads or os.cpu_count(), runtime=runtime, strip_size=8)
    result = run_loop(cfg, [slot], BinaryConfusion)
    t = result.times.per_tick_ms()
    inference = t["inference_ms"]
    harness = t["harness_ms"]
    row = {
        "model": slot.name,
        "scheme": slot.scheme,
        "description": slot.info.get("description"),
        "frames": result.times.ticks,
        "camera": f"{cam.width}x{cam.height}",
        "threads": cfg.threads,
        "wall_ms": t["wall_ms"],
        "inference_ms": inference,
        "harness_ms": harness,
        "harness_share_of_inference": harness / inference if inference > 0 else float("nan"),
        "split_ms": {k: t[k] for k in ("sim_ms", "preprocess_ms", "postprocess_ms", "score_ms", "log_ms", "other_ms")},
        "unaccounted_ms": harness
        - sum(t[k] for k in ("sim_ms", "preprocess_ms", "postprocess_ms", "score_ms", "log_ms", "other_ms")),
        "latency_p50_ms": result.summary["models"][0]["latency_ms"]["p50"],
        "mean_iou": result.summary["models"][0]["mean_iou"],
    }
    return row


def loop_latency(model: str, frames: int, rounds: int, threads: int | None, runtime: str, out: Path) -> dict[str, Any]:
    """The model's latency alone (as bench_quant times it) against the same model inside the loop.

    Interleaved rounds in one process: the predictor on recorded frames of the scenario with
    nothing else running, then the autopilot loop with the simulator stepping beside the
    model (the default) and after it (`--overlap off`). Same frames, same predictor object.
    """
    import numpy as np

    from harness.contracts import LoopConfig
    from harness.loop import run_loop
    from harness.outputs import prepare_out
    from perception.metrics import BinaryConfusion
    from scenarios import load_scenario
    from sim.backend import make_backend

    scenario = replace(load_scenario("town03_clear"), frames=frames, metres=None)
    cam = scenario.cameras[0]
    (slot,) = _slots([model], (cam.height, cam.width), threads, runtime)
    backend = make_backend()
    try:
        obs = backend.reset(scenario, seed=scenario.seed)
        rgbs = [obs.camera.rgb]
        for _ in range(frames - 1):
            rgbs.append(backend.step(None).camera.rgb)
    finally:
        backend.close()
    for rgb in rgbs[:10]:  # warm-up, as the loop's first frames are
        slot.predictor.predict_timed(rgb)

    def alone() -> list[float]:
        ms = []
        for rgb in rgbs:
            _, t = slot.predictor.predict_timed(rgb)
            ms.append(t.preprocess_ms + t.inference_ms + t.postprocess_ms)
        return ms

    def in_loop(overlap: bool) -> list[float]:
        run = out / ("overlap" if overlap else "sequential")
        prepare_out(run, overwrite=True)
        cfg = LoopConfig(
            scenario=scenario, out=run, threads=threads or os.cpu_count(), runtime=runtime, strip_size=0,
            overlap_sim=overlap, progress=False,
        )  # fmt: skip
        result = run_loop(cfg, [slot], BinaryConfusion)
        m = result.summary["models"][0]
        return [m["latency_ms"]["p50"], m["latency_ms"]["p90"], result.times.per_tick_ms()["wall_ms"]]

    p50 = {"alone": [], "overlap": [], "sequential": []}
    p90 = {k: [] for k in p50}
    wall = {"overlap": [], "sequential": []}
    for r in range(rounds):
        ms = alone()
        p50["alone"].append(float(np.percentile(ms, 50)))
        p90["alone"].append(float(np.percentile(ms, 90)))
        for key, overlap in (("overlap", True), ("sequential", False)):
            a, b, w = in_loop(overlap)
            p50[key].append(a)
            p90[key].append(b)
            wall[key].append(w)
        print(
            f"  round {r + 1}/{rounds}: p50 alone {p50['alone'][-1]:.2f} ms, loop overlap {p50['overlap'][-1]:.2f}, "
            f"sequential {p50['sequential'][-1]:.2f}",
            file=sys.stderr,
        )
    med = {k: float(np.median(v)) for k, v in p50.items()}
    return {
        "model": slot.name,
        "runtime": getattr(slot.predictor, "runtime", runtime),
        "threads": threads or os.cpu_count(),
        "frames": frames,
        "rounds": rounds,
        "p50_ms": med,
        "p90_ms": {k: float(np.median(v)) for k, v in p90.items()},
        "loop_wall_ms_per_frame": {k: float(np.median(v)) for k, v in wall.items()},
        "ratio_overlap": med["overlap"] / med["alone"],
        "ratio_sequential": med["sequential"] / med["alone"],
        "rounds_p50_ms": p50,
    }


def loop_latency_md(row: dict[str, Any]) -> str:
    def verdict(r: float) -> str:
        return "within 15 %" if r <= 1.15 else "NOT within 15 %"

    p50, p90, wall = row["p50_ms"], row["p90_ms"], row["loop_wall_ms_per_frame"]
    return "\n".join(
        [
            f"### Loop latency vs the model alone ({row['model']}, runtime {row['runtime']}, {row['threads']} threads, "
            f"{row['frames']} frames x {row['rounds']} interleaved rounds, medians of the rounds)",
            "",
            "| where | p50 ms | p90 ms | loop ms per frame | p50 / alone |",
            "|---|---:|---:|---:|---:|",
            f"| alone (bench) | {p50['alone']:.2f} | {p90['alone']:.2f} | - | 1.00 |",
            f"| loop, simulator beside the model (`--overlap on`) | {p50['overlap']:.2f} | {p90['overlap']:.2f} | "
            f"{wall['overlap']:.2f} | {row['ratio_overlap']:.2f} ({verdict(row['ratio_overlap'])}) |",
            f"| loop, simulator after the model (`--overlap off`) | {p50['sequential']:.2f} | "
            f"{p90['sequential']:.2f} | "
            f"{wall['sequential']:.2f} | {row['ratio_sequential']:.2f} ({verdict(row['ratio_sequential'])}) |",
        ]
    )


def lanekeeping(
    models: list[str],
    scenarios: list[str],
    km: float,
    realtime: list[bool],
    junctions: list[str],
    threads: int | None,
    runtime: str,
    out_root: Path,
    with_oracle: bool = False,
) -> list[dict[str, Any]]:
    """Each model drives each scenario on its own masks; one row per (scenario, model, realtime, junctions)."""
    from harness.contracts import LoopConfig, ModelSlot
    from harness.loop import run_loop
    from harness.oracle import GroundTruthMaskPredictor, truth_backend
    from harness.outputs import prepare_out
    from perception.metrics import BinaryConfusion
    from scenarios import load_scenario
    from sim.backend import make_backend

    rows = []
    slots = None
    oracle = GroundTruthMaskPredictor() if with_oracle else None
    factory = truth_backend(oracle) if oracle is not None else make_backend
    for name in scenarios:
        base = load_scenario(name)
        # Up to `km` kilometres, with a frame cap at 1.6x the time at target speed.
        cap = int(1.6 * km * 1000.0 / (base.target_speed * base.dt))
        scenario = replace(base, metres=km * 1000.0, frames=cap)
        cam = scenario.cameras[0]
        if slots is None:
            slots = _slots(models, (cam.height, cam.width), threads, runtime) if models else []
            if oracle is not None:
                slots.append(ModelSlot(oracle.name, oracle, info={"description": "ground-truth mask (ceiling)"}))
        for policy in junctions:
            for rt in realtime:
                out = out_root / f"{name}_{policy}{'_rt' if rt else ''}"
                prepare_out(out, overwrite=True)
                cfg = LoopConfig(
                    scenario=scenario, out=out, drive="model", realtime=rt, junctions=policy,
                    threads=threads or os.cpu_count(), runtime=runtime, strip_size=4,
                )  # fmt: skip
                t0 = time.perf_counter()
                result = run_loop(cfg, slots, BinaryConfusion, backend_factory=factory)
                took = time.perf_counter() - t0
                rows.extend(summary_rows(result.summary, out, took))
                print(f"  {name} junctions={policy} realtime={rt}: {took:.0f} s", file=sys.stderr)
    return rows


def summary_rows(summary: dict[str, Any], run: Path, wall_s: float | None = None) -> list[dict[str, Any]]:
    """One lane-keeping table row per model of a `--drive model` run's summary."""
    rows = []
    for m in summary["models"]:
        lk = m.get("lane_keeping") or {}
        rows.append(
            {
                "scenario": summary["scenario"],
                "model": m["name"],
                "scheme": m["scheme"],
                "realtime": bool(summary["realtime"]),
                "junctions": summary["junctions"],
                "km": lk.get("distance_m", 0.0) / 1000.0,
                "departures": lk.get("lane_departures"),
                "departures_per_km": lk.get("departures_per_km"),
                "mean_abs_offset_m": lk.get("mean_abs_offset_m"),
                "max_abs_offset_m": lk.get("max_abs_offset_m"),
                "collisions": lk.get("collisions"),
                "end": m["episode"]["end_reason"],
                "mean_iou": m.get("mean_iou"),
                "p50_ms": m["latency_ms"]["p50"],
                "deadline_misses": m.get("deadline_misses"),
                "frames": m.get("frames"),
                "threads": summary.get("threads"),
                "run": str(run),
                "wall_s": wall_s,
            }
        )
    return rows


def table_from_runs(roots: list[Path]) -> list[dict[str, Any]]:
    """Lane-keeping rows of every finished `--drive model` run under `roots`, in a stable order."""
    rows = []
    for root in roots:
        for path in sorted(root.rglob("summary.json")):
            summary = json.loads(path.read_text())
            if summary.get("drive") == "model" and not summary.get("interrupted"):
                rows.extend(summary_rows(summary, path.parent))
    order = {name: i for i, name in enumerate(SCENARIOS)}
    schemes = {"float": 0, "ptq": 1, "qat": 2}
    rows.sort(key=lambda r: (r["realtime"], order.get(r["scenario"], 99), r["scenario"], r["junctions"],
                             schemes.get(r["scheme"], 9), r["model"]))  # fmt: skip
    return rows


def _f(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def overhead_md(row: dict[str, Any]) -> str:
    s = row["split_ms"]
    verdict = "meets" if row["harness_share_of_inference"] <= 0.25 else "misses"
    return "\n".join(
        [
            f"### Harness overhead ({row['model']}, {row['scheme']}, {row['camera']}, {row['threads']} threads, "
            f"{row['frames']} frames, view off)",
            "",
            "| per frame | ms |",
            "|---|---:|",
            f"| model inference | {row['inference_ms']:.2f} |",
            f"| harness (all but inference) | {row['harness_ms']:.2f} |",
            f"| - simulation step | {s['sim_ms']:.2f} |",
            f"| - pre + post-processing | {s['preprocess_ms'] + s['postprocess_ms']:.2f} |",
            f"| - IoU scoring | {s['score_ms']:.3f} |",
            f"| - Parquet logging | {s['log_ms']:.3f} |",
            f"| - strip + loop bookkeeping | {s['other_ms'] + row['unaccounted_ms']:.3f} |",
            f"| wall per frame | {row['wall_ms']:.2f} |",
            "",
            f"Harness = {100 * row['harness_share_of_inference']:.0f}% of inference: {verdict} the <= 25% target.",
        ]
    )


def lanekeeping_md(rows: list[dict[str, Any]]) -> str:
    head = (
        "| scenario | model | scheme | junctions | realtime | km | dep/km | mean abs offset m "
        "| max abs offset m | collisions "
        "| end | mIoU | p50 ms | misses |"
    )
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['model']} | {r['scheme']} | {r['junctions']} | {'yes' if r['realtime'] else 'no'} "
            f"| {r['km']:.2f} | {_f(r['departures_per_km'], '.2f')} | {_f(r['mean_abs_offset_m'], '.2f')} "
            f"| {_f(r['max_abs_offset_m'], '.2f')} | {r['collisions']} | {r['end']} | {_f(r['mean_iou'], '.3f')} "
            f"| {_f(r['p50_ms'], '.1f')} | {r['deadline_misses']} |"
        )
    return "\n".join(lines)


def _default_models() -> list[str]:
    found = [m for m in DEFAULT_MODELS if (REPO / "models" / m).exists()]
    if not found:
        raise SystemExit(
            "error: no shipped models in models/ (pass --model CKPT; make them with train/train.py and quant/)"
        )
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="benchmarks/bench_loop.py",
        description="Closed-loop benchmarks: harness overhead vs int8 inference; lane keeping on model masks.",
        epilog=(
            "examples:\n"
            "  python benchmarks/bench_loop.py overhead --model models/unet_qat.pth --frames 600\n"
            "  python benchmarks/bench_loop.py latency --model models/unet_qat.pth   # loop p50 vs the model alone\n"
            "  python benchmarks/bench_loop.py lanekeeping --km 2 --realtime both --junctions hold,autopilot\n"
            "  python benchmarks/bench_loop.py all --md results/bench_loop.md\n"
            "  python benchmarks/bench_loop.py table results/bench_loop results/lk_more   # table of finished runs"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", choices=("overhead", "latency", "lanekeeping", "all", "table"))
    p.add_argument("runs", nargs="*", help="table: folders holding finished lanekeeping runs (searched recursively)")
    p.add_argument("--model", action="append", help="checkpoint(s) (default: models/unet_{float,ptq,qat}.pth found)")
    p.add_argument("--frames", type=int, default=600, help="overhead, latency: frames (default 600)")
    p.add_argument("--rounds", type=int, default=3, help="latency: interleaved rounds (default 3)")
    p.add_argument("--scenario", action="append", help=f"lanekeeping: scenario(s) (default: {', '.join(SCENARIOS)})")
    p.add_argument("--km", type=float, default=2.0, help="lanekeeping: distance per episode (default 2)")
    p.add_argument("--realtime", choices=("off", "on", "both"), default="both", help="lanekeeping (default both)")
    p.add_argument("--junctions", default="hold,autopilot", help="lanekeeping: policies (default hold,autopilot)")
    p.add_argument(
        "--oracle",
        action="store_true",
        help="lanekeeping: also drive on the ground-truth mask (the controller's ceiling; not a model)",
    )
    p.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    p.add_argument(
        "--runtime", choices=("auto", "torch", "onnx", "openvino"), default="auto", help="as run_sim.py (default auto)"
    )
    p.add_argument("--out", default=str(REPO / "results" / "bench_loop"), help="run folders go here")
    p.add_argument("--md", help="also write the Markdown here")
    args = p.parse_args(argv)
    if args.what == "table":
        rows = table_from_runs([Path(r) for r in args.runs or [args.out]])
        if not rows:
            raise SystemExit("error: no finished --drive model runs found (give the folders of bench_loop lanekeeping)")
        text = lanekeeping_md(rows)
        print(text)
        if args.md:
            Path(args.md).write_text(text + "\n")
        return 0
    models = args.model or ([] if args.oracle and args.what == "lanekeeping" else _default_models())
    out = Path(args.out)
    parts = [f"Machine: {machine()}."]
    data: dict[str, Any] = {"machine": machine()}
    if args.what in ("overhead", "all"):
        int8 = [m for m in models if "qat" in Path(m).stem or "ptq" in Path(m).stem] or models
        row = overhead(int8[-1], args.frames, args.threads, args.runtime, out / "overhead")
        data["overhead"] = row
        parts.append(overhead_md(row))
        print(parts[-1], flush=True)
    if args.what in ("latency", "all"):
        int8 = [m for m in models if "qat" in Path(m).stem or "ptq" in Path(m).stem] or models
        row = loop_latency(int8[-1], args.frames, args.rounds, args.threads, args.runtime, out / "latency")
        data["latency"] = row
        parts.append(loop_latency_md(row))
        print(parts[-1], flush=True)
    if args.what in ("lanekeeping", "all"):
        rt = {"off": [False], "on": [True], "both": [False, True]}[args.realtime]
        policies = [j.strip() for j in args.junctions.split(",") if j.strip()]
        rows = lanekeeping(
            models, args.scenario or list(SCENARIOS), args.km, rt, policies, args.threads, args.runtime, out,
            with_oracle=args.oracle,
        )  # fmt: skip
        data["lanekeeping"] = rows
        parts.append(lanekeeping_md(rows))
        print(parts[-1], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_loop.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    if args.md:
        Path(args.md).write_text("\n\n".join(parts) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
