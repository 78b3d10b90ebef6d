"""Compare float and quantized models: size, latency, test IoU, agreement, where time goes.

For every model: file size, parameters, latency (median / p90 / p99 of the predictor's
whole call at 2 threads and at 1 thread), lane IoU on the test split (`perception.metrics`,
masks at the recorded frame size, as the loop scores them), agreement with the float
reference (IoU of the two masks), and a per-operator profile (torch.profiler) of the float
reference against each int8 model. Writes ``OUT.md``, ``OUT.png`` (accuracy vs latency)
and ``OUT.json`` (all numbers).

A model is given as ``PATH`` or ``PATH:RUNTIME`` with RUNTIME ``torch`` (compiled, the
default), ``eager`` (torch, not compiled) or ``onnx`` (ONNX Runtime; the default for .onnx).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dataset.reader import LaneDataset
from perception.checkpoint import CheckpointMeta
from perception.evaluation import evaluate
from perception.models import build_model
from perception.predictor import Predictor, load_predictor
from quant.common import QuantError, add_common_args, check_output, run_quant_cli, size_mb

RUNTIME_SUFFIXES = ("torch", "eager", "onnx")

#: profiler event name fragments -> category (first match wins; order matters)
OP_CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("convolution", ("conv", "qconv", "mkldnn_convolution", "onednn")),
    ("batch norm", ("batch_norm",)),
    ("relu", ("relu", "clamp")),
    ("quantize / dequantize", ("quantize", "dequantize")),
    ("max pool", ("max_pool",)),
    ("upsample", ("upsample", "resize")),
    ("concat", ("cat",)),
    ("fused inductor kernels", ("cpp_fused", "kernel_cpp", "graph_")),
]


@dataclass
class ModelSpec:
    """One row of the comparison: a file and the runtime that runs it."""

    path: Path
    runtime: str  # torch | eager | onnx
    label: str = ""

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        path, _, rt = text.rpartition(":") if text.rsplit(":", 1)[-1] in RUNTIME_SUFFIXES else (text, "", "")
        p = Path(path)
        runtime = rt or ("onnx" if p.suffix == ".onnx" else "torch")
        if not p.is_file():
            raise QuantError(f"model file not found: {p} (check the path)")
        return cls(p, runtime)

    def load(self, threads: int, input_size: tuple[int, int] | None = None) -> Predictor:
        rt = "onnx" if self.runtime == "onnx" else "torch"
        return load_predictor(
            self.path, runtime=rt, threads=threads, input_size=input_size, compile=self.runtime == "torch"
        )


@dataclass
class Row:
    """Measured numbers of one model."""

    label: str
    path: str
    scheme: str
    runtime: str
    description: str
    size_mb: float
    params_m: float
    input_size: tuple[int, int]
    latency: dict[str, dict[str, float]] = field(default_factory=dict)  # threads -> stats
    test: dict[str, Any] = field(default_factory=dict)
    agreement: float | None = None


def latency_stats(fn: Callable[[], Any], runs: int, warmup: int = 3) -> dict[str, float]:
    """Median / p90 / p99 / mean of `runs` timed calls [ms] (perf_counter_ns, after warm-up)."""
    for _ in range(warmup):
        fn()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        times[i] = (time.perf_counter_ns() - t0) / 1e6
    return {
        "median": float(np.median(times)),
        "p90": float(np.percentile(times, 90)),
        "p99": float(np.percentile(times, 99)),
        "mean": float(times.mean()),
        "runs": runs,
    }


def param_count(meta: CheckpointMeta) -> int:
    """Parameters of the architecture (the same count whether stored as float or int8)."""
    model = build_model(meta.arch, **meta.arch_kwargs)
    return sum(p.numel() for p in model.parameters())


def categorize(name: str) -> str:
    """Profiler event name -> one of OP_CATEGORIES' names, or "other"."""
    low = name.lower()
    for cat, keys in OP_CATEGORIES:
        if any(k in low for k in keys):
            return cat
    return "other"


