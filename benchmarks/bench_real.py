"""The shipped models on real road frames, scored with the real datasets' own metrics.

    PYTHONPATH=. python benchmarks/bench_real.py --threads 2 [--json results/bench_real.json]

Imports the shared dev frames (`../shared/data/real-lanes-dev/`, or $LANELOOP_REAL_DEV: 6
TuSimple highway frames, 10 CULane night frames) with our importers into a temporary folder
at the models' 160x320 input (`collect.real_dev`; nothing is written into the project, and
the frames are for measuring only), runs each shipped model through
`perception.predictor.load_predictor`, and prints `cpu_info().describe()` and one markdown
row per set and model: pixel IoU against the imported mask, precision / recall / F1 @3px,
TuSimple accuracy / FP / FN and CULane F1 of the lanes `perception.mask_lanes` finds in the
mask (train/real_metrics.py). A last row per set is a check of the decoder, not a model: the
label lanes drawn 2 px wide at 160x320 (a perfect thin marking mask) as the prediction.
Without the dev frames it prints one line and exits 0.

`--sim DIR` (repeatable) adds simulator recordings made with `collect/record.py --lane-labels`
(their test split), scored the same way against the lane boundaries the simulator stored
(docs/real_frames.md, "Simulated frames, scored the same way"); `--model NAME` keeps only
those rows of MODELS.

    PYTHONPATH=. python benchmarks/bench_real.py --threads 2 --model unet_float --sim data/town03_lanes
    PYTHONPATH=. python benchmarks/bench_real.py --checkpoint runs/lanes/best.pth --sim data/town03_lanes
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import math
import tempfile
from typing import Any

from collect.real_dev import DEV_ENV, dev_root, import_dev_sets
from dataset.reader import LaneDataset
from perception.cpu import cpu_info
from perception.predictor import load_predictor
from train.real_metrics import score_set, thin_labels

ROOT = Path(__file__).resolve().parents[1]
SIZE = (160, 320)
SET_NAMES = {"tusimple": "TuSimple highway, day", "culane": "CULane night"}
#: (row name, model file, runtime)
MODELS = (
    ("unet_float", "unet_float.pth", "torch"),
    ("unet_ptq", "unet_ptq.pth", "torch"),
    ("unet_qat", "unet_qat.pth", "torch"),
    ("unet_qat .onnx", "unet_qat.onnx", "onnx"),
)
DECODER_CHECK = "label lanes 2 px (decoder check)"


def row(dataset: str, frames: int, model: str, r: dict[str, Any]) -> dict[str, Any]:
    tol, ts, cu = r["tolerant"], r["tusimple"], r["culane"]
    return {
        "set": dataset,
        "frames": frames,
        "model": model,
        "pixel_iou": r["pixel"]["iou"],
        "precision_3px": tol["precision"],
        "recall_3px": tol["recall"],
        "f1_3px": tol["f1"],
        "tusimple_accuracy": ts["accuracy"],
        "tusimple_fp": ts["fp"],
        "tusimple_fn": ts["fn"],
        "culane_f1": cu["f1"],
        "pred_lanes": ts["pred_lanes"],
        "found_lanes": ts["found"],
        "label_lanes": ts["label_lanes"],
    }


def _f(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of `row` dicts."""
    head = (
        "| real frames | model | pixel IoU | P @3px | R @3px | F1 @3px | TuSimple acc | TuSimple FP | TuSimple FN "
        "| CULane F1 | lanes: predicted, found / label |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        cells = [
            f"{r['frames']} {SET_NAMES.get(r['set'], r['set'])}",
            r["model"],
            _f(r["pixel_iou"]),
            *(_f(r[k], 2) for k in ("precision_3px", "recall_3px", "f1_3px")),
            _f(r["tusimple_accuracy"]),
            *(_f(r[k], 2) for k in ("tusimple_fp", "tusimple_fn")),
            _f(r["culane_f1"]),
            f"{r['pred_lanes']}, {r['found_lanes']} / {r['label_lanes']}",
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", default=str(ROOT / "models"), help="folder of the shipped models")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    p.add_argument("--sim", action="append", default=[], metavar="DIR", help="a recording with --lane-labels")
    p.add_argument("--model", action="append", choices=[m[0] for m in MODELS], help="only these models")
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="PTH",
        help="also (without --model: only) this checkpoint, by its file name, in torch (repeatable)",
    )
    args = p.parse_args(argv)
    root = dev_root()
    if root is None and not args.sim:
        print(f"skipped: no real dev frames (../shared/data/real-lanes-dev beside the project, or ${DEV_ENV})")
        return 0
    print(cpu_info().describe())
    rows = []
    with tempfile.TemporaryDirectory(prefix="laneloop-real-") as tmp:
        dev = import_dev_sets(Path(tmp), root, SIZE) if root is not None else {}
        sets = {k: LaneDataset(v, split="test", size=SIZE) for k, v in dev.items()}
        for d in args.sim:
            sets[f"sim {Path(d).name}"] = LaneDataset(d, split="test", size=SIZE)
        shipped = [(n, Path(args.models) / f, rt) for n, f, rt in MODELS if not args.model or n in args.model]
        extra = [(str(Path(c)), Path(c), "torch") for c in args.checkpoint]
        for name, file, runtime in (shipped if args.model or not extra else []) + extra:
            predictor = load_predictor(file, runtime=runtime, threads=args.threads)
            for set_name, ds in sets.items():
                r = score_set(ds, lambda s, i, rgb, label, pr=predictor: pr.predict(rgb))
                rows.append(row(set_name, len(ds), name, r))
                print(f"  {set_name} {name} ({predictor.description or runtime}): F1 @3px {r['tolerant']['f1']:.3f}")
        for set_name, ds in sets.items():
            rows.append(row(set_name, len(ds), DECODER_CHECK, score_set(ds, thin_labels)))
    order = list(sets)
    rows.sort(key=lambda r: order.index(r["set"]))
    print(f"\n{table(rows)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"cpu": cpu_info().describe(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
