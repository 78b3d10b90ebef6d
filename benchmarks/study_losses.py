"""BCE vs Dice vs BCE+Dice on the U-Net: same data, same budget, curves and final test IoU.

Example (the data of docs/training.md, a smaller budget):
    python benchmarks/study_losses.py --data data/study_train --test data/test_town10hd_wetnoon \\
        --test data/test_town10hd_softrainsunset --test data/test_town10hd_wetcloudynight \\
        --test data/test_town10hd_midrainynoon --epochs 6 --size 96x192 --threads 2

Each run is `train/train.py` in this process (one training at a time), then
`train.evaluate.evaluate_checkpoint` on the test folders (last epoch's weights: the same
budget for everyone). Runs live in ``--runs-dir/<name>``; a finished run found there is
reused (train's ``--resume`` on a complete run does nothing), ``--fresh`` retrains.
Writes the Markdown report and a PNG with the loss and IoU curves.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from train.evaluate import evaluate_checkpoint
from train.train import main as train_main

LOSSES = ("bce", "dice", "bce+dice")


def train_and_test(
    name: str, arch: str, loss: str, common: list[str], test_roots: list[str], runs_dir: Path, threads: int, fresh: bool
) -> dict[str, Any]:
    """Train (or reuse) `arch` with `loss` and the shared flags `common`; score its last
    checkpoint on the test folders. `name` labels the run in tables and plots.

    The run folder is ``runs_dir/<arch>_<loss>_<hash of the flags>``: a run is reused only
    when its flags are the same, so the studies share runs (study_zoo's U-Net is
    study_losses' BCE+Dice run). Returns the per-epoch history (log.csv), the test metrics,
    the parameter count and the training time (sum of the epochs' wall seconds, so a
    reused run reports its original time).
    """
    train_args = [*common, "--arch", arch, "--loss", loss]
    digest = hashlib.sha1(json.dumps(train_args).encode()).hexdigest()[:8]
    out = runs_dir / f"{arch}_{loss}_{digest}"
    common = ["--out", str(out), "--no-progress", "--threads", str(threads)]
    if (out / "last.pth").exists() and not fresh:
        argv = ["--resume", *common]
    else:
        argv = [*train_args, "--overwrite", *common]
    print(f"== {name}: python train/train.py {' '.join(argv)}", file=sys.stderr, flush=True)
    if train_main(argv) != 0:
        raise SystemExit(f"error: training run {name} failed (see above)")
    with open(out / "log.csv", newline="") as f:
        history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    test = evaluate_checkpoint(out / "last.pth", test_roots, "test")
    return {
        "name": name,
        "history": history,
        "test": test,
        "train_s": sum(r["seconds"] for r in history),
        "fastest_epoch_s": min(r["seconds"] for r in history),
        "params": sum(
            v.numel()
            for k, v in torch.load(out / "last.pth", weights_only=True)["state_dict"].items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
        ),
    }


def plot_curves(results: list[dict[str, Any]], path: Path, title: str) -> None:
    """Two panels: train (solid) and val (dashed) loss per epoch; val IoU per epoch."""
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(11, 4))
    for i, r in enumerate(results):
        color = f"C{i}"
        epochs = [h["epoch"] for h in r["history"]]
        ax_loss.plot(epochs, [h["train_loss"] for h in r["history"]], color=color, label=f"{r['name']} train")
        ax_loss.plot(epochs, [h["val_loss"] for h in r["history"]], color=color, ls="--", label=f"{r['name']} val")
        ax_iou.plot(
            epochs,
            [h["val_iou"] for h in r["history"]],
            color=color,
            marker="o",
            label=f"{r['name']} (test IoU {r['test']['iou']:.3f})",
        )
    ax_loss.set(xlabel="epoch", ylabel="loss (each loss on its own scale)", title="loss", yscale="log")
    ax_iou.set(xlabel="epoch", ylabel="val lane IoU (pooled)", title="validation IoU", ylim=(0, 1))
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def result_rows(results: list[dict[str, Any]]) -> list[str]:
    """Markdown table rows: final val IoU, test IoU (pooled and per frame), P, R, time."""
    rows = [
        "| run | val IoU (last epoch) | test IoU (pooled) | test mean frame IoU | test precision | test recall "
        "| training time [s] | fastest epoch [s] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t = r["test"]
        rows.append(
            f"| {r['name']} | {r['history'][-1]['val_iou']:.3f} | {t['iou']:.3f} | {t['mean_frame_iou']:.3f} "
            f"| {t['precision']:.3f} | {t['recall']:.3f} | {r['train_s']:.0f} | {r['fastest_epoch_s']:.0f} |"
        )
    return rows


def machine_line(threads: int) -> str:
    """Where the numbers came from (the load average says how shared the cores were)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_models import _cpu_name

    return (
        f"Machine: {_cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} intra-op threads; "
        f"1-minute load average {os.getloadavg()[0]:.1f} at the end. Other engineers' jobs shared the cores and "
        "came and went, so the same epoch took from a few seconds to minutes: times are upper bounds, and the "
        "fastest epoch is the closest to the cost on an idle machine."
    )


def base_parser(description: str) -> argparse.ArgumentParser:
    """Flags shared by the studies: data, budget, where runs and reports go."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", action="append", required=True, help="training dataset folder(s) (train/val splits)")
    p.add_argument("--test", action="append", required=True, help="test dataset folder(s) (test split)")
    p.add_argument("--epochs", type=int, default=6, help="epochs per run (default 6)")
    p.add_argument("--size", default="96x192", help="training/test input HxW (default 96x192)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--fresh", action="store_true", help="retrain runs found in --runs-dir")
    return p


def budget_args(args: argparse.Namespace) -> list[str]:
    """The train.py flags every run of a study shares."""
    out = [f"--data={d}" for d in args.data]
    out += ["--epochs", str(args.epochs), "--size", args.size, "--batch-size", str(args.batch_size)]
    return out + ["--lr", str(args.lr), "--seed", str(args.seed)]


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__)
    p.add_argument("--runs-dir", type=Path, default=Path("runs/study"), help="where the runs go")
    p.add_argument("--out", type=Path, default=Path("docs/losses.md"), help="Markdown report")
    p.add_argument("--plot", type=Path, default=Path("docs/losses.png"), help="curves PNG")
    args = p.parse_args(argv)
    common = budget_args(args)
    results = [
        train_and_test(loss, "unet", loss, common, args.test, args.runs_dir, args.threads, args.fresh)
        for loss in LOSSES
    ]
    title = f"U-Net w16, {args.epochs} epochs at {args.size}: BCE vs Dice vs BCE+Dice"
    plot_curves(results, args.plot, title)
    best = max(results, key=lambda r: r["test"]["iou"])
    spread = best["test"]["iou"] - min(r["test"]["iou"] for r in results)
    frames = evaluate_frames(results[0])
    cmd = "python benchmarks/study_losses.py " + " ".join(
        [*(f"--data {d}" for d in args.data), *(f"--test {t}" for t in args.test)]
        + [f"--epochs {args.epochs} --size {args.size} --batch-size {args.batch_size} --lr {args.lr}"]
        + [f"--seed {args.seed} --threads {args.threads}"]
    )
    lines = [
        "# Losses: BCE vs Dice vs BCE+Dice",
        "",
        f"Generated by `{cmd}` on {datetime.date.today().isoformat()}.",
        "",
        f"Setup: the default U-Net (base width 16, depth 4, bilinear upsampling), trained {args.epochs} epochs at "
        f"{args.size} (HxW) with AdamW, one-cycle schedule, peak lr {args.lr}, batch {args.batch_size}, "
        f"augmentation on, seed {args.seed}; the same data, order and augmentation for every loss. BCE without "
        "pos_weight. Test = the last epoch's weights on the test folders "
        f"({frames}), a town and weathers the training never saw.",
        machine_line(args.threads),
        "",
        *result_rows(results),
        "",
        f"![loss and IoU curves]({args.plot.name})",
        "",
        f"Best test IoU after this budget: {best['name']} ({best['test']['iou']:.3f}); the spread between the "
        f"best and the worst is {spread:.3f} with one seed per loss"
        + (", so read it as a tie, not a ranking. " if spread < 0.02 else ". ")
        + "Val IoU after the first epoch: "
        + ", ".join(f"{r['name']} {r['history'][0]['val_iou']:.3f}" for r in results)
        + ": how fast each loss gets going. Loss values are on each loss's own scale (Dice lies in [0, 1], "
        "BCE does not), so compare their shapes, not their heights; the IoU panel is the common yardstick.",
        "",
        "For scale: the reference run of [training.md](training.md) (the same U-Net, 1200 frames at 160x320, "
        "BCE+Dice, 2 epochs) reaches a test IoU of 0.955 on the same test folders: the budget (frames, "
        "resolution) moves the result far more than the choice among these losses does.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(result_rows(results)))
    print(f"wrote {args.out} and {args.plot}")
    return 0


def evaluate_frames(result: dict[str, Any]) -> str:
    """'N frames from: a, b' of a result's test set."""
    t = result["test"]
    return f"{t['frames']} frames from {', '.join(t['data'])}"


if __name__ == "__main__":
    sys.exit(main())
