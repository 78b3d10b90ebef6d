"""Score a checkpoint on a recorded dataset split: the lane IoU figures a report quotes.

    python train/evaluate.py --model runs/unet_w16/best.pth --data data/town10hd --split test

Numbers (binary lane task), all from `perception.metrics`, the one IoU of the project:

- dataset IoU: pixels pooled over all frames, ΣTP / (ΣTP + ΣFP + ΣFN);
- mean per-frame IoU: the average IoU of the frames that are not empty;
- precision, recall, F1 of the pooled pixels;
- empty frames, counted apart: a frame whose truth has no lane pixel and where the model
  predicts none either has no defined IoU (0/0). It is neither a 0 (the seed project's
  "zero IoU from noise") nor a 1: it is left out of the mean per-frame IoU and reported as
  a count. A frame with no true lane pixel but some predicted scores IoU 0.

On imported TuSimple / CULane folders and on recordings made with `collect/record.py
--lane-labels` (`--metrics auto`, the default) binary checkpoints also report TuSimple
accuracy / FP / FN, CULane F1 and F1 @3px (train/real_metrics.py, docs/real_frames.md).
Multi-class checkpoints report the mean IoU over classes and the IoU of each class.
The model file is loaded by `perception.predictor.load_predictor`, the one loader, and
scored by `perception.evaluation.evaluate`, the one evaluation (training, QAT and
quant/compare.py use it too). Float checkpoints run eager, a batch per call; quantized
(PTQ / QAT int8) ones through their compiled int8 graph, and ONNX files through their
runtime, frame by frame.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python train/evaluate.py`: make the packages importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import logging
from typing import Any

import numpy as np
import torch

from dataset.format import DatasetError, encode_label_png, encode_rgb_png
from dataset.reader import LaneDataset, dataset_for
from perception.checkpoint import CheckpointError
from perception.evaluation import OnBatch, evaluate
from perception.predictor import load_predictor
from plumbing import atomic_write_bytes

log = logging.getLogger("train.evaluate")

RUNTIMES = ("torch", "onnx", "openvino", "tensorrt", "auto")


def prediction_writer(dataset: LaneDataset, out: Path) -> OnBatch:
    """`OnBatch` that writes, per frame, ``<id>_pred.png`` (predicted tag ids, the label
    format of dataset/) and ``<id>_overlay.png`` (binary: true positives green, false
    positives red, misses blue; multi-class: predicted class colours blended)."""
    from sim.tags import PALETTE

    out.mkdir(parents=True, exist_ok=True)
    tags = np.asarray(dataset.tags, dtype=np.uint8)
    mean = torch.tensor(dataset.mean).view(3, 1, 1)
    std = torch.tensor(dataset.std).view(3, 1, 1)

    def write(indices: range, images: torch.Tensor, truth: torch.Tensor, pred: torch.Tensor) -> None:
        for k, i in enumerate(indices):
            root, row = dataset.items[i]
            name = f"{root.name}_{row['id']}" if len(dataset.roots) > 1 else row["id"]
            rgb = ((images[k] * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            if dataset.task == "binary":
                p = pred[k, 0].numpy()
                t = truth[k, 0].numpy()
                tag_map = np.where(p, tags[0], 0).astype(np.uint8)
                overlay = rgb.copy()
                overlay[p & t] = (0, 255, 0)
                overlay[p & ~t] = (255, 0, 0)
                overlay[~p & t] = (0, 0, 255)
            else:
                tag_map = tags[pred[k].numpy()]
                overlay = (0.5 * rgb + 0.5 * PALETTE[tag_map]).astype(np.uint8)
            atomic_write_bytes(out / f"{name}_pred.png", encode_label_png(tag_map))
            atomic_write_bytes(out / f"{name}_overlay.png", encode_rgb_png(overlay))

    return write


def evaluate_checkpoint(
    model_path: str | Path,
    roots: list[str],
    split: str = "test",
    batch_size: int = 8,
    runtime: str = "torch",
    save_predictions: str | Path | None = None,
    progress: bool = False,
    metrics: str = "auto",
) -> dict[str, Any]:
    """Metrics of a checkpoint on a dataset split (see the module doc for their rules);
    `metrics` adds the real lane metrics (train/real_metrics.py: auto, pixel or real).

    The model is loaded by `perception.predictor.load_predictor` (with the torch runtime:
    int8 graphs compiled, float models eager) and scored by `perception.evaluation.evaluate`.
    """
    from train.real_metrics import chain, real_scorer

    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r} (choose one of: {', '.join(RUNTIMES)})")
    # torch: float eager (the reference numbers), int8 compiled; auto keeps its compiled candidates
    compile = "int8" if runtime == "torch" else True
    predictor = load_predictor(model_path, runtime=runtime, threads=torch.get_num_threads(), compile=compile)
    meta = predictor.meta
    dataset = dataset_for(meta, roots, split)
    real, real_why = real_scorer(dataset, meta.task.kind, metrics)
    on_batch = prediction_writer(dataset, Path(save_predictions)) if save_predictions else None
    on_batch = chain(on_batch, real.on_batch if real else None)
    result = evaluate(predictor, dataset, batch_size=batch_size, on_batch=on_batch, progress=progress)
    result.update(model=str(model_path), data=[str(r) for r in roots], split=split, runtime=runtime)
    result["task"] = meta.task.to_dict()
    result["input_size"] = list(meta.input_size)
    if real is not None:
        result["real_lanes"] = real.compute()
    elif real_why:
        result["real_lanes_skipped"] = real_why
    return result


def format_result(r: dict[str, Any]) -> str:
    """Human-readable summary of `evaluate_checkpoint`'s result."""
    if r["task"]["kind"] == "binary":
        from train.real_metrics import format_real

        real = format_real(r["real_lanes"]) if "real_lanes" in r else []
        if r.get("real_lanes_skipped"):
            real = [f"no real lane metrics: {r['real_lanes_skipped']}"]
        return "\n".join(
            [
                f"dataset IoU        {r['iou']:.4f}   (pixels pooled over {r['frames']} frames)",
                f"mean frame IoU     {r['mean_frame_iou']:.4f}   "
                f"(over the {r['frames'] - r['empty_frames']} non-empty frames)",
                f"precision          {r['precision']:.4f}",
                f"recall             {r['recall']:.4f}",
                f"F1                 {r['f1']:.4f}",
                f"empty frames       {r['empty_frames']}        "
                "(no lane in truth nor prediction: no IoU, counted apart)",
                *real,
            ]
        )
    per_class = ", ".join(f"{t}: {v:.3f}" for t, v in zip(r["task"]["tags"], r["per_class_iou"], strict=True))
    return f"mean IoU {r['iou']:.4f} over tags ({per_class}); pixel accuracy {r['pixel_accuracy']:.4f}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train/evaluate.py",
        description="Score a checkpoint on a dataset split (lane IoU, precision, recall, F1).",
        epilog=(
            "examples:\n"
            "  python train/evaluate.py --model runs/unet_w16/best.pth --data data/town10hd --split test\n"
            "  python train/evaluate.py --model runs/unet_w16/best.pth --data data/a --data data/b "
            "--save-predictions results/preds --json results/eval.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="checkpoint (.pth); with --runtime onnx/openvino also an .onnx file")
    p.add_argument("--data", action="append", required=True, help="dataset folder (repeat to merge several)")
    p.add_argument("--split", default="test", help="train, val, test or all (default test)")
    p.add_argument("--batch-size", type=int, default=8, help="frames per forward pass (default 8)")
    p.add_argument("--runtime", choices=RUNTIMES, default="torch", help="inference runtime (default torch)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: all cores)")
    p.add_argument(
        "--metrics",
        choices=("auto", "pixel", "real"),
        default="auto",
        help="real: also TuSimple accuracy, CULane F1, F1 @3px (imported TuSimple/CULane folders or recordings "
        "with --lane-labels; auto: when every folder is one); pixel: IoU only (default auto)",
    )
    p.add_argument("--save-predictions", metavar="DIR", help="write predicted label and overlay PNGs here")
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="tracebacks on errors")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 1 error, 2 usage)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        if args.json and Path(args.json).exists() and not args.overwrite:
            raise FileExistsError(f"{args.json} exists (pass --overwrite to replace it)")
        result = evaluate_checkpoint(
            args.model, args.data, args.split, args.batch_size, args.runtime, args.save_predictions,
            progress=not args.no_progress and sys.stderr.isatty(), metrics=args.metrics,
        )  # fmt: skip
    except (CheckpointError, DatasetError, ValueError, OSError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # unexpected: still one line unless --debug
        if args.debug:
            raise
        print(f"error: unexpected {type(e).__name__}: {e} (rerun with --debug for a traceback)", file=sys.stderr)
        return 1
    print(format_result(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
