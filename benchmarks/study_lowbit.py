"""Low-bit study: is a wider U-Net with 2-6 bit weights better than a narrower int8 one?

Example (the defaults are the small budget of docs/lowbit.md):
    python benchmarks/study_lowbit.py --train data/train_town03 --test data/test_town10hd_wetnoon \\
        --out docs/lowbit --overwrite

For each width (16, 32, 64; depth 4): a float U-Net is trained from scratch for
``--float-steps`` batches, then fine-tuned for ``--qat-steps`` batches with weight-only
fake quantization at each of ``--bits`` (`quant.lowbit`: per-channel symmetric, MSE-chosen
clipping, straight-through gradients); widths in ``--int8-widths`` also get static int8
PTQ (W8A8, PT2E, the deployable path of quant/ptq.py). Every model is scored on the test
split with the one IoU (`perception.metrics`). Size is the storage the weights need: conv
weights at their bit-width plus a float32 scale and bias per channel (BN folded); the int8
row also lists its real checkpoint size. Widths in ``--control-widths`` also get a float
control: the float model trained for the same ``--qat-steps`` extra batches (the 4-bit row's
batches, same LR) without any quantization, which separates what QAT's extra training gives
from what low-bit weights cost. Everything runs at ``--size`` (default 80x160,
half the camera) to fit a CPU budget, so IoUs are lower than the full-size models': compare
rows with each other, not with the shipped checkpoints.

Results are appended to OUT.json as each configuration finishes, so a killed study resumes
where it stopped (same arguments).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import copy
import json
import time
from typing import Any

import torch

from perception import quantized
from perception.metrics import BinaryConfusion
from perception.models import build_model
from quant.lowbit import apply_weight_fake_quant, packed_size_bytes
from quant.train_utils import lane_loader, train_steps


@torch.no_grad()
def test_iou(model: Any, loader: Any) -> float:
    """Pooled lane IoU (logits > 0) over the test loader, batch by batch."""
    conf = BinaryConfusion()
    for x, y in loader:
        out = torch.cat([model(x[i : i + 1]) for i in range(x.shape[0])])
        conf.update_batch((out[:, 0] > 0).numpy(), y[:, 0].numpy() > 0.5)
    return float(conf.iou)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", nargs="+", required=True, help="dataset folder(s) (train split used)")
    parser.add_argument("--test", nargs="+", required=True, help="dataset folder(s) (test split used)")
    parser.add_argument("--widths", default="16,32,64")
    parser.add_argument("--bits", default="2,3,4,6")
    parser.add_argument("--int8-widths", default="16,32")
    parser.add_argument("--size", default="80x160", help="HxW (divisible by 16)")
    parser.add_argument("--float-steps", type=int, default=200)
    parser.add_argument("--qat-steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--qat-lr", type=float, default=5e-4)
    parser.add_argument("--train-frames", type=int, default=400)
    parser.add_argument("--test-frames", type=int, default=80)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--control-widths", default="16,32,64", help="widths that get the float control row")
    parser.add_argument("--cache", default="build/lowbit", help="trained float models are kept here (reused)")
    parser.add_argument("--out", default="docs/lowbit")
    parser.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    store = out.with_suffix(".json")
    results: list[dict[str, Any]] = []
    if store.exists() and not args.overwrite:
        results = json.loads(store.read_text())["results"]
    done = {(r["width"], r["kind"], r["bits"]) for r in results}

    def record(row: dict[str, Any]) -> None:
        results.append(row)
        store.write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
        print(
            f"w{row['width']:>2} {row['kind']:>12} {row['bits']:>2} bit: IoU {row['iou']:.4f}, "
            f"{row['size_mb']:.3f} MB ({row['seconds']:.0f} s)",
            flush=True,
        )

    test_loader = lane_loader(args.test, "test", size, 8, False, limit=args.test_frames)

    def qat_loader(bits: int) -> Any:
        """The fine-tuning batches of the `bits` row (the float control reuses the 4-bit row's)."""
        gen = torch.Generator().manual_seed(args.seed + bits)
        return lane_loader(args.train, "train", size, args.batch_size, True, gen, limit=args.train_frames)

    for width in [int(w) for w in args.widths.split(",")]:
        todo = [(width, "weight-only", b) for b in map(int, args.bits.split(","))]
        todo += [(width, "float", 32)]
        if str(width) in args.int8_widths.split(","):
            todo += [(width, "int8 W8A8", 8)]
        if str(width) in args.control_widths.split(","):
            todo += [(width, "float control", 32)]
        if all(t in done for t in todo):
            continue
        t0 = time.perf_counter()
        torch.manual_seed(args.seed)
        model = build_model("unet", base_width=width, depth=4)
        train_loader = lane_loader(
            args.train, "train", size, args.batch_size, True, torch.Generator().manual_seed(args.seed),
            limit=args.train_frames,
        )  # fmt: skip
        cached = Path(args.cache) / f"float_w{width}_{args.size}_{args.float_steps}steps_seed{args.seed}.pt"
        retrained = not cached.exists()
        if retrained:  # the float model is the expensive part: train it once per setting
            train_steps(model, model.parameters(), train_loader, args.float_steps, args.lr)
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), cached)
        else:
            model.load_state_dict(torch.load(cached, weights_only=True))
        model.eval()
        float_s = time.perf_counter() - t0
        recorded = [r for r in results if (r["width"], r["kind"], r["bits"]) == (width, "float", 32)]
        if retrained and recorded and abs(test_iou(model, test_loader) - recorded[0]["iou"]) > 1e-4:
            # rows resumed from OUT.json were made from the earlier float model, not from this one
            print(f"warning: w{width} float retrained to a different IoU than recorded (not deterministic here)")
        if (width, "float", 32) not in done:
            n_params = sum(p.numel() for p in model.parameters())
            record({"width": width, "kind": "float", "bits": 32, "iou": test_iou(model, test_loader),
                    "size_mb": packed_size_bytes(model, 32) / 1e6, "params": n_params, "seconds": float_s})  # fmt: skip
        if (width, "int8 W8A8", 8) in todo and (width, "int8 W8A8", 8) not in done:
            t1 = time.perf_counter()
            prepared = quantized.prepare(copy.deepcopy(model), size, "minmax", True, qat=False)
            with torch.no_grad():
                for x, _ in lane_loader(args.train, "train", size, 1, False, limit=32):
                    prepared(x)
            int8 = quantized.convert(prepared, qat=False)
            real = sum(v.numel() * v.element_size() for v in quantized.pack_state(int8).values())
            record({"width": width, "kind": "int8 W8A8", "bits": 8, "iou": test_iou(int8, test_loader),
                    "size_mb": packed_size_bytes(model, 8) / 1e6, "checkpoint_tensor_mb": real / 1e6,
                    "seconds": time.perf_counter() - t1})  # fmt: skip
        for _, kind, bits in todo:
            if kind != "weight-only" or (width, kind, bits) in done:
                continue
            t1 = time.perf_counter()
            q = apply_weight_fake_quant(copy.deepcopy(model).train(), bits)
            before = test_iou(q.eval(), test_loader)
            q.train()
            train_steps(q, q.parameters(), qat_loader(bits), args.qat_steps, args.qat_lr)
            q.eval()
            record({"width": width, "kind": kind, "bits": bits, "iou": test_iou(q, test_loader),
                    "iou_before_qat": before, "size_mb": packed_size_bytes(model, bits) / 1e6,
                    "seconds": time.perf_counter() - t1})  # fmt: skip
        if (width, "float control", 32) in todo and (width, "float control", 32) not in done:
            t1 = time.perf_counter()
            ctrl = copy.deepcopy(model).train()
            train_steps(ctrl, ctrl.parameters(), qat_loader(4), args.qat_steps, args.qat_lr)
            record({"width": width, "kind": "float control", "bits": 32, "iou": test_iou(ctrl.eval(), test_loader),
                    "size_mb": packed_size_bytes(model, 32) / 1e6, "extra_steps": args.qat_steps,
                    "seconds": time.perf_counter() - t1})  # fmt: skip
    write_report(out, args, results)
    return 0


