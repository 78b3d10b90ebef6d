"""Quantization-aware fine-tuning of a float checkpoint to int8 (torchao PT2E, x86 inductor).

The float model is exported, fake-quantized (``prepare_qat_pt2e``: moving-average min/max
activations, per-channel int8 weights, conv+BN kept foldable) and fine-tuned at a low
learning rate; BN statistics and then the observers are frozen after set epochs so the
last epochs train against fixed quantization grids. Each epoch is logged (CSV, tqdm) and
checkpointed so a killed run resumes and ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import csv
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.export import Dim
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from dataset.reader import LaneDataset
from perception import quantized
from perception.checkpoint import CheckpointMeta, build_from_checkpoint, load_checkpoint
from perception.evaluation import evaluate
from perception.predictor import module_predictor
from plumbing import atomic_output
from quant.common import (
    QuantError,
    add_common_args,
    binary_dataset_for,
    check_output,
    file_digest,
    quantized_meta,
    run_quant_cli,
    size_mb,
)
from quant.ptq import save_quantized
from train.losses import BCELoss

STATE_FORMAT = "laneloop-qat-state"
#: BCE weight of lane pixels in fine-tuning (~4% of a frame's pixels are lane).
POS_WEIGHT = 4.0
LOG_FIELDS = [
    "epoch",
    "steps",
    "train_loss",
    "val_iou",
    "val_mean_frame_iou",
    "lr",
    "bn_frozen",
    "observers_frozen",
    "s",
]


@dataclass
class QATConfig:
    """Fine-tuning settings; all but `epochs` must match when a run is resumed."""

    epochs: int = 4
    lr: float = 1e-4
    batch_size: int = 8
    freeze_bn_epoch: int | None = None  # default: ceil(epochs / 2)
    freeze_observer_epoch: int | None = None  # default: ceil(3 * epochs / 4)
    steps_per_epoch: int | None = None  # default: the whole train split
    val_frames: int = 50
    seed: int = 0

    def resolved(self) -> QATConfig:
        """Copy with the epoch defaults filled in."""
        bn = self.freeze_bn_epoch if self.freeze_bn_epoch is not None else math.ceil(self.epochs / 2)
        obs = self.freeze_observer_epoch if self.freeze_observer_epoch is not None else math.ceil(3 * self.epochs / 4)
        return dataclasses.replace(self, freeze_bn_epoch=bn, freeze_observer_epoch=obs)


def prepare_qat(model: torch.nn.Module, input_size: tuple[int, int]) -> torch.fx.GraphModule:
    """Export with a dynamic batch (train batches, batch-1 inference) and insert fake quant.

    Its state dict has the same keys as the static batch-1 graph `quantized.prepare` makes,
    which is what the saved int8 model is converted from.
    """
    _, qp, _ = quantized._pt2e()
    model.train()
    h, w = input_size
    with quantized.quiet():
        ep = torch.export.export(model, (torch.zeros(2, 3, h, w),), dynamic_shapes=({0: Dim("batch", max=1024)},))
        return qp.prepare_qat_pt2e(ep.module(), quantized.make_quantizer(qat=True))


def set_bn_frozen(gm: torch.fx.GraphModule, frozen: bool) -> None:
    """Freeze (use running statistics, stop updating them) or unfreeze every BN of the graph."""
    changed = False
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.batch_norm.default:
            args = list(node.args)
            if args[5] != (not frozen):
                args[5] = not frozen
                node.args = tuple(args)
                changed = True
    if changed:
        gm.recompile()


def _set_mode(gm: torch.fx.GraphModule, train: bool, bn_frozen: bool, observers_frozen: bool) -> None:
    pt2e, _, _ = quantized._pt2e()
    if train:
        pt2e.move_exported_model_to_train(gm)
        set_bn_frozen(gm, bn_frozen)
    else:
        pt2e.move_exported_model_to_eval(gm)
    gm.apply(pt2e.disable_observer if observers_frozen or not train else pt2e.enable_observer)


def _batches(ds: LaneDataset, cfg: QATConfig, epoch: int) -> DataLoader:
    g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # one order per (seed, epoch)
    return DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, generator=g, num_workers=0)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise QuantError(f"cannot read resume state {path}: {str(exc)[:200]} (delete it to start over)") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise QuantError(f"{path} is not a QAT resume state (delete it to start over)")
    return state


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(history)


def train_qat(
    model_path: str | Path,
    data: str | Path | list[str],
    run_dir: str | Path,
    cfg: QATConfig,
    resume: bool = False,
    progress: bool = False,
    convert: bool = True,
) -> tuple[torch.fx.GraphModule | None, CheckpointMeta | None]:
    """Fine-tune with fake quant for ``cfg.epochs`` epochs; returns the int8 graph + metadata.

    `run_dir` receives ``log.csv`` (one row per epoch) and ``last.pth`` (resume state after
    every epoch). With `resume`, training continues from ``last.pth``; the result equals
    that of an uninterrupted run with the same settings. ``convert=False`` stops after the
    training (returns ``(None, None)``), e.g. to continue later with more epochs.
    """
    cfg = cfg.resolved()
    run_dir = Path(run_dir)
    state_path = run_dir / "last.pth"
    model, float_meta = build_from_checkpoint(model_path)
    size = tuple(float_meta.input_size)
    train_ds = binary_dataset_for(float_meta, data, "train")
    val_full = binary_dataset_for(float_meta, data, "val")
    val_idx = torch.linspace(0, len(val_full) - 1, min(cfg.val_frames, len(val_full))).round().long().unique()
    val_ds = Subset(val_full, val_idx.tolist())

    torch.manual_seed(cfg.seed)
    gm = prepare_qat(model, size)
    opt = torch.optim.Adam([p for p in gm.parameters() if p.requires_grad], lr=cfg.lr)
    loss_fn = BCELoss(POS_WEIGHT)
    val_predictor = module_predictor(gm, float_meta, "qat (fake quant)")
    history: list[dict[str, Any]] = []
    start = 0
    parent_digest = file_digest(model_path)
    if resume:
        if not state_path.is_file():
            raise QuantError(f"nothing to resume: {state_path} does not exist (run without --resume)")
        state = _load_state(state_path)
        saved = dict(state["config"])
        mine = dataclasses.asdict(cfg)
        saved.pop("epochs"), mine.pop("epochs")
        if saved != mine or state["parent"] != parent_digest:
            raise QuantError(
                f"{state_path} was made with other settings or another float model "
                "(resume with the same --model and options, or start a new --run-dir)"
            )
        gm.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optim"])
        history = list(state["history"])
        start = int(state["epoch"]) + 1
    elif state_path.exists():
        raise QuantError(f"{state_path} exists (pass --resume to continue it, or --overwrite to start over)")

    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        bn_frozen = epoch >= cfg.freeze_bn_epoch
        obs_frozen = epoch >= cfg.freeze_observer_epoch
        _set_mode(gm, True, bn_frozen, obs_frozen)
        loader = _batches(train_ds, cfg, epoch)
        n_steps = min(len(loader), cfg.steps_per_epoch or len(loader))
        losses = []
        bar = tqdm(total=n_steps, desc=f"qat {epoch + 1}/{cfg.epochs}", disable=not progress, file=sys.stderr)
        for step, (x, y) in enumerate(loader):
            if step >= n_steps:
                break
            loss = loss_fn(gm(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        bar.close()
        _set_mode(gm, False, bn_frozen, True)
        scores = evaluate(val_predictor, val_ds, batch_size=8)
        history.append(
            {
                "epoch": epoch + 1,
                "steps": n_steps,
                "train_loss": round(sum(losses) / max(len(losses), 1), 6),
                "val_iou": round(float(scores["iou"]), 6),
                "val_mean_frame_iou": round(float(scores["mean_frame_iou"]), 6),
                "lr": cfg.lr,
                "bn_frozen": bn_frozen,
                "observers_frozen": obs_frozen,
                "s": round(time.perf_counter() - t0, 1),
            }
        )
        _save_state(
            state_path,
            {
                "format": STATE_FORMAT,
                "epoch": epoch,
                "config": dataclasses.asdict(cfg),
                "parent": parent_digest,
                "model": gm.state_dict(),
                "optim": opt.state_dict(),
                "history": history,
            },
        )
        _write_log(run_dir / "log.csv", history)
        if progress:
            row = history[-1]
            tqdm.write(f"epoch {row['epoch']}: loss {row['train_loss']:.4f} val IoU {row['val_iou']:.4f}", sys.stderr)
    if start >= cfg.epochs and not history:
        raise QuantError("no epochs to train (raise --epochs)")

    if not convert:
        return None, None
    int8 = quantized.convert(_static_copy(model_path, size, gm.state_dict()), qat=True)
    recipe = quantized.recipe("minmax", True, True, size)
    extra = {
        "qat": True,
        "observer_kind": "moving-average min/max fake quant",
        "train": {**dataclasses.asdict(cfg), "data": train_ds.identity()},
        "history": history,
    }
    last = history[-1] if history else {}
    metrics = {"val_iou_fakequant": last.get("val_iou"), "epochs": cfg.epochs}
    meta = quantized_meta(float_meta, int8, "qat", recipe, model_path, extra=extra, metrics=metrics)
    return int8, meta


def _static_copy(model_path: str | Path, size: tuple[int, int], state: dict[str, torch.Tensor]) -> torch.fx.GraphModule:
    """The static batch-1 QAT graph (the one a loader rebuilds) holding `state`."""
    static = quantized.prepare(build_from_checkpoint(model_path)[0], size, "minmax", True, qat=True)
    static.load_state_dict(state, strict=True)
    return static


def fake_quant_model(model_path: str | Path, run_dir: str | Path) -> torch.fx.GraphModule:
    """The fake-quantized model of a QAT run (its ``last.pth``) in eval mode, observers off:
    the float emulation the int8 model is converted from (for checks and inspection)."""
    state = _load_state(Path(run_dir) / "last.pth")
    _, meta = load_checkpoint(model_path)
    gm = _static_copy(model_path, tuple(meta.input_size), state["model"])
    _set_mode(gm, False, True, True)
    return gm


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quant/qat.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python quant/qat.py --model runs/unet_w16/best.pth --data data/town03 --epochs 4 "
        "--out models/unet_qat.pth\n  python quant/qat.py --model runs/unet_w16/best.pth --data data/town03 --epochs 4 "
        "--out models/unet_qat.pth --resume   # continue a killed run",
    )
    parser.add_argument("--model", required=True, help="float checkpoint (.pth)")
    parser.add_argument(
        "--data", nargs="+", action="extend", required=True, help="recorded dataset folder(s) (train + val splits)"
    )
    parser.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs (default 4)")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4, low on purpose)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--freeze-bn-epoch", type=int, default=None, help="freeze BN stats from this epoch (0-based)")
    parser.add_argument("--freeze-observer-epoch", type=int, default=None, help="freeze observers from this epoch")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="cap the steps of an epoch")
    parser.add_argument("--val-frames", type=int, default=50, help="validation frames per epoch (default 50)")
    parser.add_argument("--run-dir", default=None, help="log.csv + resume state (default runs/qat_<out stem>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument("--out", required=True, help="output int8 checkpoint, e.g. models/unet_qat.pth")
    add_common_args(parser)
    return parser


def _main(args: argparse.Namespace) -> int:
    if args.epochs < 1:
        raise QuantError("--epochs must be >= 1")
    if args.resume and args.overwrite:
        raise QuantError("--resume and --overwrite exclude each other (pick one)")
    out = Path(args.out)
    if not args.resume:
        check_output(out, args.overwrite)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"qat_{out.stem}"
    if args.overwrite:
        (run_dir / "last.pth").unlink(missing_ok=True)
    cfg = QATConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        freeze_bn_epoch=args.freeze_bn_epoch,
        freeze_observer_epoch=args.freeze_observer_epoch,
        steps_per_epoch=args.steps_per_epoch,
        val_frames=args.val_frames,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    gm, meta = train_qat(
        args.model, args.data, run_dir, cfg, resume=args.resume, progress=not args.no_progress and sys.stderr.isatty()
    )
    save_quantized(out, gm, meta, overwrite=args.overwrite or args.resume)
    print(
        f"wrote {out}: int8 QAT, {size_mb(out):.2f} MB ({size_mb(args.model) / size_mb(out):.1f}x smaller than "
        f"the float file), val IoU (fake quant) {meta.metrics['val_iou_fakequant']:.4f}; log {run_dir / 'log.csv'} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    return run_quant_cli(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
