"""The report of a run: `python -m harness.report results/<run>` writes results/<run>/report.html.

One self-contained HTML page (PNG plots inlined) from the run's frames.parquet,
summary.json and frame strip: IoU over time per model, latency CDF, IoU vs latency vs
model size (Pareto front across float / PTQ / QAT), the summary table, lane keeping
(with --drive model) and the frames where the models disagree most. matplotlib runs
headless (Agg). `format_table` is the terminal table run_sim.py prints.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from harness.runlog import recover
from harness.view import overlay_rgb  # pygame is imported lazily there: this stays headless
from plumbing import atomic_write_text

SCHEME_COLOURS = {"float": "#1f77b4", "ptq": "#ff7f0e", "qat": "#2ca02c"}


class ReportError(RuntimeError):
    """A run folder the report cannot use; the message says what to do."""


# ----------------------------------------------------------------------------- terminal table


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def format_table(summary: dict[str, Any]) -> str:
    """Per-model table of a run's summary (one line per model; lane keeping with --drive model)."""
    drive = summary.get("drive", "autopilot")
    head = (
        f"{'model':<22} {'scheme':<6} {'MB':>6} {'frames':>6} {'mIoU':>6} {'dsIoU':>6} {'IoU*':>6} "
        f"{'p50ms':>7} {'p90ms':>7} {'p99ms':>7} {'FPS':>6} {'miss':>5}"
    )
    if drive == "model":
        head += f" {'km':>6} {'dep/km':>6} {'|off|':>5} {'max':>5} {'coll':>4} {'end':<10}"
    lines = [
        f"run {summary.get('run')}: {summary.get('scenario')} seed {summary.get('seed')}, drive {drive}"
        f"{', realtime' if summary.get('realtime') else ''}, {summary.get('threads')} threads, "
        f"loop {_fmt(summary.get('loop_fps'), '.1f')} frames/s ({summary.get('end')})",
        head,
        "-" * len(head),
    ]
    for m in summary.get("models", []):
        lat = m.get("latency_ms", {})
        line = (
            f"{m['name'][:22]:<22} {m.get('scheme', '?'):<6} {_fmt(m.get('size_mb'), '.2f'):>6} "
            f"{m.get('frames', 0):>6} {_fmt(m.get('mean_iou')):>6} {_fmt(m.get('dataset_iou')):>6} "
            f"{_fmt(m.get('iou_lane_frames')):>6} {_fmt(lat.get('p50'), '.1f'):>7} {_fmt(lat.get('p90'), '.1f'):>7} "
            f"{_fmt(lat.get('p99'), '.1f'):>7} {_fmt(m.get('fps'), '.1f'):>6} {m.get('deadline_misses', 0):>5}"
        )
        lk = m.get("lane_keeping")
        if drive == "model" and lk:
            ep = m.get("episode", {})
            line += (
                f" {_fmt(lk.get('distance_m', 0) / 1000, '.2f'):>6} {_fmt(lk.get('departures_per_km'), '.2f'):>6} "
                f"{_fmt(lk.get('mean_abs_offset_m'), '.2f'):>5} {_fmt(lk.get('max_abs_offset_m'), '.2f'):>5} "
                f"{lk.get('collisions', 0):>4} {ep.get('end_reason', ''):<10}"
            )
        lines.append(line)
    lines.append("mIoU: mean per-frame IoU; dsIoU: pooled pixels; IoU*: frames with lane pixels only")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- loading


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], Any, list[dict[str, Any]]]:
    """(summary, frames DataFrame, strip index) of a run folder."""
    import pandas as pd

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run folder not found: {run_dir} (give results/<run>)")
    summary_path = run_dir / "summary.json"
    frames_path = run_dir / "frames.parquet"
    recovered = recover(frames_path) if not frames_path.is_file() else None
    if recovered is not None and not summary_path.is_file():
        raise ReportError(
            f"{run_dir}: the run was killed before it ended (no summary.json); {recovered} frame rows were "
            f"recovered into {frames_path} (read them with pandas, or rerun run_sim.py for a report)"
        )
    if not summary_path.is_file() or not frames_path.is_file():
        raise ReportError(f"{run_dir} has no summary.json / frames.parquet (is it a run_sim.py output folder?)")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        frames = pd.read_parquet(frames_path)
    except (OSError, ValueError) as e:
        raise ReportError(f"cannot read the run in {run_dir}: {e} (rerun run_sim.py)") from None
    strip_path = run_dir / "strip" / "strip.json"
    strip = json.loads(strip_path.read_text(encoding="utf-8"))["frames"] if strip_path.is_file() else []
    return summary, frames, strip


