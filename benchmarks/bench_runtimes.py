"""Latency of each runtime on the shipped models, in one process, interleaved call by call.

    PYTHONPATH=. python benchmarks/bench_runtimes.py --threads 2 --calls 50

Rows: models/unet_qat.onnx (int8 QDQ) in ONNX Runtime and OpenVINO; models/unet_float.pth
in torch eager, ONNX Runtime (exported on the fly) and OpenVINO (exported on the fly). Each
predictor is warmed up, then the rows take turns, one `predict_timed` call each, `--calls`
rounds, on a 160x320 frame from the embedded simulator; then each row alone, `--calls` calls
in a row. Prints `cpu_info().describe()` first, then the medians (a markdown table).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import importlib.util
import statistics

import torch

from perception.cpu import cpu_info
from perception.predictor import Predictor, load_predictor

ROOT = Path(__file__).resolve().parents[1]


def sim_frame() -> object:
    from scenarios import load_scenario
    from sim.backend import make_backend

    with make_backend("embedded") as sim:
        obs = sim.reset(load_scenario("town03_clear"), seed=3)
        for _ in range(20):
            obs = sim.step(None)
    return obs.camera.rgb.copy()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--int8", default=str(ROOT / "models" / "unet_qat.onnx"))
    p.add_argument("--float", dest="float_", default=str(ROOT / "models" / "unet_float.pth"))
    args = p.parse_args(argv)
    print(cpu_info().describe())
    torch.set_num_threads(args.threads)
    size = (160, 320)
    ov = importlib.util.find_spec("openvino") is not None
    rows: dict[str, Predictor] = {}
    rows["int8 QAT .onnx, ONNX Runtime"] = load_predictor(args.int8, runtime="onnx", threads=args.threads)
    if ov:
        rows["int8 QAT .onnx, OpenVINO"] = load_predictor(args.int8, runtime="openvino", threads=args.threads)
    rows["float .pth, torch eager"] = load_predictor(
        args.float_, runtime="torch", threads=args.threads, input_size=size, compile=False
    )
    rows["float .pth, ONNX Runtime"] = load_predictor(
        args.float_, runtime="onnx", threads=args.threads, input_size=size
    )
    if ov:
        rows["float .pth, OpenVINO"] = load_predictor(
            args.float_, runtime="openvino", threads=args.threads, input_size=size
        )
    frame = sim_frame()
    for pred in rows.values():
        assert pred.input_size == size, (pred, size)
        pred.warmup(iterations=5)
    total: dict[str, list[float]] = {k: [] for k in rows}
    infer: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(args.calls):
        for k, pred in rows.items():
            _, t = pred.predict_timed(frame)
            total[k].append(t.total_ms)
            infer[k].append(t.inference_ms)
    alone: dict[str, float] = {}
    for k, pred in rows.items():  # the same calls, one row at a time (no other runtime's threads in between)
        alone[k] = statistics.median(pred.predict_timed(frame)[1].total_ms for _ in range(args.calls))
    print(f"\n{args.threads} threads, {size[0]}x{size[1]}, {args.calls} calls each, median ms\n")
    print("| model, runtime | predict ms, interleaved | inference only ms, interleaved | predict ms, alone |")
    print("|---|---:|---:|---:|")
    for k in rows:
        print(f"| {k} | {statistics.median(total[k]):.1f} | {statistics.median(infer[k]):.1f} | {alone[k]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
