"""Pareto study of light lane models (issue 20), first part: cost of every candidate.

    python benchmarks/study_pareto.py --threads 2 --runs 20 --rounds 3 --out results/pareto.md

For each candidate (U-Net w16, U-Net w8, unet_ds, lanelite, U-Net w16 pruned at 0.5) at
160x320: GFLOPs (`perception.flops`, 2 per multiply-add), parameters, float checkpoint size,
and the latency of the model call in float and int8 on ONNX Runtime and OpenVINO, plus float
torch eager. Candidates run interleaved (round r times every candidate, then round r+1), so
a load change on this shared machine hits all of them alike; the median over all rounds is
reported with the CPU and the load average.

Weights are random (the pruned U-Net is a random w16 pruned by L1 norm): latency and cost do
not depend on them. int8 ONNX files are calibrated on seeded noise, which sets other scales
than recorded frames would but the same kernels. Accuracy (sim test IoU after the same
CPU-minutes) is the study's second part and is not run here (docs/lighter.md).
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
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from perception.checkpoint import CheckpointMeta, save_checkpoint
from perception.cpu import describe
from perception.flops import count_flops, count_params
from perception.models import build_model

SIZE = (160, 320)
CANDIDATES: list[tuple[str, str, dict[str, Any]]] = [
    ("unet w16", "unet", {"base_width": 16}),
    ("unet w8", "unet", {"base_width": 8}),
    ("unet_ds w16", "unet_ds", {}),
    ("lanelite w16", "lanelite", {}),
    ("unet w16 pruned 0.5", "unet-pruned", {"base_width": 16}),
]


def make_model(arch: str, kwargs: dict[str, Any]) -> torch.nn.Module:
    """A candidate with seeded random weights (eval mode)."""
    torch.manual_seed(0)
    if arch == "unet-pruned":
        from quant.prune import prune_unet

        return prune_unet(build_model("unet", **kwargs), 0.5, SIZE).eval()
    return build_model(arch, **kwargs).eval()


def onnx_files(model: torch.nn.Module, folder: Path, size: tuple[int, int] = SIZE) -> tuple[Path, Path]:
    """Float ONNX and its ORT static int8 QDQ (per-channel, MinMax, calibrated on seeded noise)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from quant.export import _onnx_proto, _save

    proto = _onnx_proto(model, size)
    float_path, int8_path = folder / "float.onnx", folder / "int8.onnx"
    _save(proto, float_path)
    rng = np.random.default_rng(0)
    name = proto.graph.input[0].name
    frames = iter([{name: rng.standard_normal((1, 3, *size), dtype=np.float32)} for _ in range(8)])

    class Reader:
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(frames, None)

    quantize_static(
        str(float_path),
        str(int8_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return float_path, int8_path


def runners(model: torch.nn.Module, folder: Path, threads: int) -> dict[str, Callable[[], Any]]:
    """name -> a zero-argument call of the model on one fixed input, per runtime."""
    from perception.onnx_runtime import ort_session

    x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    xn = x.numpy()
    out: dict[str, Callable[[], Any]] = {}

    def eager() -> Any:
        with torch.inference_mode():
            return model(x)

    out["float torch eager"] = eager
    float_path, int8_path = onnx_files(model, folder)
    for kind, path in (("float", float_path), ("int8", int8_path)):
        session = ort_session(str(path), threads)
        name = session.get_inputs()[0].name
        out[f"{kind} ORT"] = lambda s=session, n=name: s.run(None, {n: xn})
    try:
        import openvino as ov

        from perception.openvino_runtime import compile_config
    except ImportError:
        return out
    core = ov.Core()
    for kind, path in (("float", float_path), ("int8", int8_path)):
        req = core.compile_model(core.read_model(str(path)), "CPU", compile_config(threads)).create_infer_request()
        out[f"{kind} OpenVINO"] = lambda r=req: r.infer({0: xn})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/study_pareto.py", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of every runtime (default 2)")
    p.add_argument("--runs", type=int, default=10, help="timed calls per candidate and round (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--out", help="markdown table to write (default: print only)")
    g = p.add_argument_group("trained candidates (benchmarks/pareto_scores.py)")
    g.add_argument("--trained", action="append", default=[], metavar="NAME=CKPT", help="a trained float checkpoint")
    g.add_argument("--calib-data", action="append", default=[], help="PTQ calibration recording (repeatable)")
    g.add_argument("--test-data", action="append", default=[], help="held-out test recording (repeatable)")
    g.add_argument("--work", default="build/pareto", help="quantized files and scores.json (default build/pareto)")
    g.add_argument("--plot", help="PNG of the front (with --trained)")
    g.add_argument(
        "--score", action=argparse.BooleanOptionalAction, default=True, help="--no-score: costs and latency only"
    )
    args = p.parse_args(argv)
    if args.trained:
        return main_trained(args)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    rows: dict[str, dict[str, Any]] = {}
    calls: dict[str, dict[str, Callable[[], Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="laneloop-pareto-") as tmp:
        for label, arch, kwargs in CANDIDATES:
            model = make_model(arch, kwargs)
            folder = Path(tmp) / label.replace(" ", "_")
            folder.mkdir()
            meta = CheckpointMeta.for_model(model, input_size=SIZE, command="benchmarks/study_pareto.py")
            pth = save_checkpoint(folder / "float.pth", model, meta)
            rows[label] = {
                "gflops": count_flops(model, SIZE) / 1e9,
                "params_m": count_params(model) / 1e6,
                "pth_mb": pth.stat().st_size / 1e6,
            }
            calls[label] = runners(model, folder, args.threads)
            rows[label]["int8_onnx_mb"] = (folder / "int8.onnx").stat().st_size / 1e6
            print(f"prepared {label}", file=sys.stderr)
        times: dict[str, dict[str, list[float]]] = {k: {r: [] for r in v} for k, v in calls.items()}
        for _ in range(args.rounds):
            for label, fns in calls.items():
                for rt, fn in fns.items():
                    for _ in range(args.warmup):
                        fn()
                    for _ in range(args.runs):
                        t0 = time.perf_counter_ns()
                        fn()
                        times[label][rt].append((time.perf_counter_ns() - t0) / 1e6)
    load1 = os.getloadavg()[0]
    runtimes = list(next(iter(calls.values())))
    base = rows["unet w16"]
    header = ["candidate", "GFLOPs", "vs w16", "params M", ".pth MB", "int8 .onnx MB"] + [f"{r} ms" for r in runtimes]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    w16 = {rt: float(np.median(times["unet w16"][rt])) for rt in runtimes}
    for label, row in rows.items():
        cells = [
            label,
            f"{row['gflops']:.2f}",
            f"1/{base['gflops'] / row['gflops']:.1f}",
            f"{row['params_m']:.3f}",
            f"{row['pth_mb']:.2f}",
            f"{row['int8_onnx_mb']:.2f}",
        ]
        for rt in runtimes:
            med = float(np.median(times[label][rt]))
            cells.append(f"{med:.1f} ({w16[rt] / med:.1f}x)")
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"\n{describe()}; {args.threads} threads, batch 1, {SIZE[0]}x{SIZE[1]}, median of "
        f"{args.rounds} x {args.runs} interleaved calls; (Nx) = speed-up over unet w16 on the same runtime; "
        f"1-minute load average {load0:.1f} at start, {load1:.1f} at end."
    )
    text = "\n".join(lines) + "\n" + note + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


def main_trained(args: argparse.Namespace) -> int:
    """The accuracy part: score, quantize and time trained checkpoints (benchmarks/pareto_scores.py)."""
    from benchmarks.pareto_scores import plot, run_trained, table

    trained: dict[str, Path] = {}
    for item in args.trained:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            print(f"error: --trained {item!r} is not NAME=CKPT of an existing file (e.g. 'unet w16=runs/u/best.pth')")
            return 1
        trained[name] = Path(path)
    if not args.calib_data or not args.test_data:
        print("error: --trained needs --calib-data DIR and --test-data DIR (recordings)")
        return 1
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result = run_trained(
        trained, args.calib_data, args.test_data, work, args.threads, args.runs, args.rounds, args.score
    )
    text = table(result, next(iter(trained)))
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    if args.plot:
        plot(result, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