# ----------------------------------------------------------------------------- plots


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _colour(summary: dict[str, Any], name: str, i: int) -> str:
    import matplotlib

    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    return cycle[i % len(cycle)]


def plot_iou_over_time(frames: Any, summary: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.6))
    for i, m in enumerate(summary["models"]):
        df = frames[frames["model"] == m["name"]]
        if df.empty:
            continue
        c = _colour(summary, m["name"], i)
        ax.plot(df["sim_time"], df["iou"], color=c, alpha=0.25, lw=0.8)
        smooth = df["iou"].rolling(20, min_periods=1).mean()
        ax.plot(df["sim_time"], smooth, color=c, lw=1.8, label=f"{m['name']} ({m.get('scheme')})")
    ax.set_xlabel("simulation time [s]")
    ax.set_ylabel("IoU (1 s rolling mean)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Lane IoU over time")
    return _png(fig)


def plot_latency_cdf(frames: Any, summary: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for i, m in enumerate(summary["models"]):
        lat = np.sort(frames.loc[(frames["model"] == m["name"]) & frames["inferred"], "total_ms"].to_numpy())
        if lat.size == 0:
            continue
        ax.step(
            lat,
            np.arange(1, lat.size + 1) / lat.size,
            where="post",
            color=_colour(summary, m["name"], i),
            label=f"{m['name']} (p90 {np.percentile(lat, 90):.1f} ms)",
        )
    budget = summary.get("dt", 0.05) * 1000
    ax.axvline(budget, color="k", ls="--", lw=0.8, label=f"frame budget {budget:.0f} ms")
    ax.set_xscale("log")
    ax.set_xlabel("latency per frame (pre + inference + post) [ms]")
    ax.set_ylabel("fraction of frames")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Latency CDF")
    return _png(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both lower latency and higher IoU."""
    front = []
    for i, (lat, iou) in enumerate(points):
        if not (math.isfinite(lat) and math.isfinite(iou)):
            continue
        dominated = any(
            (ol <= lat and oi >= iou) and (ol < lat or oi > iou)
            for j, (ol, oi) in enumerate(points)
            if j != i and math.isfinite(ol) and math.isfinite(oi)
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_pareto(summary: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    models = summary["models"]
    pts = [(_num(m.get("latency_ms", {}).get("p50")), _num(m.get("mean_iou"))) for m in models]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    sizes = [max(_num(m.get("size_mb")), 0.0) for m in models]
    smax = max([s for s in sizes if math.isfinite(s)] + [1e-9])
    for m, (lat, iou), s in zip(models, pts, sizes, strict=True):
        if not (math.isfinite(lat) and math.isfinite(iou)):
            continue
        area = 60 + 900 * (s / smax if math.isfinite(s) else 0)
        ax.scatter(lat, iou, s=area, color=SCHEME_COLOURS.get(m.get("scheme"), "grey"), alpha=0.6, edgecolor="k")
        ax.annotate(
            f"{m['name']}\n{_fmt(s, '.2f')} MB", (lat, iou), fontsize=7, xytext=(6, 4), textcoords="offset points"
        )
    front = pareto_front(pts)
    if len(front) > 1:
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=0.8, label="Pareto front")
    for scheme, c in SCHEME_COLOURS.items():
        ax.scatter([], [], color=c, label=scheme)
    ax.set_xlabel("latency p50 [ms]")
    ax.set_ylabel("mean IoU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("IoU vs latency (marker area: model size)")
    return _png(fig)


def plot_lane_keeping(frames: Any, summary: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.4))
    for i, m in enumerate(summary["models"]):
        df = frames[frames["model"] == m["name"]]
        if df.empty:
            continue
        off = df["lateral_offset"].where(~df["in_junction"])
        ax.plot(df["distance"], off, color=_colour(summary, m["name"], i), lw=1, label=m["name"])
    ax.axhspan(-1.75, 1.75, color="grey", alpha=0.1, label="lane (3.5 m)")
    ax.set_xlabel("distance driven [m]")
    ax.set_ylabel("lateral offset [m] (+ left)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Lane keeping on each model's own masks (junctions left out)")
    return _png(fig)


def plot_strip(run_dir: Path, strip: list[dict[str, Any]], summary: dict[str, Any]) -> str | None:
    import cv2
    import matplotlib.pyplot as plt

    if not strip:
        return None
    names = [m["name"] for m in summary["models"]]
    items = strip[:8]
    cols = 1 + max(len(it["masks"]) for it in items)
    fig, axes = plt.subplots(len(items), cols, figsize=(3.2 * cols, 1.75 * len(items)), squeeze=False)
    folder = run_dir / "strip"
    for r, it in enumerate(items):
        rgb = cv2.cvtColor(cv2.imread(str(folder / it["rgb"])), cv2.COLOR_BGR2RGB)
        truth = cv2.imread(str(folder / it["truth"]), cv2.IMREAD_GRAYSCALE) > 0
        axes[r, 0].imshow(rgb)
        axes[r, 0].set_title(f"{it['group'] + ' ' if it['group'] else ''}frame {it['frame']}", fontsize=8)
        ordered = [n for n in names if n in it["masks"]]
        for c, name in enumerate(ordered, start=1):
            pred = cv2.imread(str(folder / it["masks"][name]), cv2.IMREAD_GRAYSCALE) > 0
            axes[r, c].imshow(overlay_rgb(rgb, truth, pred))
            axes[r, c].set_title(f"{name}: IoU {_fmt(it['iou'].get(name), '.2f')}", fontsize=8)
        for c in range(cols):
            axes[r, c].axis("off")
    fig.suptitle("Frames where the models disagree most (green TP, red FP, blue FN)", fontsize=10)
    return _png(fig)


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and v is not None else float("nan")


# ----------------------------------------------------------------------------- HTML


def _table(summary: dict[str, Any]) -> str:
    drive = summary.get("drive")
    cols = [
        ("model", lambda m: m["name"]),
        ("scheme", lambda m: m.get("scheme")),
        ("size MB", lambda m: _fmt(m.get("size_mb"), ".2f")),
        ("frames", lambda m: m.get("frames")),
        ("mean IoU", lambda m: _fmt(m.get("mean_iou"))),
        ("dataset IoU", lambda m: _fmt(m.get("dataset_iou"))),
        ("IoU (lane frames)", lambda m: _fmt(m.get("iou_lane_frames"))),
        ("p50 ms", lambda m: _fmt(m.get("latency_ms", {}).get("p50"), ".2f")),
        ("p90 ms", lambda m: _fmt(m.get("latency_ms", {}).get("p90"), ".2f")),
        ("p99 ms", lambda m: _fmt(m.get("latency_ms", {}).get("p99"), ".2f")),
        ("max ms", lambda m: _fmt(m.get("latency_ms", {}).get("max"), ".2f")),
        ("FPS", lambda m: _fmt(m.get("fps"), ".1f")),
        ("deadline misses", lambda m: m.get("deadline_misses")),
        ("threads", lambda m: m.get("threads")),
    ]
    if drive == "model":
        lk = lambda m, k, f=".2f": _fmt((m.get("lane_keeping") or {}).get(k), f)  # noqa: E731
        cols += [
            ("distance m", lambda m: lk(m, "distance_m", ".0f")),
            ("departures/km", lambda m: lk(m, "departures_per_km")),
            ("mean |offset| m", lambda m: lk(m, "mean_abs_offset_m")),
            ("max |offset| m", lambda m: lk(m, "max_abs_offset_m")),
            ("collisions", lambda m: (m.get("lane_keeping") or {}).get("collisions")),
            ("route completion", lambda m: lk(m, "route_completion")),
            ("end", lambda m: (m.get("episode") or {}).get("end_reason")),
        ]
    head = "".join(f"<th>{html.escape(c)}</th>" for c, _ in cols)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(f(m)))}</td>" for _, f in cols) + "</tr>" for m in summary["models"]
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Build report.html for a run folder; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    run_dir = Path(run_dir)
    summary, frames, strip = load_run(run_dir)
    sections = [("Summary", _table(summary))]
    if not frames.empty:
        sections.append(("IoU over time", _img(plot_iou_over_time(frames, summary))))
        sections.append(("Latency", _img(plot_latency_cdf(frames, summary)) + _img(plot_pareto(summary))))
        if summary.get("drive") == "model":
            sections.append(("Lane keeping", _img(plot_lane_keeping(frames, summary))))
    strip_png = plot_strip(run_dir, strip, summary)
    if strip_png:
        sections.append(("Where the models disagree", _img(strip_png)))
    lanemap = _lanemap_section(run_dir)
    if lanemap:
        sections.append(("Lane map", lanemap))
    meta = (
        f"{html.escape(str(summary.get('scenario')))} ({html.escape(str(summary.get('map') or summary.get('town')))}, "
        f"{html.escape(', '.join(summary.get('weathers', [])))}), seed {summary.get('seed')}, drive "
        f"{summary.get('drive')}{' with real-time budget' if summary.get('realtime') else ''}, backend "
        f"{summary.get('backend')}, {summary.get('threads')} threads, {summary.get('rows')} rows, end: "
        f"{summary.get('end')}. Command: <code>{html.escape(summary.get('command') or '')}</code>"
    )
    body = "".join(f"<h2>{html.escape(t)}</h2>{content}" for t, content in sections)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>laneloop run {html.escape(str(summary.get('run')))}</title><style>"
        "body{font-family:sans-serif;margin:1.5em;max-width:1300px}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}img{max-width:100%}"
        f"</style></head><body><h1>laneloop run {html.escape(str(summary.get('run')))}</h1><p>{meta}</p>{body}"
        "</body></html>"
    )
    path = Path(out) if out else run_dir / "report.html"
    return atomic_write_text(path, page)


def _lanemap_section(run_dir: Path) -> str | None:
    """Each model's top-down lane map (`<run>/lanemap/`, written by run_sim.py) and its scores."""
    path = run_dir / "lanemap" / "lanemap.json"
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    rows, pictures = [], []
    for model, r in doc.get("models", {}).items():
        cells = (model, _fmt(r.get("precision")), _fmt(r.get("recall")), f"{r.get('mapped_cells', 0):,}",
                 f"{r.get('true_cells_seen', 0):,}", r.get("frames"))  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        png = path.parent / f"lanemap_{model}.png"
        if png.exists():
            b64 = base64.b64encode(png.read_bytes()).decode()
            pictures.append(f"<figure><figcaption>{html.escape(model)}</figcaption>{_img(b64)}</figure>")
    tol = next(iter(doc.get("models", {}).values()), {}).get("tolerance_m", 0.2)
    cols = ("model", f"precision within {tol} m", f"recall (completeness) within {tol} m", "mapped cells",
            "true marking cells seen", "frames")  # fmt: skip
    head = "".join(f"<th>{c}</th>" for c in cols)
    note = (
        f"<p>Each model's marking pixels projected to the ground and accumulated over the drive in "
        f"{html.escape(str(doc.get('town')))}'s ground grid, scored against its true markings "
        "(docs/rosbag.md, The lane map). Grey: the camera's footprint; white: true markings; green: mapped "
        "within tolerance; red: mapped elsewhere; blue: seen but missed.</p>"
    )
    return f"{note}<table><tr>{head}</tr>{''.join(rows)}</table>{''.join(pictures)}"


def _img(b64: str) -> str:
    return f"<img src='data:image/png;base64,{b64}'>"


def main(argv: list[str] | None = None) -> int:
    """CLI: rebuild a run's report; prints the per-model table too."""
    p = argparse.ArgumentParser(
        prog="python -m harness.report",
        description="Write report.html (plots and tables) for a run_sim.py output folder.",
        epilog="example:\n  python -m harness.report results/20250101-120000_town03_clear_autopilot",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="run folder (results/<run>)")
    p.add_argument("--out", help="HTML path (default <run>/report.html)")
    p.add_argument("--debug", action="store_true", help="tracebacks")
    args = p.parse_args(argv)
    try:
        path = write_report(args.run, args.out)
        summary, _, _ = load_run(args.run)
    except ReportError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_table(summary))
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
