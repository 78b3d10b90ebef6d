"""Float CPU latency of the trained U-Net: the baseline the quantized models must beat.

Example:
    python benchmarks/bench_train_baseline.py --model runs/unet_w16/best.pth --threads 2

Batch 1, float32 eager, `torch.inference_mode`, timed with perf_counter_ns around the forward
call only (`bench_models.latency_ms`: warm-up, then rounds of timed runs, best median kept).
The trained checkpoint is timed at its own size and at 256x256 (the U-Net is fully
convolutional, so the weights run at any size divisible by 2**depth).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from perception.checkpoint import build_from_checkpoint
from perception.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling script in benchmarks/
from bench_models import _cpu_name, latency_ms

SIZES = [(256, 256), (160, 320)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="float checkpoint (default: an untrained default U-Net, same speed)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--runs", type=int, default=30, help="timed runs per round (default 30)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds; the best median is kept (default 3)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.model:
        model, meta = build_from_checkpoint(args.model)
        label = f"{args.model} ({meta.arch} {meta.arch_kwargs})"
    else:
        model, label = build_model("unet", base_width=16).eval(), "unet w16 (untrained)"
    load = os.getloadavg()[0]
    print(f"{label}: {_cpu_name()}, torch {torch.__version__}, {args.threads} threads, batch 1, float32 eager")
    print("| size (HxW) | median ms | p90 ms |\n|---|---|---|")
    for size in SIZES:
        median, p90 = latency_ms(model, size, args.runs, args.warmup, args.rounds)
        print(f"| {size[0]}x{size[1]} | {median:.1f} | {p90:.1f} |", flush=True)
    print(f"1-minute load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end (cores: {os.cpu_count()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
