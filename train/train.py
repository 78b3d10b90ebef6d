"""Train a lane segmentation model on recorded datasets.

    python train/train.py --data data/train_town03 --data data/train_town05 --out runs/unet_w16

(docs/training.md has the recording and training commands of the reference result.)

Reads the "train" and "val" splits of the dataset folders (`dataset.reader.LaneDataset`),
trains with AdamW and a cosine or one-cycle schedule stepped per batch, scores the val
split after every epoch with `perception.metrics` and writes, in ``--out``:

- ``last.pth``: the model after the latest epoch, in the one checkpoint format of
  `perception.checkpoint`, whose payload also carries ``train_state`` (optimizer,
  scheduler, RNG state, epoch, history, the run's settings) as tensors and plain data, so
  ``torch.load(weights_only=True)`` still reads it and ``--resume`` continues the run
  exactly: the weights come out bit-identical to an uninterrupted run's;
- ``best.pth``: the model of the epoch with the best val IoU (a plain checkpoint);
- ``log.csv``: one row per epoch; TensorBoard events in ``tb/`` if tensorboard is installed.

``--teacher CKPT`` distils a trained float model into the one being trained (`train.distill`):
the loss becomes task loss + ``--distill-weight`` x the KL term on the teacher's logits softened
by ``--distill-temperature``, on the same frames; the teacher and the two settings are recorded
in the checkpoints' ``data["distill"]`` and in the run's settings.

Everything random derives from ``--seed``: the model's initialisation, the batch order of
each epoch and each sample's augmentation (see `train.augment`). A non-finite loss stops
the run with a one-line error; the last good checkpoint stays as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python train/train.py`: make the packages importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import csv
import hashlib
import json
import logging
import math
import shlex
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dataset.format import MANIFEST_NAME, DatasetError
from dataset.reader import LaneDataset
from perception.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    Normalisation,
    Task,
    load_checkpoint,
    save_checkpoint,
)
from perception.evaluation import evaluate
from perception.metadata import TASK_TARGETS
from perception.models import build_model
from perception.predictor import module_predictor
from plumbing import atomic_output, interrupt_on_signals, parse_size, progress_bar
from train.augment import AugmentedDataset, PairedAugment
from train.budget import BudgetSchedule, CpuBudget
from train.distill import Distiller, make_distiller
from train.losses import LOSSES, build_loss

log = logging.getLogger("train")

SCHEDULES = ("cosine", "onecycle")
CSV_FIELDS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_iou",
    "val_precision",
    "val_recall",
    "lr",
    "seconds",
    "train_cpu_s",
    "steps",
)
#: Flags that define a run: `--resume` takes them from last.pth, not from the command line.
RUN_SETTINGS = (
    "data",
    "arch",
    "arch_kwargs",
    "loss",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "schedule",
    "pos_weight",
    "size",
    "tags",
    "target",
    "augment",
    "seed",
    "teacher",
    "distill_weight",
    "distill_temperature",
    "budget_cpu_min",
)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class UsageError(ValueError):
    """A bad combination of flags (exit code 2)."""


# ----------------------------------------------------------------------------- pieces


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of an epoch's batch order (independent of the per-sample augmentation seeds)."""
    return int(np.random.SeedSequence([seed, epoch, 0x0B47C4]).generate_state(1)[0])