def profile_ops(pred: Predictor, frame: np.ndarray, runs: int = 10) -> dict[str, float]:
    """Self CPU time per frame [ms] of the inference, by operator category (torch runtime)."""
    from torch.profiler import ProfilerActivity, profile

    x = pred.preprocess(frame)
    run = pred._run
    for _ in range(3):
        run(x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            run(x)
    out: dict[str, float] = {}
    for ev in prof.key_averages():
        if ev.key.startswith("ProfilerStep") or ev.self_cpu_time_total <= 0:
            continue
        cat = categorize(ev.key)
        out[cat] = out.get(cat, 0.0) + ev.self_cpu_time_total / 1000.0 / runs
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def test_scores(
    pred: Predictor, ds: LaneDataset, limit: int | None, progress: bool
) -> tuple[dict[str, Any], np.ndarray]:
    """Test IoU (`perception.evaluation.evaluate` on masks at the recorded size, as the
    loop scores them) and the stacked predicted masks (for the agreement column)."""
    masks: list[np.ndarray] = []

    def keep(indices: range, rgb: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> None:
        masks.extend(mask)

    desc = f"test {pred.name}"
    scores = evaluate(pred, ds, frames=limit, frame_size=True, on_batch=keep, progress=progress, desc=desc)
    return scores, np.stack(masks)


def mask_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (stacks of) bool masks, pixels pooled; 1.0 when both are empty."""
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def compare(
    specs: list[ModelSpec],
    data: str | Path | list[str],
    split: str = "test",
    threads: tuple[int, ...] = (2, 1),
    runs: int = 50,
    frames: int | None = None,
    profile_runs: int = 10,
    progress: bool = False,
) -> tuple[list[Row], dict[str, dict[str, float]]]:
    """Measure every model; returns the rows and the per-operator profiles by label."""
    ds = LaneDataset(data, split=split)
    frame = ds.load(0)[0]
    rows: list[Row] = []
    ref_masks: np.ndarray | None = None
    profiles: dict[str, dict[str, float]] = {}
    labels_seen: set[str] = set()
    for spec in specs:
        pred = spec.load(threads[0])
        label = spec.label or f"{spec.path.stem} ({pred.scheme}, {spec.runtime})"
        if label in labels_seen:
            label = f"{label} #{len(rows) + 1}"
        labels_seen.add(label)
        row = Row(
            label=label,
            path=str(spec.path),
            scheme=pred.scheme,
            runtime=spec.runtime,
            description=pred.description,
            size_mb=size_mb(spec.path),
            params_m=param_count(pred.meta) / 1e6,
            input_size=pred.input_size,
        )
        for n_threads in threads:
            p = pred if n_threads == threads[0] else spec.load(n_threads)
            torch.set_num_threads(n_threads)
            p.warmup()
            row.latency[str(n_threads)] = latency_stats(lambda p=p: p.predict(frame), runs)
        torch.set_num_threads(threads[0])
        row.test, masks = test_scores(pred, ds, frames, progress)
        row.test = {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in row.test.items()}
        if ref_masks is None and pred.scheme == "float":
            ref_masks = masks
        if ref_masks is not None:
            row.agreement = mask_agreement(masks, ref_masks)
        if spec.runtime != "onnx" and profile_runs > 0:
            profiles[label] = profile_ops(pred, frame, profile_runs)
        rows.append(row)
    return rows, profiles


def _fmt(v: float | None, nd: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{nd}f}"


def machine_line(threads: tuple[int, ...]) -> str:
    """Where the numbers come from, for every table."""
    import os

    from perception.cpu import describe

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{describe()}; {os.cpu_count()} logical CPUs, torch {torch.__version__}, Python {platform.python_version()}; "
        f"threads {', '.join(map(str, threads))}; batch 1; load average at the start {load} "
        "(other processes on the machine slow torch's OpenMP threads far more than one thread)"
    )


def write_markdown(
    path: Path, rows: list[Row], profiles: dict[str, dict[str, float]], threads: tuple[int, ...], data: str, split: str
) -> None:
    """The comparison table, the per-operator table and the plot reference."""
    t = [str(n) for n in threads]
    lines = [
        "# Float vs int8: size, latency, accuracy",
        "",
        f"Data: `{data}` split `{split}`. Machine: {machine_line(threads)}. Latency is the predictor's whole "
        "call (preprocess + inference + postprocess, perf_counter_ns), median / p90 / p99 in ms. "
        "Agreement is the IoU of the model's lane masks with the float reference's masks.",
        "",
        "| model | runtime | file MB | params M | input | "
        + " | ".join(f"{n} thr med / p90 / p99 ms" for n in t)
        + " | test IoU | mean frame IoU | agreement |",
        "|---|---|---:|---:|---|" + "---:|" * len(t) + "---:|---:|---:|",
    ]
    for r in rows:
        lat = " | ".join(
            f"{_fmt(r.latency[n]['median'], 1)} / {_fmt(r.latency[n]['p90'], 1)} / {_fmt(r.latency[n]['p99'], 1)}"
            for n in t
        )
        lines.append(
            f"| {r.label} | {r.description} | {r.size_mb:.2f} | {r.params_m:.2f} | {r.input_size[0]}x{r.input_size[1]} "
            f"| {lat} | {_fmt(r.test.get('iou'), 4)} | {_fmt(r.test.get('mean_frame_iou'), 4)} "
            f"| {_fmt(r.agreement, 4)} |"
        )
    if profiles:
        names = list(profiles)
        cats = sorted(
            {c for p in profiles.values() for c in p}, key=lambda c: -max(p.get(c, 0) for p in profiles.values())
        )
        lines += [
            "",
            f"## Where the time goes (torch.profiler, self CPU ms per frame, {t[0]} threads)",
            "",
            "| operator | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        for c in cats:
            lines.append(f"| {c} | " + " | ".join(_fmt(profiles[n].get(c), 1) for n in names) + " |")
        lines.append("| **total** | " + " | ".join(_fmt(sum(profiles[n].values()), 1) for n in names) + " |")
        lines += [
            "",
            "Compiled models run inductor-generated kernels: their BN is folded into the convolutions and "
            "their ReLUs, quantize/dequantize and concatenations are fused into the convolutions' epilogues "
            "or into `cpp_fused` kernels, so those rows are (near) zero for them.",
        ]
    lines += ["", f"![accuracy vs latency]({path.with_suffix('.png').name})", ""]
    path.write_text("\n".join(lines))


def plot(path: Path, rows: list[Row], threads: tuple[int, ...]) -> None:
    """Test IoU against median latency; marker area proportional to the file size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    by_latency = sorted(rows, key=lambda r: r.latency[str(threads[0])]["median"])
    for i, r in enumerate(by_latency):
        x = r.latency[str(threads[0])]["median"]
        y = r.test.get("iou", float("nan"))
        ax.scatter([x], [y], s=30 + 20 * r.size_mb, alpha=0.7, color="tab:blue" if r.scheme == "float" else "tab:red")
        # neighbours in latency often share an IoU (one model, two runtimes): alternate above / below
        ax.annotate(
            f"{r.label}\n{r.size_mb:.1f} MB",
            (x, y),
            fontsize=7,
            xytext=(5, 6 if i % 2 == 0 else -22),
            textcoords="offset points",
        )
    ax.margins(x=0.15, y=0.2)
    ax.set_xlabel(f"median latency per frame [ms], {threads[0]} threads")
    ax.set_ylabel("test lane IoU")
    ax.set_title("accuracy vs latency (blue float, red int8; area ~ file size)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quant/compare.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python quant/compare.py --models runs/unet_w16/best.pth:eager runs/unet_w16/best.pth "
        "models/unet_ptq.pth models/unet_qat.pth --data data/town03 --out docs/quant_compare",
    )
    parser.add_argument("--models", nargs="+", required=True, help="PATH or PATH:torch|eager|onnx; float first")
    parser.add_argument("--data", nargs="+", action="extend", required=True, help="recorded dataset folder(s), merged")
    parser.add_argument("--split", default="test", help="split to score (default test)")
    parser.add_argument("--frames", type=int, default=None, help="score only the first N frames of the split")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per model and thread count (default 50)")
    parser.add_argument("--thread-counts", default="2,1", help="thread counts to time (default 2,1)")
    parser.add_argument("--profile-runs", type=int, default=10, help="profiled runs per model (0: no profile)")
    parser.add_argument("--out", default="docs/quant_compare", help="output prefix: OUT.md, OUT.png, OUT.json")
    add_common_args(parser)
    return parser


def _main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix in (".md", ".png", ".json"):
        out = out.with_suffix("")
    for ext in (".md", ".png", ".json"):
        check_output(out.with_suffix(ext), args.overwrite)
    try:
        threads = tuple(int(t) for t in args.thread_counts.split(","))
    except ValueError:
        raise QuantError(f"--thread-counts must be like 2,1, got {args.thread_counts!r}") from None
    specs = [ModelSpec.parse(m) for m in args.models]
    rows, profiles = compare(
        specs,
        args.data,
        args.split,
        threads,
        args.runs,
        args.frames,
        args.profile_runs,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_markdown(out.with_suffix(".md"), rows, profiles, threads, ", ".join(args.data), args.split)
    plot(out.with_suffix(".png"), rows, threads)
    payload = {"machine": machine_line(threads), "rows": [r.__dict__ for r in rows], "profiles": profiles}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str))
    for r in rows:
        print(
            f"{r.label}: {r.size_mb:.2f} MB, {r.latency[str(threads[0])]['median']:.1f} ms, "
            f"IoU {r.test['iou']:.4f}, agreement {_fmt(r.agreement, 4)}"
        )
    print(f"wrote {out.with_suffix('.md')}, {out.with_suffix('.png')}, {out.with_suffix('.json')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    return run_quant_cli(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
