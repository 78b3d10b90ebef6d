"""Where int8 time goes: OpenVINO per-layer counters of candidate models, and the CPU's int8 floor.

    python benchmarks/profile_int8.py --arch unet --arch lanelite --arch unet_ds --threads 1
    python benchmarks/profile_int8.py --peak --threads 2          # peak int8 conv throughput only

Why: the light designs cost 1/9-1/13 of U-Net w16's FLOPs but ran only 1.5-1.9x faster in
int8 (docs/lighter.md). Per-layer times of the compiled int8 graph (``PERF_COUNT``, summed over
the runtime model's nodes) split the time by kernel kind and by the resolution the layer runs
at, which says whether FLOPs, memory traffic or per-layer overhead set the latency.

The floor: the GFLOPs a large int8 3x3 conv (128 -> 128 channels at 40x80, QDQ, per-channel)
runs per second on this CPU with the same runtime and threads; a model's floor is its GFLOPs
divided by that peak, the time it would take if every layer ran like the best kernel.
Models carry seeded random weights and int8 files are calibrated on noise (latency does not
depend on the weights); timings on a shared machine: read the shares, not the milliseconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import tempfile
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from torch import nn

from perception.cpu import describe
from perception.flops import count_flops
from perception.models import build_model

SIZE = (160, 320)


def compile_int8(model: nn.Module, folder: Path, threads: int, size: tuple[int, int], perf: bool) -> Any:
    """OpenVINO infer request of `model`'s ORT int8 QDQ export (calibrated on seeded noise)."""
    import openvino as ov

    from benchmarks.study_pareto import onnx_files
    from perception.openvino_runtime import compile_config

    _, int8_path = onnx_files(model, folder, size)
    config = compile_config(threads)
    if perf:
        config["PERF_COUNT"] = "YES"
    core = ov.Core()
    return core.compile_model(core.read_model(str(int8_path)), "CPU", config)


def timed_nodes(request: Any, x: np.ndarray, runs: int, warmup: int = 3) -> tuple[float, dict[str, Any]]:
    """Median wall time of `runs` calls [ms], and per executed node its least time over the
    calls [us] with its kernel: the least is the one least stretched by other jobs' load."""
    for _ in range(warmup):
        request.infer({0: x})
    times: list[float] = []
    nodes: dict[str, Any] = {}
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        request.infer({0: x})
        times.append((time.perf_counter_ns() - t0) / 1e6)
        for p in request.profiling_info:
            us = p.real_time.total_seconds() * 1e6
            if p.status.name != "EXECUTED" or us <= 0:
                continue
            old = nodes.get(p.node_name)
            if old is None or us < old["us"]:
                nodes[p.node_name] = {"us": us, "type": p.node_type, "exec": p.exec_type}
    return float(np.median(times)), nodes


def peak_int8_gflops(threads: int, folder: Path, runs: int) -> dict[str, Any]:
    """GFLOP/s of a large int8 3x3 conv (128 -> 128 at 40x80) on OpenVINO: the compute roof."""
    size = (40, 80)
    torch.manual_seed(0)
    conv = nn.Conv2d(128, 128, 3, padding=1)
    model = nn.Sequential(nn.Conv2d(3, 128, 1), nn.ReLU(), conv, nn.ReLU()).eval()  # 3-channel input like a model
    req = compile_int8(model, folder, threads, size, perf=True).create_infer_request()
    x = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
    _, nodes = timed_nodes(req, x, runs)
    convs = [v for v in nodes.values() if v["type"] == "Convolution"]
    big = convs[-1]  # execution order: the 1x1 stem, then the 3x3
    flops = count_flops(conv, size, in_channels=128)
    return {"gflop_per_s": flops / (big["us"] * 1e-6) / 1e9, "kernel": big["exec"], "conv_us": big["us"]}


def layer_profile(compiled: Any, runs: int, size: tuple[int, int]) -> dict[str, Any]:
    """Median call time; per-node least times summed by node kind, by kernel and by the
    resolution of the node's output (from the runtime model's shapes)."""
    req = compiled.create_infer_request()
    x = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
    ms, nodes = timed_nodes(req, x, runs)
    heights = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        if not op.get_output_size():
            continue
        shape = op.get_output_partial_shape(0)
        if shape.rank.is_static and shape.rank.get_length() == 4 and shape[2].is_static:
            heights[op.get_friendly_name()] = shape[2].get_length()
    by_kind: dict[str, float] = defaultdict(float)
    by_exec: dict[str, float] = defaultdict(float)
    by_res: dict[str, float] = defaultdict(float)
    for name, v in nodes.items():
        by_kind[v["type"]] += v["us"]
        by_exec[f"{v['type']}:{v['exec']}"] += v["us"]
        h = heights.get(name)
        by_res[f"1/{size[0] // h}" if h else "other"] += v["us"]
    total = sum(by_kind.values()) or 1.0

    def shares(d: dict[str, float]) -> dict[str, float]:
        ranked = sorted(d.items(), key=lambda kv: -kv[1])
        return {k: round(100 * v / total, 1) for k, v in ranked if v / total > 0.005}

    return {
        "ms": ms,
        "sum_nodes_ms": total / 1e3,
        "nodes_run": len(nodes),
        "by_kind_pct": shares(by_kind),
        "by_kernel_pct": shares(by_exec),
        "by_resolution_pct": shares(by_res),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/profile_int8.py", description=__doc__.splitlines()[0])
    p.add_argument("--arch", action="append", default=[], help="registry name (repeat); kwargs with --kwargs")
    p.add_argument("--kwargs", action="append", default=[], help="JSON constructor arguments, one per --arch")
    p.add_argument("--peak", action="store_true", help="also measure the peak int8 conv throughput")
    p.add_argument("--threads", type=int, default=2, help="OpenVINO inference threads (default 2)")
    p.add_argument("--runs", type=int, default=20, help="timed calls (default 20)")
    p.add_argument("--out", help="JSON file to write (default: print only)")
    args = p.parse_args(argv)
    if not args.arch and not args.peak:
        p.error("nothing to do: pass --arch NAME (repeatable) and/or --peak")
    kwargs = [json.loads(k) for k in args.kwargs] + [{}] * (len(args.arch) - len(args.kwargs))
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"cpu": describe(), "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="laneloop-prof-") as tmp:
        if args.peak:
            report["peak"] = peak_int8_gflops(args.threads, Path(tmp), args.runs)
            print(f"peak int8 conv: {report['peak']}", file=sys.stderr)
        for i, (arch, kw) in enumerate(zip(args.arch, kwargs, strict=True)):
            torch.manual_seed(0)
            model = build_model(arch, **kw).eval()
            folder = Path(tmp) / f"m{i}"
            folder.mkdir()
            prof = layer_profile(compile_int8(model, folder, args.threads, SIZE, perf=True), args.runs, SIZE)
            prof["gflops"] = count_flops(model, SIZE) / 1e9
            report[f"{arch} {json.dumps(kw)}"] = prof
            print(f"{arch} {kw}: {json.dumps(prof)}", file=sys.stderr)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
