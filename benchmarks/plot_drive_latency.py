"""What latency costs on the road: driving score and lane keeping against latency, from harness.drive runs.

Each run folder is one `python -m harness.drive` sweep (typically one model at one
`--added-latency-ms`); the plot has the mean driving score over the run's routes (left) and
each route's p95 |lateral offset| (right) against the total latency the episodes were charged.

    python benchmarks/plot_drive_latency.py build/curve/qat_0 build/curve/qat_25 build/curve/qat_50 \\
        build/curve/qat_100 --out docs/driving_latency.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def points(runs: list[Path]) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[tuple[float, float]]]]:
    """(model -> [(latency, mean DS)], route -> [(latency, p95 offset)]), sorted by latency."""
    ds: dict[str, list[tuple[float, float]]] = defaultdict(list)
    off: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        f = run / "drive.json"
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing (give folders of python -m harness.drive runs)")
        doc = json.loads(f.read_text(encoding="utf-8"))
        for name, m in doc["models"].items():
            ds[name].append((float(m["latency_ms"]), float(m["driving_score"])))
        for e in doc["episodes"]:
            off[f"{e['model']} {e['route']}"].append((float(e["latency_ms"]), float(e["p95_abs_offset_m"])))
    return {k: sorted(v) for k, v in ds.items()}, {k: sorted(v) for k, v in off.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders of python -m harness.drive")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--title", default="Driving score and lane keeping vs latency")
    args = p.parse_args(argv)
    try:
        ds, off = points([Path(r) for r in args.runs])
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, pts in ds.items():
        a.plot([x for x, _ in pts], [y for _, y in pts], "o-", label=name)
    a.set(xlabel="latency charged per frame [ms]", ylabel="driving score (mean over routes)", ylim=(0, 105))
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    for name, pts in off.items():
        b.plot([x for x, _ in pts], [y for _, y in pts], "o-", label=name)
    b.set(xlabel="latency charged per frame [ms]", ylabel="p95 |lateral offset| on roads [m]")
    b.grid(alpha=0.3)
    b.legend(fontsize=7)
    fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
