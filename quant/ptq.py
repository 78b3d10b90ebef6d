"""Static int8 post-training quantization of a float checkpoint (torchao PT2E, x86 inductor).

Calibrates activation ranges on recorded frames, converts to int8 and writes a checkpoint
in the one safe format, holding int8 weights (perception.quantized explains the layout).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import time

import torch
from tqdm import tqdm

from perception import quantized
from perception.checkpoint import CheckpointMeta, build_from_checkpoint, save_checkpoint
from quant.common import (
    add_common_args,
    binary_dataset_for,
    calibration_frames,
    check_output,
    quantized_meta,
    run_quant_cli,
    size_mb,
)


def quantize_ptq(
    model_path: str | Path,
    data: str | Path | list[str],
    calib_frames: int = 200,
    observer: str = "minmax",
    per_channel: bool = True,
    split: str = "train",
    progress: bool = False,
) -> tuple[torch.fx.GraphModule, CheckpointMeta]:
    """Calibrate and convert a float checkpoint; returns the int8 graph and its metadata.

    The calibration frames come from `split` of `data` (never the test split), resized and
    normalised as the checkpoint says; they are not needed again to load the result.
    """
    model, meta = build_from_checkpoint(model_path)
    size = tuple(meta.input_size)
    ds = binary_dataset_for(meta, data, split)
    prepared = quantized.prepare(model, size, observer, per_channel, qat=False)
    n = min(calib_frames, len(ds))
    with torch.no_grad():
        for x in tqdm(calibration_frames(ds, n), total=n, desc="calibrate", disable=not progress, file=sys.stderr):
            prepared(x)
    gm = quantized.convert(prepared, qat=False)
    recipe = quantized.recipe(observer, per_channel, False, size)
    calib = {"calibration": {**ds.identity(), "frames": n}}
    return gm, quantized_meta(meta, gm, "ptq", recipe, model_path, extra=calib)


def save_quantized(path: str | Path, gm: torch.fx.GraphModule, meta: CheckpointMeta, overwrite: bool = False) -> Path:
    """Write an int8 graph (int8 weights + activation qparams) as a laneloop checkpoint."""
    return save_checkpoint(path, quantized.pack_state(gm), meta, overwrite=overwrite)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quant/ptq.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python quant/ptq.py --model runs/unet_w16/best.pth --data data/town03 "
        "--calib-frames 200 --out models/unet_ptq.pth",
    )
    parser.add_argument("--model", required=True, help="float checkpoint (.pth)")
    parser.add_argument(
        "--data", nargs="+", action="extend", required=True, help="recorded dataset folder(s) for calibration"
    )
    parser.add_argument("--split", default="train", help="split to calibrate on (default train)")
    parser.add_argument("--calib-frames", type=int, default=200, help="calibration frames (default 200)")
    parser.add_argument(
        "--observer",
        choices=quantized.OBSERVERS,
        default="minmax",
        help="activation range observer (default minmax: on lane U-Nets it agrees best with float; "
        "histogram and percentile clip rare large activations, which here carry the lane markings)",
    )
    parser.add_argument(
        "--per-channel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="int8 weights with one scale per output channel (default; --no-per-channel: one per tensor)",
    )
    parser.add_argument("--out", required=True, help="output checkpoint, e.g. models/unet_ptq.pth")
    add_common_args(parser)
    return parser


def _main(args: argparse.Namespace) -> int:
    out = check_output(args.out, args.overwrite)
    t0 = time.perf_counter()
    gm, meta = quantize_ptq(
        args.model,
        args.data,
        args.calib_frames,
        args.observer,
        args.per_channel,
        split=args.split,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    save_quantized(out, gm, meta, overwrite=args.overwrite)
    ratio = size_mb(args.model) / size_mb(out)
    print(
        f"wrote {out}: int8 PTQ ({args.observer}, {'per-channel' if args.per_channel else 'per-tensor'} weights), "
        f"{size_mb(out):.2f} MB ({ratio:.1f}x smaller than the float file) in {time.perf_counter() - t0:.0f} s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    return run_quant_cli(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