def make_scheduler(
    name: str, optimizer: torch.optim.Optimizer, lr: float, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-batch schedule: cosine decay from `lr` to 0, or one-cycle (warm up to `lr`, anneal)."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=0.15)
    raise KeyError(f"unknown schedule {name!r}; available: {', '.join(SCHEDULES)}")


def data_identity(train_set: LaneDataset, val_set: LaneDataset) -> dict[str, Any]:
    """What trained the model: folders, their manifests' fingerprints, the frames of each split."""
    manifests = {}
    for root in train_set.roots:
        manifests[str(root)] = hashlib.sha256((root / MANIFEST_NAME).read_bytes()).hexdigest()[:16]
    return {
        "roots": [str(r) for r in train_set.roots],
        "manifests": manifests,
        "train": train_set.identity(),
        "val": val_set.identity(),
    }


def save_training_checkpoint(path: Path, model: nn.Module, meta: CheckpointMeta, train_state: dict[str, Any]) -> None:
    """Write `path` atomically: a `save_checkpoint` file whose payload also holds `train_state`.

    The checkpoint format ignores payload keys it does not know, so `load_checkpoint` and
    `build_from_checkpoint` read the file like any other; `train_state` must be tensors and
    plain data so that a weights_only load reads it too.
    """
    with atomic_output(path, fsync=True) as tmp:
        save_checkpoint(tmp, model, meta, overwrite=True)  # validates the metadata, plain data only
        payload = torch.load(tmp, weights_only=True)
        payload["train_state"] = train_state
        torch.save(payload, tmp)


def load_train_state(path: Path) -> tuple[dict[str, torch.Tensor], CheckpointMeta, dict[str, Any]]:
    """(state_dict, meta, train_state) of a `save_training_checkpoint` file, read safely."""
    state_dict, meta = load_checkpoint(path)
    train_state = torch.load(path, weights_only=True).get("train_state")
    if not isinstance(train_state, dict):
        raise CheckpointError(f"{path} holds no training state (resume from the run's last.pth)")
    return state_dict, meta, train_state


def write_csv(path: Path, history: list[dict[str, Any]]) -> None:
    """The whole per-epoch log, rewritten from the history (so a resume never duplicates rows)."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in history:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | BudgetSchedule,
    epoch: int,
    progress: bool = False,
    distiller: Distiller | None = None,
    budget: CpuBudget | None = None,
) -> float:
    """One pass over `loader` (or until `budget` is spent); returns the mean training loss
    (with the distillation term, if any).

    Raises NonFiniteLossError before the step that a NaN/inf loss would poison.
    """
    model.train()
    total, batches = 0.0, 0
    if budget is not None:
        budget.start()
    bar = progress_bar(len(loader), f"epoch {epoch + 1}", progress, unit="batch", leave=False)
    for images, targets in loader:
        images = images.contiguous(memory_format=torch.channels_last)
        logits = model(images)
        loss = loss_fn(logits, targets)
        if distiller is not None:
            loss = loss + distiller(images, logits)
        if not torch.isfinite(loss):
            if bar is not None:
                bar.close()
            raise NonFiniteLossError(
                f"training loss became {float(loss.detach())} at epoch {epoch + 1}, batch {batches + 1}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += float(loss.detach())
        batches += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / batches:.4f}")
        if budget is not None and budget.charge() >= budget.limit_s:
            break
    if bar is not None:
        bar.close()
    return total / max(batches, 1)


def steps_done(optimizer: torch.optim.Optimizer) -> int:
    """Optimiser steps taken so far (AdamW keeps the count per parameter; a resume restores it)."""
    for state in optimizer.state.values():
        if "step" in state:
            return int(state["step"])
    return 0


def validate(
    model: nn.Module, meta: CheckpointMeta, val_set: LaneDataset, loss_fn: nn.Module, batch_size: int, workers: int
) -> dict[str, Any]:
    """Val loss and metrics in eval mode, by `perception.evaluation.evaluate` (the scoring
    of train/evaluate.py, QAT and quant/compare.py)."""
    model.eval()
    return evaluate(module_predictor(model, meta), val_set, batch_size=batch_size, workers=workers, loss_fn=loss_fn)


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train/train.py",
        description="Train a lane segmentation model (binary lane task, or multi-class with --tags).",
        epilog=(
            "examples:\n"
            "  python train/train.py --data data/train_town03 --data data/train_town05 --epochs 2 --out runs/unet_w16\n"
            "  python train/train.py --data data/town03 --arch enet --loss bce --pos-weight 5 --out runs/enet\n"
            "  python train/train.py --data data/town03 --tags 1,24,14 --loss ce --out runs/multi\n"
            "  python train/train.py --data data/town03 --arch lanelite --teacher runs/unet_w16/best.pth\n"
            "  python train/train.py --resume --out runs/unet_w16      # continue a killed run exactly"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", action="append", help="dataset folder (repeat to merge several)")
    g.add_argument("--size", help="model input HxW, e.g. 160x320 (default: the recorded size)")
    g.add_argument(
        "--tags", default="24", help="target tags: 24 = lane markings (binary, default); 1,24,14 multi-class"
    )
    g.add_argument(
        "--target",
        choices=TASK_TARGETS,
        default="paint",
        help=(
            "binary lane task: the painted marking pixels (default) or the lane boundaries through dash gaps "
            "and behind cars, as TuSimple/CULane label them (needs record.py --lane-labels data)"
        ),
    )
    g.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, default=True, help="paired augmentation (default on)"
    )
    g = p.add_argument_group("model and loss")
    g.add_argument("--arch", default="unet", help="model zoo architecture (default unet)")
    g.add_argument("--arch-kwargs", default="{}", help="JSON constructor arguments, e.g. '{\"base_width\": 16}'")
    g.add_argument("--loss", choices=list(LOSSES), help="default: bce+dice (binary), ce (multi-class)")
    g.add_argument("--pos-weight", type=float, help="BCE weight of lane pixels (default none)")
    g = p.add_argument_group("distillation")
    g.add_argument("--teacher", help="float checkpoint whose softened logits the model also learns (train.distill)")
    g.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation term (default 1)")
    g.add_argument("--distill-temperature", type=float, default=2.0, help="softening temperature T (default 2)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=4, help="epochs (default 4; with --budget-cpu-min: the most)")
    g.add_argument(
        "--budget-cpu-min",
        type=float,
        help="train until this much process CPU time [min] is spent on training steps; "
        "the lr schedule follows the spent share (train.budget)",
    )
    g.add_argument("--batch-size", type=int, default=8, help="frames per step (default 8)")
    g.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of AdamW (default 3e-3)")
    g.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default 1e-4)")
    g.add_argument("--schedule", choices=SCHEDULES, default="onecycle", help="lr schedule (default onecycle)")
    g.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    g = p.add_argument_group("run")
    g.add_argument("--out", help="run folder (default runs/<arch>)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out with its stored settings")
    g.add_argument("--overwrite", action="store_true", help="start over in an existing run folder")
    g.add_argument("--threads", type=int, help="torch intra-op threads (default: all cores)")
    g.add_argument("--workers", type=int, default=0, help="data loader worker processes (default 0)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--debug", action="store_true", help="tracebacks and debug logging")
    return p


def check_args(args: argparse.Namespace) -> dict[str, Any]:
    """Validate the run-defining flags; return them as plain data (stored in last.pth)."""
    if not args.data:
        raise UsageError("--data is required (a recorded dataset folder; repeat it to merge several)")
    try:
        arch_kwargs = json.loads(args.arch_kwargs) if isinstance(args.arch_kwargs, str) else args.arch_kwargs
    except json.JSONDecodeError as e:
        raise UsageError(f"--arch-kwargs is not JSON ({e.msg}); write e.g. '{{\"base_width\": 16}}'") from None
    if not isinstance(arch_kwargs, dict):
        raise UsageError("--arch-kwargs must be a JSON object, e.g. '{\"base_width\": 16}'")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    if args.lr <= 0 or args.weight_decay < 0:
        raise UsageError("--lr must be > 0 and --weight-decay >= 0")
    if args.budget_cpu_min is not None and not args.budget_cpu_min > 0:
        raise UsageError("--budget-cpu-min must be > 0 (CPU minutes of training)")
    if args.teacher is not None and (args.distill_weight < 0 or args.distill_temperature <= 0):
        raise UsageError("--distill-weight must be >= 0 and --distill-temperature > 0")
    settings = {k: getattr(args, k) for k in RUN_SETTINGS}
    settings["arch_kwargs"] = arch_kwargs
    if settings["size"] is not None:
        try:
            parse_size(settings["size"])
        except ValueError as e:
            raise UsageError(f"--size: {e}") from None
    return settings


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other (pick one)")
    out = Path(args.out or f"runs/{args.arch}")
    command = shlex.join(["python", "train/train.py", *(sys.argv[1:] if argv is None else argv)])

    try:
        with interrupt_on_signals():  # `kill` ends like Ctrl-C: one line, checkpoints kept
            return run(args, out, command)
    except UsageError as e:
        parser.error(str(e))
    except NonFiniteLossError as e:
        last = out / "last.pth"
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
        print(f"error: {e} (lower --lr or check the data; {kept})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"interrupted: completed epochs are in {out / 'last.pth'} "
            f"(continue with: python train/train.py --resume --out {out})",
            file=sys.stderr,
        )
        return 130
    except (DatasetError, CheckpointError, FileExistsError, KeyError, ValueError, OSError) as e:
        if args.debug:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {msg}", file=sys.stderr)
        return 1
    except Exception as e:  # unexpected: still one line unless --debug
        if args.debug:
            raise
        print(f"error: unexpected {type(e).__name__}: {e} (rerun with --debug for a traceback)", file=sys.stderr)
        return 1


def run(args: argparse.Namespace, out: Path, command: str) -> int:
    """The training run behind `main`: set up (or resume), then epochs until done."""
    last_path, best_path, csv_path = out / "last.pth", out / "best.pth", out / "log.csv"
    train_state: dict[str, Any] | None = None
    if args.resume:
        if not last_path.exists():
            raise FileExistsError(f"nothing to resume: {last_path} does not exist (start the run without --resume)")
        state_dict, _, train_state = load_train_state(last_path)
        settings = dict(train_state["settings"])
        command = train_state["command"]
    else:
        settings = check_args(args)
        if any(p.exists() for p in (last_path, best_path, csv_path)) and not args.overwrite:
            raise FileExistsError(
                f"{out} already holds a run (pass --resume to continue it or --overwrite to start over)"
            )
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    size = None if settings["size"] is None else parse_size(settings["size"])  # None: the recorded size
    target = settings.get("target", "paint")  # runs saved before --target trained paint
    train_set = LaneDataset(settings["data"], split="train", tags=settings["tags"], size=size, target=target)
    val_set = LaneDataset(settings["data"], split="val", tags=settings["tags"], size=size, target=target)
    task, num_classes = train_set.task, train_set.num_classes
    loss_name = settings["loss"] or ("bce+dice" if task == "binary" else "ce")
    loss_fn = build_loss(loss_name, task, settings["pos_weight"])
    if len(train_set) < settings["batch_size"]:
        raise ValueError(
            f"only {len(train_set)} training frames for --batch-size {settings['batch_size']} "
            "(record more frames or lower --batch-size)"
        )
    seed = settings["seed"]
    train_data = train_set
    if settings["augment"]:
        train_data = AugmentedDataset(train_set, PairedAugment(train_set.mean, train_set.std), seed)
    order = torch.Generator()
    train_loader = DataLoader(
        train_data,
        batch_size=settings["batch_size"],
        shuffle=True,
        drop_last=True,
        generator=order,
        num_workers=args.workers,
    )

    arch_kwargs = dict(settings["arch_kwargs"])
    if arch_kwargs.setdefault("num_classes", num_classes) != num_classes:
        raise ValueError(f"--arch-kwargs num_classes={arch_kwargs['num_classes']} but the task needs {num_classes}")
    torch.manual_seed(seed)
    # channels_last: oneDNN's CPU convolutions run it about 1.3-2x faster than NCHW here.
    model = build_model(settings["arch"], **arch_kwargs).to(memory_format=torch.channels_last)
    with torch.no_grad():  # fail now, in one line, on an input size the model cannot take
        model.eval()(torch.zeros(1, 3, *train_set.image_size))
    distiller, distill_record = make_distiller(settings, train_set)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    epochs = settings["epochs"]
    budget_min = settings.get("budget_cpu_min")  # runs from before the option have none
    budget = None if budget_min is None else CpuBudget(budget_min * 60.0)
    if budget is None:
        scheduler = make_scheduler(settings["schedule"], optimizer, settings["lr"], epochs * len(train_loader))
    else:
        scheduler = BudgetSchedule(optimizer, settings["schedule"], settings["lr"], budget)

    start, history, best_iou = 0, [], -math.inf
    if train_state is not None:
        model.load_state_dict(state_dict)
        optimizer.load_state_dict(train_state["optimizer"])
        scheduler.load_state_dict(train_state["scheduler"])  # a budget's spent CPU time too
        torch.set_rng_state(train_state["torch_rng"])
        start, history, best_iou = train_state["epoch"], list(train_state["history"]), train_state["best_iou"]
        print(f"resuming {out} after epoch {start}/{epochs} with its stored settings", file=sys.stderr)
    elif args.overwrite:
        for p in (last_path, best_path, csv_path):
            p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    tb = tensorboard_writer(out)
    meta = CheckpointMeta.for_model(
        model,
        task=Task.from_dict(train_set.task_dict),
        input_size=train_set.image_size,
        normalisation=Normalisation.from_dict(train_set.normalisation),
        data={**data_identity(train_set, val_set), **({"distill": distill_record} if distill_record else {})},
        command=command,
    )
    progress = not args.no_progress

    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        order.manual_seed(epoch_seed(seed, epoch))
        if isinstance(train_data, AugmentedDataset):
            train_data.set_epoch(epoch)
        cpu0 = time.process_time()
        train_loss = train_one_epoch(
            model, train_loader, loss_fn, optimizer, scheduler, epoch, progress, distiller, budget
        )
        cpu_s = time.process_time() - cpu0 if budget is None else budget.used_s
        if budget is None:
            cpu_s += history[-1]["train_cpu_s"] if history and "train_cpu_s" in history[-1] else 0.0
        val = validate(model, meta, val_set, loss_fn, settings["batch_size"], args.workers)
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val["loss"],
            "val_iou": val["iou"],
            "val_precision": val["precision"],
            "val_recall": val["recall"],
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
            "train_cpu_s": cpu_s,
            "steps": steps_done(optimizer),
        }
        history.append(row)
        is_best = not math.isnan(val["iou"]) and val["iou"] > best_iou
        if is_best:
            best_iou = val["iou"]
        meta.metrics = {**row, "best_val_iou": best_iou, "val_mean_frame_iou": val.get("mean_frame_iou", math.nan)}
        train_state = {
            "epoch": epoch + 1,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "best_iou": best_iou,
            "history": history,
            "settings": settings,
            "command": command,
        }
        save_training_checkpoint(last_path, model, meta, train_state)
        if is_best:
            save_checkpoint(best_path, model, meta, overwrite=True)
        write_csv(csv_path, history)
        if tb is not None:
            for k, v in row.items():
                if k != "epoch":
                    tb.add_scalar(k, v, epoch + 1)
            tb.flush()
        print(
            f"epoch {epoch + 1}/{epochs}  train loss {train_loss:.4f}  val loss {val['loss']:.4f}  "
            f"val IoU {val['iou']:.4f}  P {val['precision']:.3f}  R {val['recall']:.3f}  "
            f"lr {row['lr']:.2e}  {row['seconds']:.0f} s" + ("  *best" if is_best else ""),
            flush=True,
        )
        if budget is not None and budget.exhausted:
            break
    else:
        if budget is not None and not budget.exhausted:
            print(
                f"warning: --epochs {epochs} ended with {budget.used_s / 60:.1f} of {budget.limit_s / 60:.1f} "
                "CPU-min spent (raise --epochs to spend the budget)",
                file=sys.stderr,
            )
    if tb is not None:
        tb.close()
    print(f"best val IoU {best_iou:.4f}: {best_path}")
    return 0


def tensorboard_writer(out: Path):
    """A SummaryWriter in ``out/tb`` if tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out / "tb"))


if __name__ == "__main__":
    sys.exit(main())
