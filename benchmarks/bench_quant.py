"""Float vs int8 side by side, in one process: latency, file size, ratios, issue targets.

Example:
    python benchmarks/bench_quant.py --model runs/unet_w16/best.pth --ptq models/unet_ptq.pth \\
        --qat models/unet_qat.pth --data data/town03 --out docs/bench_quant_w16.md --overwrite

Runtimes: float eager, float torch.compile (inductor, freezing), float ONNX Runtime, int8
PTQ and QAT (PT2E, inductor), int8 ONNX Runtime (QDQ, quantize_static), each at every
``--sizes`` entry, batch 1, ``--threads`` threads. Latency is the model call only
(perf_counter_ns around it, after warm-up), median / p90 over ``--runs`` calls taken in
``--rounds`` interleaved rounds, so that a noisy neighbour on a shared machine hits every
runtime alike. Without ``--ptq`` a PTQ model is made on the fly (calibrated on ``--data``).
With ``--data``, lane IoU on the test split (at the checkpoint's input size) and mask
agreement with float are reported too.

Targets (issues 6, 15): the best int8 runtime on this CPU (the fastest int8 row: torch
PTQ/QAT, ONNX Runtime or OpenVINO) >= 3.0x faster than float eager and >= 1.8x faster than
the fastest float runtime; int8 file >= 3.5x smaller; PTQ within 1.0 IoU point of float,
QAT within 0.3.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import importlib.util
import json
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from perception.checkpoint import load_checkpoint
from perception.predictor import Predictor, load_predictor, use_inductor_cache
from quant.common import size_mb
from quant.compare import evaluate, machine_line, mask_agreement


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'256x256,160x320' -> [(256, 256), (160, 320)] (H x W)."""
    return [tuple(int(v) for v in part.lower().split("x")) for part in text.split(",")]  # type: ignore[misc]


