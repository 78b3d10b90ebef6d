"""python -m harness.drive: every model drives every route; a leaderboard-style table.

python -m harness.drive --model unet_qat.pth --model oracle --routes routes/
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.drive.suite import REPO, SuiteError, Task, model_name, resolve_model

DEFAULT_ROUTES = REPO / "routes"
OUT_FILES = ("drive.json", "episodes.csv", "episodes.parquet", "episodes.jsonl", "report.md")
SWEEP_META = "sweep.json"  # the latencies a sweep started with: a resume states them again


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.drive",
        description="Driving benchmark: each model drives each route on its own masks (lane keeper, latency-aware); "
        "route completion, infractions and a driving score per route and overall, as the CARLA leaderboard.",
        epilog=(
            "examples:\n"
            "  python -m harness.drive --model unet_qat.pth --routes routes/\n"
            "  python -m harness.drive --model unet_float.pth --model unet_ptq.pth --model unet_qat.pth --model oracle "
            "--routes routes/ --workers 2\n"
            "  python -m harness.drive --model unet_qat.pth --latency-ms unet_qat=22 --added-latency-ms 50 --routes "
            "routes/highway_curves.toml\n"
            "  python -m harness.drive --model unet_qat.pth --routes routes/ --out results/s --resume  # finish it\n"
            "\n"
            "'oracle' is the true mask of each frame at 0 ms (the ceiling). Latencies are measured once per model\n"
            "before the sweep (median of 30 runs, this process, --threads) and stated to every episode, so the\n"
            "episodes repeat bit for bit with --latency-ms NAME=MS; the measured ones are in drive.json."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", action="append", required=True, metavar="M", help="model file, name in models/, or oracle"
    )
    p.add_argument("--routes", default=str(DEFAULT_ROUTES), help="route file or folder of *.toml (default routes/)")
    p.add_argument("--only", action="append", metavar="NAME", help="run only these routes (by name; repeat)")
    p.add_argument("--seed", type=int, help="episode seed for every route (default: each route's own)")
    p.add_argument("--latency-ms", action="append", default=[], metavar="NAME=MS", help="state a model's latency")
    p.add_argument("--added-latency-ms", type=float, default=0.0, help="artificial latency added to every model [ms]")
    p.add_argument(
        "--blame-navigator",
        action="store_true",
        help="charge collisions in the junctions the simulator's navigator drives to the model (default: counted only)",
    )
    p.add_argument("--no-realtime", action="store_true", help="every frame gets its own mask (latency costs nothing)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per model (default 1)")
    p.add_argument("--runtime", default="torch", choices=("torch", "onnx", "openvino"), help="inference runtime")
    p.add_argument("--workers", type=int, default=1, help="parallel episodes (Ray; default 1: this process)")
    p.add_argument(
        "--ray", choices=("auto", "on", "off"), default="auto", help="auto: Ray when installed and --workers > 1"
    )
    p.add_argument("--address", help="Ray cluster address (ray://host:port); default: a local Ray")
    p.add_argument("--out", help="run folder (default results/drive_<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an existing run folder")
    p.add_argument(
        "--resume",
        action="store_true",
        help="rerun into an existing --out: skip the episodes its journal (episodes.jsonl) holds, at its latencies",
    )
    p.add_argument("--no-progress", action="store_true", help="no per-episode lines on stderr")
    p.add_argument("--debug", action="store_true", help="tracebacks")
    return p


def _latencies(specs: list[str], given: list[str]) -> dict[str, float]:
    names = {model_name(s) for s in specs}
    out: dict[str, float] = {}
    for item in given:
        name, sep, ms = item.partition("=")
        try:
            value = float(ms)
        except ValueError:
            value = -1.0
        if not sep or value < 0:
            raise SuiteError(f"--latency-ms {item!r}: give NAME=MS with MS >= 0 (e.g. unet_qat=22)")
        if name not in names:
            raise SuiteError(f"--latency-ms {item!r}: no model named {name!r} (models: {', '.join(sorted(names))})")
        out[name] = value
    return out


def _machine() -> dict[str, Any]:
    from perception.cpu import describe

    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {"cpu": describe(), "cores": os.cpu_count(), "load_avg_1_5_15": list(load)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return _run(args, argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line per expected error
        if args.debug:
            raise
        from harness.drive.route import RouteError

        known: tuple[type[BaseException], ...] = (SuiteError, RouteError, ValueError, OSError)
        if "perception.checkpoint" in sys.modules:  # loaded only when a model was: do not import torch for this
            known += (sys.modules["perception.checkpoint"].CheckpointError,)
        msg = str(e) if isinstance(e, known) else f"unexpected {type(e).__name__}: {e} (rerun with --debug)"
        print(f"error: {msg}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from harness.drive.episode import EpisodeSettings
    from harness.drive.plan import plan_route
    from harness.drive.route import load_routes
    from harness.drive.score import Rules
    from harness.drive.suite import measure_latency
    from harness.drive.sweep import PARQUET, Journal, SweepProgress, run_sweep, task_key, write_parquet
    from harness.drive.table import overall_markdown, routes_markdown, write_csv
    from harness.outputs import write_json
    from sim.embedded.town import load_town

    if args.threads < 1 or args.workers < 1:
        raise SuiteError("--threads and --workers must be >= 1")
    if args.added_latency_ms < 0:
        raise SuiteError("--added-latency-ms must be >= 0")
    specs = [resolve_model(m) for m in args.model]
    names = [model_name(s) for s in specs]
    if len(set(names)) != len(names):
        raise SuiteError(
            f"two models share the name {sorted(n for n in names if names.count(n) > 1)[0]!r} (rename one file)"
        )
    stated = _latencies(specs, args.latency_ms)
    routes = load_routes(args.routes)
    files = sorted(Path(args.routes).glob("*.toml")) if Path(args.routes).is_dir() else [Path(args.routes)]
    by_name = dict(zip([r.name for r in routes], files, strict=True))
    if args.only:
        missing = [n for n in args.only if n not in by_name]
        if missing:
            raise SuiteError(f"--only {missing[0]!r}: no such route (routes: {', '.join(by_name)})")
        routes = [r for r in routes if r.name in args.only]
    for r in routes:  # plan every route before minutes of driving: a bad waypoint fails now
        if r.map is None:
            plan_route(load_town(r.town).network, r)
    out = Path(args.out) if args.out else REPO / "results" / f"drive_{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    taken = [f for f in OUT_FILES if (out / f).exists()]
    if taken and not (args.overwrite or args.resume):
        raise SuiteError(
            f"{out} already holds a run ({', '.join(taken)}) (pass --resume to finish it, --overwrite, or other --out)"
        )
    if args.resume and args.overwrite:
        raise SuiteError("--resume and --overwrite contradict each other (choose one)")
    out.mkdir(parents=True, exist_ok=True)
    before: dict[str, float] = {}
    if args.resume and (out / SWEEP_META).is_file():
        before = json.loads((out / SWEEP_META).read_text(encoding="utf-8")).get("base_latency_ms", {})
    machine = _machine()
    latency: dict[str, float] = {}
    measured: dict[str, float] = {}
    for spec, name in zip(specs, names, strict=True):
        if name in stated:
            latency[name] = stated[name]
        elif name in before:  # a resume: the latencies of the finished episodes, so their keys match
            latency[name] = float(before[name])
        else:
            if not args.no_progress and spec != "oracle":
                print(f"measuring {name} ({args.threads} thread(s)) ...", file=sys.stderr)
            measured[name] = measure_latency(
                spec, str(by_name[routes[0].name]), args.threads, args.runtime, together=tuple(specs)
            )
            latency[name] = measured[name]
    write_json(out / SWEEP_META, {"base_latency_ms": dict(latency)})
    for name in latency:
        latency[name] += args.added_latency_ms
    tasks = [
        Task(i, spec, str(by_name[r.name]), latency[name], args.seed, args.threads, args.runtime, tuple(specs))
        for i, (r, (spec, name)) in enumerate((r, m) for r in routes for m in zip(specs, names, strict=True))
    ]
    settings = EpisodeSettings(rules=Rules(blame_navigator=args.blame_navigator), realtime=not args.no_realtime)
    use_ray = {"auto": None, "on": True, "off": False}[args.ray]
    t0 = time.perf_counter()
    finished = Journal(out).load() if args.resume else {}
    n_skip = sum(task_key(t, settings) in finished for t in tasks)
    prog = None if args.no_progress else SweepProgress(len(tasks), n_skip)
    if prog is not None and n_skip:
        print(f"resuming: {n_skip} of {len(tasks)} episodes already finished in {out}", file=sys.stderr)
    every, skipped = run_sweep(
        tasks, out, settings, resume=args.resume, progress=prog,
        workers=args.workers, use_ray=use_ray, address=args.address,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    write_parquet(out / PARQUET, every)
    rows = [r for r in every if r.get("status", "ok") != "failed"]
    failed = [r for r in every if r.get("status") == "failed"]
    command = "python -m harness.drive " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    overall, per_route = overall_markdown(rows), routes_markdown(rows)
    from harness.drive.table import per_model

    doc = {
        "command": command,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "wall_s": wall,
        "workers": args.workers,
        "realtime": not args.no_realtime,
        "threads": args.threads,
        "latency_ms": latency,
        "measured_latency_ms": measured,
        "added_latency_ms": args.added_latency_ms,
        "settings": asdict(settings),
        "tasks": [asdict(t) for t in tasks],
        "models": per_model(rows),
        "episodes": rows,
        "failed": failed,
        "skipped_as_finished": skipped,
    }
    write_json(out / "drive.json", doc)
    write_csv(out / "episodes.csv", rows)
    load = machine["load_avg_1_5_15"][0]
    report = (
        f"# Driving benchmark\n\n`{command}`\n\n{machine['cpu']}; load average {load:.1f} at the start; "
        f"{len(rows)} episodes in {wall:.0f} s, {args.workers} worker(s)"
        f"{f' ({skipped} finished before, from the journal)' if skipped else ''}.\n\n"
        + "".join(f"**failed (twice)**: {r['model']} on {r['route']}: {r['error']}\n\n" for r in failed)
        + f"## Overall\n\n{overall}\n\n## Per route\n\n{per_route}\n"
    )
    (out / "report.md").write_text(report, encoding="utf-8")
    print(overall)
    for r in failed:
        print(f"failed twice: {r['model']} on {r['route']}: {r['error']}", file=sys.stderr)
    print(f"results in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
