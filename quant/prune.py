"""Structured (channel) pruning of a trained U-Net, then fine-tuning: a smaller float checkpoint.

    python quant/prune.py --model runs/unet_w16/best.pth --ratio 0.5 --data data/town03 --out runs/unet_p50.pth

Why channel pruning and not sparsity: removing whole output channels (and the matching input
channels of every consumer, skips and concatenations included) gives a dense network that
every runtime runs faster as it is; unstructured zeros need sparse kernels we do not have.

How: `torch-pruning` (pip install 'laneloop[prune]') traces the dependency graph and removes
``ratio`` of each conv's output channels with the smallest L1 norm (the 1x1 head keeps its
classes). The pruned widths go into the U-Net's ``channels`` argument, so the output is a
normal float checkpoint (``build_model("unet", **arch_kwargs)`` rebuilds it, strict load) that
`load_predictor`, PTQ, QAT and ONNX/OpenVINO export take like any other. Fine-tuning: AdamW,
one-cycle, BCE+Dice (the trainer's defaults), ``--epochs`` over the train split, or with
``--budget-cpu-min`` until that much process CPU time is spent (train.budget: the unit of the
design study, so a pruned model's fine-tune is charged like any training); ``--augment`` adds
the trainer's paired augmentation. The val IoU of the result is stored in its metrics beside
the pruning record.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import dataclasses
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from dataset.reader import dataset_for
from perception.checkpoint import CheckpointMeta, build_from_checkpoint, save_checkpoint
from perception.evaluation import evaluate
from perception.flops import count_flops, count_params
from perception.models import build_model
from perception.models.unet import conv_names
from perception.predictor import module_predictor
from quant.common import QuantError, add_common_args, check_output, command_line, file_digest, run_quant_cli
from train.augment import AugmentedDataset, PairedAugment
from train.budget import BudgetSchedule, CpuBudget
from train.losses import build_loss
from train.train import make_scheduler, steps_done, train_one_epoch

INSTALL_HINT = "pip install 'laneloop[prune]' (torch-pruning)"


def _torch_pruning() -> Any:
    try:
        import torch_pruning as tp
    except ImportError:
        raise QuantError(f"structured pruning needs torch-pruning ({INSTALL_HINT})") from None
    return tp


def prune_unet(model: nn.Module, ratio: float, input_size: tuple[int, int]) -> nn.Module:
    """A new U-Net with ``ratio`` of every conv's channels removed by L1 norm (weights kept).

    The result is built by `build_model` from its ``channels`` and holds the pruned weights
    (strict load), so its ``config`` is what a checkpoint needs to rebuild it.
    """
    if getattr(model, "arch", None) != "unet":
        raise QuantError(f"pruning handles U-Net checkpoints only, not {getattr(model, 'arch', '?')!r}")
    if not 0.0 < ratio < 1.0:
        raise QuantError(f"--ratio must be in (0, 1), got {ratio}")
    tp = _torch_pruning()
    work = build_model("unet", **model.config)
    work.load_state_dict(model.state_dict())
    work.eval()
    example = torch.zeros(1, model.config["in_channels"], *input_size)
    pruner = tp.pruner.MagnitudePruner(
        work,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        ignored_layers=[work.head],
    )
    pruner.step()
    modules = dict(work.named_modules())
    channels = []
    for name in conv_names(model.config["depth"]):
        m = modules[name]
        if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):  # a ConvBNReLU / the up path's Sequential
            m = next(c for c in m.modules() if isinstance(c, nn.Conv2d))
        conv = m
        channels.append(int(conv.out_channels))
    pruned = build_model("unet", **{**model.config, "channels": channels})
    pruned.load_state_dict(work.state_dict(), strict=True)
    return pruned


def fine_tune(
    model: nn.Module,
    meta: CheckpointMeta,
    data: list[str],
    epochs: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
    budget_cpu_min: float | None = None,
    augment: bool = False,
) -> dict[str, Any]:
    """`epochs` of AdamW + one-cycle on the train split (with a budget: until it is spent,
    `epochs` the most); returns the val metrics after, with the CPU time and steps it took."""
    train_set = dataset_for(meta, data, "train")
    val_set = dataset_for(meta, data, "val")
    if len(train_set) < batch_size:
        raise QuantError(f"only {len(train_set)} training frames for batch size {batch_size} (record more frames)")
    loss_fn = build_loss("bce+dice" if meta.task.kind == "binary" else "ce", meta.task.kind, None)
    order = torch.Generator().manual_seed(seed)
    train_data = (
        AugmentedDataset(train_set, PairedAugment(train_set.mean, train_set.std), seed) if augment else train_set
    )
    loader = DataLoader(train_data, batch_size=batch_size, shuffle=True, drop_last=True, generator=order)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    budget = None if budget_cpu_min is None else CpuBudget(budget_cpu_min * 60.0)
    if budget is None:
        scheduler = make_scheduler("onecycle", optimizer, lr, max(1, epochs * len(loader)))
    else:
        scheduler = BudgetSchedule(optimizer, "onecycle", lr, budget)
    torch.manual_seed(seed)
    cpu0 = time.process_time()
    for epoch in range(epochs):
        if isinstance(train_data, AugmentedDataset):
            train_data.set_epoch(epoch)
        train_one_epoch(model, loader, loss_fn, optimizer, scheduler, epoch, progress, budget=budget)
        if budget is not None and budget.exhausted:
            break
    spent = time.process_time() - cpu0 if budget is None else budget.used_s
    model.eval()
    val = evaluate(module_predictor(model, meta), val_set, batch_size=batch_size, loss_fn=loss_fn)
    return {**val, "train_cpu_s": spent, "steps": steps_done(optimizer), "epochs_run": epoch + 1}


def prune_checkpoint(
    model_path: str | Path,
    ratio: float,
    data: list[str] | None,
    epochs: int,
    out: str | Path,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
    budget_cpu_min: float | None = None,
    augment: bool = False,
) -> tuple[Path, CheckpointMeta]:
    """Prune `model_path` by `ratio`, fine-tune `epochs` on `data` (0: none), write `out`."""
    out = check_output(out, overwrite)
    if epochs < 0:
        raise QuantError(f"--epochs must be >= 0, got {epochs}")
    if budget_cpu_min is not None and not (budget_cpu_min > 0 and epochs > 0):
        raise QuantError("--budget-cpu-min must be > 0, with --epochs > 0 (the most epochs it may take)")
    if epochs > 0 and not data:
        raise QuantError("fine-tuning needs --data DIR (or pass --epochs 0)")
    model, meta = build_from_checkpoint(model_path)
    size = tuple(meta.input_size)
    pruned = prune_unet(model, ratio, size)
    val = {}
    if epochs > 0:
        val = fine_tune(pruned, meta, data, epochs, batch_size, lr, seed, progress, budget_cpu_min, augment)
    record = {
        "ratio": float(ratio),
        "method": "torch-pruning MagnitudePruner, L1, per layer",
        "parent": {"path": str(model_path), "sha256_16": file_digest(model_path), "metrics": dict(meta.metrics)},
        "params_before": count_params(model),
        "params_after": count_params(pruned),
        "gflops_before": count_flops(model, size) / 1e9,
        "gflops_after": count_flops(pruned, size) / 1e9,
        "fine_tune": {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "budget_cpu_min": budget_cpu_min,
            "augment": augment,
            **{k: val[k] for k in ("train_cpu_s", "steps", "epochs_run") if k in val},
        },
    }
    metrics: dict[str, Any] = {"prune": record}
    if val:
        metrics.update({f"val_{k}": val[k] for k in ("iou", "precision", "recall", "loss")})
    new_meta = dataclasses.replace(meta, arch_kwargs=dict(pruned.config), metrics=metrics, command=command_line())
    save_checkpoint(out, pruned.eval(), new_meta, overwrite=overwrite)
    return out, new_meta


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quant/prune.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python quant/prune.py --model runs/unet_w16/best.pth --ratio 0.5 --data data/town03 "
        "--epochs 2 --out runs/unet_p50.pth",
    )
    parser.add_argument("--model", required=True, help="float U-Net checkpoint (.pth)")
    parser.add_argument("--ratio", type=float, required=True, help="share of each conv's channels to remove, 0..1")
    parser.add_argument("--data", nargs="+", action="extend", default=None, help="dataset folder(s) to fine-tune on")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (default 2; 0: prune only)")
    parser.add_argument(
        "--budget-cpu-min",
        type=float,
        help="fine-tune until this much process CPU time [min] is spent (then --epochs is the most it may take)",
    )
    parser.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, default=False, help="the trainer's paired augmentation"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="frames per step (default 8)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak fine-tuning learning rate (default 1e-3)")
    parser.add_argument("--out", required=True, help="output float checkpoint, e.g. runs/unet_p50.pth")
    add_common_args(parser)
    return parser


def _main(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    out, meta = prune_checkpoint(
        args.model,
        args.ratio,
        args.data,
        args.epochs,
        args.out,
        args.batch_size,
        args.lr,
        args.seed,
        args.overwrite,
        progress=not args.no_progress and sys.stderr.isatty(),
        budget_cpu_min=args.budget_cpu_min,
        augment=args.augment,
    )
    rec = meta.metrics["prune"]
    iou = f", val IoU {meta.metrics['val_iou']:.4f}" if "val_iou" in meta.metrics else ""
    print(
        f"wrote {out}: {rec['params_before'] / 1e6:.3f}M -> {rec['params_after'] / 1e6:.3f}M params, "
        f"{rec['gflops_before']:.2f} -> {rec['gflops_after']:.2f} GFLOPs at {meta.input_size[0]}x{meta.input_size[1]}"
        f"{iou} in {time.perf_counter() - t0:.0f} s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    return run_quant_cli(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