def timed_rounds(fns: dict[str, Callable[[], Any]], runs: int, rounds: int, warmup: int) -> dict[str, dict[str, float]]:
    """Time every callable in `rounds` interleaved rounds of runs/rounds calls each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    per = max(1, runs // rounds)
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(per):
                t0 = time.perf_counter_ns()
                fn()
                times[name].append((time.perf_counter_ns() - t0) / 1e6)
    return {
        k: {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "min": float(np.min(v)), "runs": len(v)}
        for k, v in times.items()
    }


def _infer(pred: Predictor) -> Callable[[], Any]:
    h, w = pred.input_size
    x = pred.preprocess(np.full((h, w, 3), 128, np.uint8)).copy()
    run = pred._run
    return lambda: run(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="float checkpoint")
    parser.add_argument("--ptq", default=None, help="PTQ checkpoint (default: made on the fly from --data)")
    parser.add_argument("--qat", default=None, help="QAT checkpoint (optional)")
    parser.add_argument("--data", nargs="+", default=None, help="dataset folder(s): PTQ and ORT int8 calibration")
    parser.add_argument("--test-data", nargs="+", default=None, help="folder(s) whose test split is scored")
    parser.add_argument("--sizes", default="256x256,160x320", help="input sizes HxW (default 256x256,160x320)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime rows")
    parser.add_argument("--no-openvino", action="store_true", help="skip the OpenVINO rows (skipped if absent)")
    parser.add_argument("--no-compile-float", action="store_true", help="skip float torch.compile")
    parser.add_argument("--test-frames", type=int, default=None, help="score only N test frames")
    parser.add_argument("--out", default=None, help="markdown output (and .json next to it)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.out and Path(args.out).exists() and not args.overwrite:
        print(f"error: {args.out} exists (pass --overwrite)", file=sys.stderr)
        return 1
    use_inductor_cache()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-quant-"))
    _, meta = load_checkpoint(args.model)
    files: dict[str, Path] = {"float .pth": Path(args.model)}
    ptq = args.ptq
    if ptq is None:
        from quant.ptq import quantize_ptq, save_quantized

        if args.data is None:
            print("error: give --ptq or --data to make one", file=sys.stderr)
            return 1
        gm, qmeta = quantize_ptq(args.model, args.data, calib_frames=100)
        ptq = str(save_quantized(tmp / "ptq.pth", gm, qmeta))
    files["int8 PTQ .pth"] = Path(ptq)
    if args.qat:
        files["int8 QAT .pth"] = Path(args.qat)

    results: dict[str, Any] = {"machine": machine_line((args.threads,)), "sizes": {}, "files": {}, "accuracy": {}}
    for size in parse_sizes(args.sizes):
        preds: dict[str, Predictor] = {}
        t0 = time.perf_counter()
        preds["float eager"] = load_predictor(args.model, threads=args.threads, input_size=size, compile=False)
        if not args.no_compile_float:
            preds["float compiled"] = load_predictor(args.model, threads=args.threads, input_size=size)
        int8_onnx = None
        if not args.no_onnx:
            from quant.export import export_onnx

            preds["float ORT"] = load_predictor(args.model, runtime="onnx", threads=args.threads, input_size=size)
            if args.data is not None:
                q, _, _ = export_onnx(
                    args.model, tmp / f"int8_{size[0]}x{size[1]}.onnx", int8=True, data=args.data,
                    calib_frames=50, check_frames=2, input_size=size,
                )  # fmt: skip
                files.setdefault("int8 ORT .onnx", q)
                preds["int8 ORT"] = load_predictor(q, runtime="onnx", threads=args.threads)
                int8_onnx = q
        if not args.no_openvino and importlib.util.find_spec("openvino") is not None:
            preds["float OpenVINO"] = load_predictor(
                args.model, runtime="openvino", threads=args.threads, input_size=size
            )
            if int8_onnx is not None:  # the same int8 QDQ file as the "int8 ORT" row
                preds["int8 OpenVINO"] = load_predictor(int8_onnx, runtime="openvino", threads=args.threads)
        preds["int8 PTQ"] = load_predictor(ptq, threads=args.threads, input_size=size)
        if args.qat:
            preds["int8 QAT"] = load_predictor(args.qat, threads=args.threads, input_size=size)
        for p in preds.values():
            p.warmup(iterations=2)
        print(f"{size[0]}x{size[1]}: loaded and compiled {len(preds)} runtimes in {time.perf_counter() - t0:.0f} s")
        lat = timed_rounds({k: _infer(p) for k, p in preds.items()}, args.runs, args.rounds, args.warmup)
        floats = {k: v["median"] for k, v in lat.items() if k.startswith("float")}
        fastest = min(floats, key=floats.get)
        for v in lat.values():
            v["vs_eager"] = lat["float eager"]["median"] / v["median"]
            v["vs_fastest_float"] = lat[fastest]["median"] / v["median"]
        int8s = {k: v["median"] for k, v in lat.items() if k.startswith("int8")}
        best = min(int8s, key=int8s.get) if int8s else None  # what --runtime auto would pick among int8 files
        results["sizes"][f"{size[0]}x{size[1]}"] = {"latency": lat, "fastest_float": fastest, "best_int8": best}
        for k, v in lat.items():
            print(f"  {k:15s} {v['median']:7.1f} ms (p90 {v['p90']:.1f})  x{v['vs_eager']:.2f} vs eager")
        if not args.no_onnx and "float ORT .onnx" not in files:
            from quant.export import export_onnx

            files["float ORT .onnx"], _, _ = export_onnx(args.model, tmp / "float.onnx", check_frames=1)
    float_mb = size_mb(args.model)
    results["files"] = {k: {"mb": size_mb(v), "smaller_than_float": float_mb / size_mb(v)} for k, v in files.items()}

    if args.test_data is not None:
        from dataset.reader import LaneDataset

        ds = LaneDataset(args.test_data, split="test")
        base = load_predictor(args.model, threads=args.threads, compile=False)
        f_scores, f_masks = evaluate(base, ds, args.test_frames, False)
        results["accuracy"]["float"] = {"iou": f_scores["iou"], "agreement": 1.0}
        for name, path in (("int8 PTQ", ptq), ("int8 QAT", args.qat)):
            if path is None:
                continue
            p = load_predictor(path, threads=args.threads)
            s, m = evaluate(p, ds, args.test_frames, False)
            results["accuracy"][name] = {
                "iou": s["iou"],
                "delta_points": 100 * (s["iou"] - f_scores["iou"]),
                "agreement": mask_agreement(m, f_masks),
            }
    write_report(args, results)
    return 0


def write_report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Markdown (and JSON) of the run, with the targets checked."""
    lines = [
        f"# bench_quant: `{args.model}`",
        "",
        f"Machine: {results['machine']}. Model call only, median / p90 of {args.runs} calls in {args.rounds} "
        "interleaved rounds (ms).",
        "",
    ]
    for size, res in results["sizes"].items():
        lat = res["latency"]
        lines += [f"## {size} (HxW)", "", "| runtime | median ms | p90 ms | speed-up vs float eager | "
                  f"vs fastest float ({res['fastest_float']}) |", "|---|---:|---:|---:|---:|"]  # fmt: skip
        for k, v in lat.items():
            lines.append(
                f"| {k} | {v['median']:.1f} | {v['p90']:.1f} | {v['vs_eager']:.2f}x | {v['vs_fastest_float']:.2f}x |"
            )
        for k in ("int8 PTQ", "int8 QAT"):
            if k in lat:
                lines.append(
                    f"\n{k} (torch): {lat[k]['vs_eager']:.2f}x vs eager, {lat[k]['vs_fastest_float']:.2f}x vs "
                    "fastest float"
                )
        best = res.get("best_int8")
        if best:
            v = lat[best]
            ok = v["vs_eager"] >= 3.0 and v["vs_fastest_float"] >= 1.8
            lines.append(
                f"\n**best int8 runtime: {best}**, {v['vs_eager']:.2f}x vs eager (target 3.0x), "
                f"{v['vs_fastest_float']:.2f}x vs fastest float (target 1.8x): **{'PASS' if ok else 'FAIL'}**"
            )
        lines.append("")
    lines += ["## Files", "", "| file | MB | smaller than float .pth |", "|---|---:|---:|"]
    for k, v in results["files"].items():
        lines.append(f"| {k} | {v['mb']:.2f} | {v['smaller_than_float']:.2f}x |")
    for k in ("int8 PTQ .pth", "int8 QAT .pth"):
        if k in results["files"]:
            r = results["files"][k]["smaller_than_float"]
            lines.append(f"\n{k}: {r:.2f}x smaller (target 3.5x): **{'PASS' if r >= 3.5 else 'FAIL'}**")
    if results["accuracy"]:
        lines += [
            "",
            "## Accuracy (test split)",
            "",
            "| model | IoU | Δ points vs float | agreement |",
            "|---|---:|---:|---:|",
        ]
        for k, v in results["accuracy"].items():
            lines.append(f"| {k} | {v['iou']:.4f} | {v.get('delta_points', 0.0):+.2f} | {v['agreement']:.4f} |")
        for k, bar in (("int8 PTQ", 1.0), ("int8 QAT", 0.3)):
            if k in results["accuracy"]:
                d = results["accuracy"][k]["delta_points"]
                lines.append(f"\n{k}: {d:+.2f} points (target >= -{bar}): **{'PASS' if d >= -bar else 'FAIL'}**")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
        print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
