"""The sweep's tables: per model overall (leaderboard style) and per route, as Markdown and CSV."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from harness.drive.score import INFRACTIONS, Infraction, Verdict, aggregate

SHORT = {
    "collision_vehicle": "coll. veh.",
    "collision_static": "coll. static",
    "off_road": "off-road",
    "lane_departure": "lane dep.",
    "route_deviation": "route dev.",
    "agent_blocked": "blocked",
    "route_timeout": "timeout",
    "navigator_collision": "nav. coll. (not charged)",
}


def _verdict(row: dict[str, Any]) -> Verdict:
    events = tuple(Infraction(e["kind"], e["t"], e["progress_m"], e.get("detail", "")) for e in row["events"])
    return Verdict(
        row["length_m"], row["driven_m"], row["route_completion"], row["infraction_penalty"],
        row["driving_score"], row["end"], row["duration_s"], events,
    )  # fmt: skip


def per_model(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each model's aggregate over its routes (in the order the models first appear)."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        agg = aggregate([_verdict(r) for r in mine])
        agg["latency_ms"] = mine[0]["latency_ms"]
        agg["miou"] = _mean([r["miou"] for r in mine])
        agg["mean_speed_kmh"] = _mean([r["mean_speed_kmh"] for r in mine])
        agg["mean_abs_offset_m"] = _mean([r.get("mean_abs_offset_m", math.nan) for r in mine])
        agg["p95_abs_offset_m"] = _mean([r.get("p95_abs_offset_m", math.nan) for r in mine])
        out[name] = agg
    return out


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else math.nan


def _f(v: float, nd: int = 1) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def overall_markdown(rows: list[dict[str, Any]]) -> str:
    cols = ["model", "latency ms", "driving score", "route completion %", "infraction penalty", "km",
            "infractions/km", *[SHORT[k] for k in INFRACTIONS], "mIoU", "mean km/h", "mean abs offset m",
            "p95 abs offset m"]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, a in per_model(rows).items():
        counts = [str(a["infractions"][k]) for k in INFRACTIONS]
        vals = [name, _f(a["latency_ms"]), _f(a["driving_score"]), _f(a["route_completion"]),
                _f(a["infraction_penalty"], 3), _f(a["km"], 2), _f(a["all_infractions_per_km"], 2),
                *counts, _f(a["miou"], 3), _f(a["mean_speed_kmh"]), _f(a["mean_abs_offset_m"], 3),
                _f(a["p95_abs_offset_m"], 3)]  # fmt: skip
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


def routes_markdown(rows: list[dict[str, Any]]) -> str:
    cols = ["route", "model", "km/h limit", "driving score", "route completion %", "penalty", "end",
            "infractions", "mIoU", "mean km/h", "max km/h", "mean abs offset m", "p95 abs offset m"]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in sorted(rows, key=lambda r: (r["route"], r["index"])):
        inf = ", ".join(f"{SHORT[k]} {n}" for k, n in r["infractions"].items() if n) or "none"
        vals = [r["route"], r["model"], _f(r["speed_limit_kmh"], 0), _f(r["driving_score"]),
                _f(r["route_completion"]), _f(r["infraction_penalty"], 3), r["end"], inf, _f(r["miou"], 3),
                _f(r["mean_speed_kmh"]), _f(r.get("max_speed_kmh", math.nan)),
                _f(r.get("mean_abs_offset_m", math.nan), 3),
                _f(r.get("p95_abs_offset_m", math.nan), 3)]  # fmt: skip
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


CSV_COLS = ["route", "model", "seed", "road", "speed_limit_kmh", "latency_ms", "driving_score", "route_completion",
            "infraction_penalty", "end", "length_m", "driven_m", "duration_s", "frames", "deadline_misses",
            "inferred_frames", "miou", "mean_speed_kmh", "max_speed_kmh", "mean_abs_offset_m", "p95_abs_offset_m",
            *INFRACTIONS]  # fmt: skip


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """One row per episode (the machine-dependent wall time left out: the file is reproducible)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLS)
        for r in rows:
            w.writerow([r["infractions"][c] if c in INFRACTIONS else r[c] for c in CSV_COLS])


__all__ = ["overall_markdown", "per_model", "routes_markdown", "write_csv"]


def main(argv: list[str] | None = None) -> int:
    """python -m harness.drive.table RUN [RUN ...]: the tables of one or more runs' drive.json, joined."""
    import argparse
    import json
    import sys

    p = argparse.ArgumentParser(prog="python -m harness.drive.table", description=main.__doc__)
    p.add_argument("runs", nargs="+", help="run folders of python -m harness.drive")
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for run in args.runs:
        f = Path(run) / "drive.json"
        try:
            episodes = json.loads(f.read_text(encoding="utf-8"))["episodes"]
        except (OSError, ValueError, KeyError) as e:
            print(f"error: {f}: not a driving run ({e})", file=sys.stderr)
            return 1
        base = len(rows)
        rows += [{**r, "index": base + r["index"]} for r in episodes]
    print(f"{overall_markdown(rows)}\n\n{routes_markdown(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