def write_report(out: Path, args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    """docs/lowbit.md table + IoU-vs-size plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(results, key=lambda r: (r["width"], -r["bits"], r["kind"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
    for i, width in enumerate(sorted({r["width"] for r in rows})):
        color = colors[i % len(colors)]
        wo = sorted([r for r in rows if r["width"] == width and r["kind"] == "weight-only"], key=lambda r: r["bits"])
        ax.plot([r["size_mb"] for r in wo], [r["iou"] for r in wo], "o-", color=color, label=f"w{width} weight-only")
        for r in wo:
            ax.annotate(
                f"{r['bits']}b", (r["size_mb"], r["iou"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        for r in rows:
            if r["width"] == width and r["kind"] != "weight-only":
                marker = {"float": "s", "float control": "D"}.get(r["kind"], "^")
                ax.scatter([r["size_mb"]], [r["iou"]], marker=marker, color=color, s=60, edgecolor="k")
                ax.annotate(r["kind"], (r["size_mb"], r["iou"]), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("weight storage [MB] (log)")
    ax.set_ylabel("test lane IoU")
    ax.set_title(f"IoU vs size at {args.size} (squares float, diamonds float +QAT steps, triangles int8)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)
    lines = [
        "| width | kind | weight bits | test IoU | size MB | IoU before QAT |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        before = f"{r['iou_before_qat']:.4f}" if "iou_before_qat" in r else "–"
        lines.append(f"| {r['width']} | {r['kind']} | {r['bits']} | {r['iou']:.4f} | {r['size_mb']:.3f} | {before} |")
    table = "\n".join(lines)
    out.with_name(out.name + "_table.md").write_text(table + "\n")
    print(table)
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.png')}, {out.with_name(out.name + '_table.md')}")
    print("settings:", json.dumps({k: v for k, v in vars(args).items() if k != "overwrite"}))


if __name__ == "__main__":
    sys.exit(main())
