"""The Pareto study's accuracy part: trained checkpoints scored, quantized, timed side by side.

    python benchmarks/study_pareto.py --trained "unet w16=build/runs/unet_w16/best.pth" \\
        --trained "lanefast=build/runs/lanefast/best.pth" --calib-data build/data/town03 \\
        --test-data build/data/test_town10hd_wetnoon ... --work build/pareto --out results/pareto_trained.md

Per candidate: int8 PTQ (`quant.ptq`, PT2E, 200 train frames of the calibration data), its
int8 QDQ ONNX (`quant.export`), lane IoU on the held-out test sets for float (torch) and int8
(OpenVINO, the fastest runtime on this machine class), F1 @3px on the real dev frames
(`collect.real_dev`, measuring only), GFLOPs, params, file sizes, then the int8 latency of
every candidate on OpenVINO in interleaved rounds (one run, so load hits all alike) and the
physical floor: GFLOPs / the peak of OpenVINO's int8 conv kernel measured in the same run
(benchmarks/profile_int8.py). Quantized files are cached in --work, so a rerun only scores.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SIZE = (160, 320)


def quantize(name: str, ckpt: Path, calib: list[str], work: Path) -> tuple[Path, Path]:
    """PT2E PTQ checkpoint and its int8 QDQ ONNX, made once into `work`."""
    from quant.export import export_onnx
    from quant.ptq import quantize_ptq, save_quantized

    folder = work / name.replace(" ", "_")
    folder.mkdir(parents=True, exist_ok=True)
    ptq, onnx = folder / "ptq.pth", folder / "ptq_int8.onnx"
    if not ptq.exists():
        gm, meta = quantize_ptq(ckpt, calib, calib_frames=200)
        save_quantized(ptq, gm, meta)
    if not onnx.exists():
        export_onnx(ptq, onnx, data=calib)
    return ptq, onnx


def scores(ckpt: Path, onnx: Path, test: list[str], real: dict[str, Any], threads: int) -> dict[str, float]:
    """Test IoU float / int8, and F1 @3px of both on each real dev set."""
    from dataset.reader import LaneDataset
    from perception.evaluation import evaluate
    from perception.predictor import load_predictor
    from train.real_metrics import score_set

    out: dict[str, float] = {}
    test_set = LaneDataset(test, split="test")
    for kind, pred in (
        ("float", load_predictor(ckpt, threads=threads, compile=False)),
        ("int8", load_predictor(onnx, runtime="openvino", threads=threads)),
    ):
        out[f"{kind}_test_iou"] = float(evaluate(pred, test_set, batch_size=8)["iou"])
        for set_name, ds in real.items():
            r = score_set(ds, lambda s, i, rgb, label, p=pred: p.predict(rgb))
            out[f"{kind}_{set_name}_f1"] = float(r["tolerant"]["f1"])
        del pred
    return out


def int8_latency(onnx: dict[str, Path], threads: int, runs: int, rounds: int) -> dict[str, float]:
    """Median OpenVINO int8 call [ms] per candidate, interleaved rounds."""
    import openvino as ov

    from perception.openvino_runtime import compile_config

    core = ov.Core()
    reqs = {
        k: core.compile_model(core.read_model(str(p)), "CPU", compile_config(threads)).create_infer_request()
        for k, p in onnx.items()
    }
    x = np.random.default_rng(1).standard_normal((1, 3, *SIZE), dtype=np.float32)
    times: dict[str, list[float]] = {k: [] for k in reqs}
    for _ in range(rounds):
        for k, r in reqs.items():
            for _ in range(3):
                r.infer({0: x})
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                r.infer({0: x})
                times[k].append((time.perf_counter_ns() - t0) / 1e6)
    return {k: float(np.median(v)) for k, v in times.items()}


def run_trained(
    trained: dict[str, Path],
    calib: list[str],
    test: list[str],
    work: Path,
    threads: int,
    runs: int,
    rounds: int,
    score: bool = True,
) -> dict[str, Any]:
    """Every column of the trained study, as plain data (also written to work/scores.json);
    `score=False` keeps cached scores and leaves the others NaN (costs and latency only)."""
    from benchmarks.profile_int8 import peak_int8_gflops
    from collect.real_dev import dev_root, import_dev_sets
    from dataset.reader import LaneDataset
    from perception.checkpoint import build_from_checkpoint
    from perception.cpu import describe
    from perception.flops import count_flops, count_params

    rows: dict[str, dict[str, Any]] = {}
    onnx: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="laneloop-pareto-real-") as tmp:
        root = dev_root()  # no dev frames: no real-frame columns
        dev = import_dev_sets(Path(tmp), root, SIZE) if root is not None else {}
        real = {k: LaneDataset(v, split="test", size=SIZE) for k, v in dev.items()}
        for name, ckpt in trained.items():
            ptq, onnx[name] = quantize(name, ckpt, calib, work)
            model, meta = build_from_checkpoint(ckpt)
            row = {
                "checkpoint": str(ckpt),
                "gflops": count_flops(model, SIZE) / 1e9,
                "params_m": count_params(model) / 1e6,
                "float_mb": ckpt.stat().st_size / 1e6,
                "int8_onnx_mb": onnx[name].stat().st_size / 1e6,
                "train_cpu_s": meta.metrics.get("train_cpu_s"),
                "val_iou": meta.metrics.get("val_iou"),
            }
            cached = work / name.replace(" ", "_") / "scores.json"  # a rerun scores only new checkpoints
            key = {"checkpoint": str(ckpt), "mtime": ckpt.stat().st_mtime, "test": test, "real": sorted(real)}
            old = json.loads(cached.read_text()) if cached.exists() else {}
            if old.get("key") != key and not score:
                nan = float("nan")
                old = {
                    "scores": {
                        f"{k}_{m}": nan for k in ("float", "int8") for m in ("test_iou", *map("{}_f1".format, real))
                    }
                }
            elif old.get("key") != key:
                old = {"key": key, "scores": scores(ckpt, onnx[name], test, real, threads)}
                cached.write_text(json.dumps(old) + "\n", encoding="utf-8")
            row.update(old["scores"])
            rows[name] = row
            print(f"scored {name}: {json.dumps(row)}", flush=True)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="laneloop-peak-") as tmp:
        peak = peak_int8_gflops(threads, Path(tmp), runs)
    lat = int8_latency(onnx, threads, runs, rounds)
    load1 = os.getloadavg()[0]
    for name, row in rows.items():
        row["int8_ov_ms"] = lat[name]
        row["floor_ms"] = row["gflops"] / peak["gflop_per_s"] * 1e3
    result = {"cpu": describe(), "threads": threads, "peak": peak, "load": [load0, load1], "rows": rows}
    (work / "scores.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def table(result: dict[str, Any], base: str) -> str:
    """Markdown table; speed-ups against candidate `base`."""
    rows = result["rows"]
    b = rows[base]
    real = sorted(
        {k[len("int8_") : -len("_f1")] for r in rows.values() for k in r if k.startswith("int8_") and k.endswith("_f1")}
    )
    head = ["candidate", "GFLOPs", "params M", ".pth MB", "int8 .onnx MB", "train CPU-min"]
    head += ["test IoU float", "test IoU int8 PTQ"] + [f"F1@3px {s} int8" for s in real]
    head += ["int8 OpenVINO ms (vs base)", "floor ms", "x floor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cpu = "" if r["train_cpu_s"] is None else f"{r['train_cpu_s'] / 60:.1f}"
        cells = [name, f"{r['gflops']:.2f}", f"{r['params_m']:.3f}", f"{r['float_mb']:.2f}", f"{r['int8_onnx_mb']:.2f}"]
        cells += [cpu, f"{r['float_test_iou']:.4f}", f"{r['int8_test_iou']:.4f}"]
        cells += [f"{r.get(f'int8_{s}_f1', float('nan')):.3f}" for s in real]
        cells += [f"{r['int8_ov_ms']:.2f} ({b['int8_ov_ms'] / r['int8_ov_ms']:.1f}x)", f"{r['floor_ms']:.2f}"]
        cells += [f"{r['int8_ov_ms'] / r['floor_ms']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    p = result["peak"]
    lines.append(
        f"\n{result['cpu']}; {result['threads']} threads; int8 = PT2E PTQ exported to QDQ ONNX, on OpenVINO; "
        f"latency median of interleaved rounds; peak int8 conv {p['gflop_per_s']:.0f} GFLOP/s ({p['kernel']}); "
        f"1-minute load {result['load'][0]:.1f} -> {result['load'][1]:.1f}."
    )
    return "\n".join(lines) + "\n"


def front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names on the Pareto front of (name, cost, quality): no other point is cheaper and better."""
    return [n for n, c, q in points if not any((c2 <= c and q2 >= q) and (c2 < c or q2 > q) for _, c2, q2 in points)]


def plot(result: dict[str, Any], path: Path) -> None:
    """Test IoU (int8) and real F1 (int8) against int8 latency, the front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    real = sorted(
        {k[len("int8_") : -len("_f1")] for r in rows.values() for k in r if k.startswith("int8_") and k.endswith("_f1")}
    )
    panels = [("int8_test_iou", "sim test IoU (int8, unseen town + weathers)")]
    panels += [(f"int8_{s}_f1", f"real F1 @3px, {s} (int8)") for s in real]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        pts = [(n, r["int8_ov_ms"], r[key]) for n, r in rows.items() if r[key] == r[key]]  # NaN: not scored
        on = set(front(pts))
        for n, c, q in pts:
            ax.scatter(c, q, color="tab:red" if n in on else "tab:gray", zorder=3)
            ax.annotate(n, (c, q), textcoords="offset points", xytext=(4, 4), fontsize=8)
        line = sorted((c, q) for n, c, q in pts if n in on)
        ax.plot([c for c, _ in line], [q for _, q in line], color="tab:red", lw=1)
        ax.set_xlabel("int8 latency on OpenVINO [ms], same run")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{result['cpu'].split(',')[0]}, {result['threads']} threads (red: Pareto front)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
