"""Record pixel-labelled camera frames from a simulator into a resumable dataset folder.

    python collect/record.py --town Town03 --out data/town03

A recording is a plan of episodes; each episode is a pure function of (scenario, seed,
episode index), so a killed recording resumes by re-simulating its unfinished episodes from
their start and writing only the frames the index does not name yet: the result is the
dataset an uninterrupted run would have written.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python collect/record.py`: make the packages importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from collect.plan import (  # noqa: F401 - the plan's names are the recorder's too
    DEFAULT_EPISODES,
    DEFAULT_EVERY,
    DEFAULT_FRAMES,
    DEFAULT_SPLIT,
    WEATHER_CYCLE,
    assign_splits,
    episode_scenario,
    episode_seed,
    parse_split,
    plan_recording,
)
from dataset.format import (
    STATUS_COMPLETE,
    DatasetError,
    Manifest,
    read_index,
    read_manifest,
)
from dataset.stats import summarize
from dataset.writer import DatasetWriter, WriterError, WriterTimes, check_new_root
from plumbing import fail, interrupt_on_signals, progress_bar
from scenarios import Scenario, ScenarioError, load_scenario
from sim.backend import BACKENDS, BackendError, make_backend

log = logging.getLogger("collect.record")


def frame_lane_labels(sim: Any, obs: Any, range_m: float) -> list[list[float]]:
    """The lane boundaries of `obs` in TuSimple form, from the embedded backend's road network."""
    from sim.lane_instances import frame_lanes

    cam, ego = obs.camera, obs.ego
    return frame_lanes(sim.town.network, ego.x, ego.y, ego.yaw, cam.spec, cam.labels, range_m).to_tusimple()


# ----------------------------------------------------------------------------- recording


@dataclass
class RecordResult:
    """What `record` did: the dataset's rows, how many are new, and where the time went."""

    root: Path
    manifest: Manifest
    rows: list[dict[str, Any]]
    new_frames: int = 0
    seconds: float = 0.0
    sim_s: float = 0.0  # stepping the simulator
    reset_s: float = 0.0  # episode starts (a town's first build included)
    writer: WriterTimes = field(default_factory=WriterTimes)

    @property
    def complete(self) -> bool:
        return self.manifest.status == STATUS_COMPLETE


def record(
    out: str | Path,
    manifest: Manifest | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    backend_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    workers: int = 2,
    flush_every_s: float = 1.0,
) -> RecordResult:
    """Record `manifest`'s plan into `out`, or (resume) finish the recording found there.

    Nothing is deleted before the simulator has accepted the first episode, so a bad town
    or an unreachable server leaves an existing folder as it was. Ctrl-C (KeyboardInterrupt)
    and errors propagate after the index of every complete frame is flushed.
    """
    out = Path(out)
    writer: DatasetWriter | None = None
    wkw = {"workers": workers, "flush_every_s": flush_every_s}
    if resume and (out / "manifest.json").is_file():
        writer = DatasetWriter.open(out, **wkw)
        manifest = writer.manifest
    else:
        if manifest is None:
            raise ValueError("record: a manifest (plan_recording) is needed to start a new recording")
        check_new_root(out, overwrite=overwrite and not resume)
    result = RecordResult(root=out, manifest=manifest, rows=[])
    t_start = time.perf_counter()
    todo = [p for p in manifest.episodes if writer is None or not writer.episode_done(p.episode)]
    bar = None
    sim = None
    try:
        if todo:
            sim = make_backend(manifest.backend, **(backend_kwargs or {}))
        for plan in todo:
            scenario = episode_scenario(manifest, plan)
            t0 = time.perf_counter()
            obs = sim.reset(scenario, seed=plan.seed)
            look = sim.look_record() if hasattr(sim, "look_record") else None
            result.reset_s += time.perf_counter() - t0
            if writer is None:  # the simulator accepted the plan: only now touch the folder
                writer = DatasetWriter.create(out, manifest, overwrite=overwrite, **wkw)
            if bar is None:
                bar = progress_bar(manifest.planned_frames, "record", progress, initial=len(writer.done), smoothing=0.1)
            tick = 0
            for frame in range(plan.frames):
                if frame:
                    t0 = time.perf_counter()
                    for k in range(manifest.every):  # render only the tick that is kept
                        obs = sim.step(None, render=k == manifest.every - 1)
                    result.sim_s += time.perf_counter() - t0
                    tick += manifest.every
                if (plan.episode, frame) in writer.done:
                    continue
                weather = obs.weather or scenario.weather_at(tick).name
                lanes = None
                if manifest.lane_instances is not None:
                    lanes = frame_lane_labels(sim, obs, float(manifest.lane_instances["range_m"]))
                writer.add(plan.episode, frame, tick, obs, weather=weather, lanes=lanes, look=look)
                result.new_frames += 1
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        try:
            if writer is not None:
                writer.close()
        finally:
            if sim is not None:
                sim.close()
    if writer is None:  # resumed a complete dataset, or nothing planned
        writer = DatasetWriter.open(out, **wkw)
        writer.close()
    result.manifest = writer.manifest
    result.rows = writer.rows
    result.writer = writer.times
    result.seconds = time.perf_counter() - t_start
    return result


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="collect/record.py",
        description="Record pixel-labelled camera frames (RGB + CARLA tag ids) into a dataset folder.",
        epilog=(
            "examples:\n"
            "  python collect/record.py --town Town03 --out data/town03\n"
            "  python collect/record.py --episodes 20 --episode-frames 200 --every 3 --weather cycle "
            "--out data/big\n"
            "  python collect/record.py --out data/big --resume        # finish a killed recording\n"
            "  python collect/record.py --town Town05 --look real --randomize --out data/town05_real\n"
            "  python collect/record.py --backend carla --host 127.0.0.1 --port 2000 --town Town10HD "
            "--out data/carla10"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("world")
    g.add_argument("--town", help="procedural town (default: the scenario's, Town03)")
    g.add_argument("--map", metavar="FILE", help="OpenDRIVE road network (.xodr) instead of a procedural town")
    g.add_argument("--scenario", help="scenario TOML file or shipped name (e.g. town03_clear)")
    g.add_argument("--backend", choices=BACKENDS, default="embedded", help="simulator (default: embedded)")
    g.add_argument("--host", default="127.0.0.1", help="CARLA server host")
    g.add_argument("--port", type=int, default=2000, help="CARLA server port")
    g.add_argument("--tm-port", type=int, default=8000, help="CARLA traffic manager port")
    g.add_argument("--timeout", type=float, default=10.0, help="CARLA client timeout [s]")
    g.add_argument(
        "--weather",
        help="preset name or 'cycle' (one preset per episode); "
        "default: cycle, or the scenario's weather with --scenario",
    )
    g.add_argument("--npc-vehicles", type=int, help="traffic vehicles (default: the scenario's)")
    g.add_argument("--seed", type=int, help="recording seed (default: the scenario's); episodes derive theirs")
    g.add_argument(
        "--look",
        choices=("default", "real"),
        help="embedded renderer's look: default (clean) or real (worn paint, seams, shadows, barriers, "
        "camera effects; docs/sim_to_real.md); default: the scenario's",
    )
    g.add_argument(
        "--randomize",
        action="store_true",
        help="domain randomization: each episode draws its look and camera mounting from its seed "
        "(stored per frame in the index's `look` column)",
    )
    g = p.add_argument_group("camera")
    g.add_argument("--width", type=int, help="image width [px] (default 320)")
    g.add_argument("--height", type=int, help="image height [px] (default 160)")
    g.add_argument("--fov", type=float, help="horizontal field of view [deg] (default 90)")
    g = p.add_argument_group("amount")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--frames", type=int, help=f"total frames, spread over the episodes (default {DEFAULT_FRAMES})")
    m.add_argument("--episode-frames", type=int, help="frames per episode (instead of --frames)")
    g.add_argument("--episodes", type=int, default=DEFAULT_EPISODES, help=f"episodes (default {DEFAULT_EPISODES})")
    g.add_argument(
        "--every",
        type=int,
        default=DEFAULT_EVERY,
        help=f"keep every K-th simulator tick (default {DEFAULT_EVERY})",
    )
    g.add_argument("--split", default=DEFAULT_SPLIT, help=f"split fractions, by episode (default {DEFAULT_SPLIT})")
    g = p.add_argument_group("output")
    g.add_argument("--out", help="dataset folder (default data/<town>)")
    g.add_argument(
        "--resume",
        action="store_true",
        help="finish the recording in --out with the settings in its manifest (other flags ignored)",
    )
    g.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    g.add_argument(
        "--lane-labels",
        action="store_true",
        help="also store each frame's lane boundaries in TuSimple form, for train/evaluate.py --metrics real "
        "(embedded backend; a few ms a frame; docs/real_frames.md)",
    )
    g.add_argument("--workers", type=int, default=2, help="PNG writer threads (default 2)")
    g.add_argument(
        "--flush-every",
        type=float,
        default=1.0,
        help="seconds between index flushes: the most work a kill -9 can lose (default 1)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--debug", action="store_true", help="tracebacks and debug logging")
    return p


def _scenario_from_args(args: argparse.Namespace) -> Scenario:
    scenario = load_scenario(args.scenario) if args.scenario else Scenario(name="record", ego_spawn=None)
    kw: dict[str, Any] = {}
    if args.town and args.map:
        raise ValueError("--town and --map exclude each other (a procedural town or an OpenDRIVE file)")
    if args.town:
        kw["town"] = args.town
        kw["map"] = None
    if args.map:
        kw["map"] = args.map
    if args.look:
        kw["look"] = args.look
    if args.randomize:
        kw["randomize"] = True
    if (args.look not in (None, "default") or args.randomize) and args.backend != "embedded":
        raise ValueError("--look and --randomize need the embedded backend (they change its renderer)")
    if args.npc_vehicles is not None:
        if args.npc_vehicles < 0:
            raise ValueError(f"--npc-vehicles must be >= 0, got {args.npc_vehicles}")
        kw["npc_vehicles"] = args.npc_vehicles
    cam = scenario.cameras[0]
    cam_kw = {k: v for k, v in (("width", args.width), ("height", args.height), ("fov_deg", args.fov)) if v is not None}
    if cam_kw:
        kw["cameras"] = (replace(cam, **cam_kw),)
    return replace(scenario, **kw)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        parse_split(args.split)
    except ValueError as e:
        parser.error(str(e))
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other (pick one)")

    out: Path | None = None
    try:
        with interrupt_on_signals():  # kill and Ctrl-C (even in the background) unwind
            scenario = _scenario_from_args(args)
            out = Path(args.out) if args.out else Path("data") / Path(scenario.place).stem.lower()
            manifest = None
            if not (args.resume and (out / "manifest.json").is_file()):
                weather = args.weather if args.weather else (None if args.scenario else "cycle")
                manifest = plan_recording(
                    scenario,
                    backend=args.backend,
                    episodes=args.episodes,
                    frames=args.frames,
                    episode_frames=args.episode_frames,
                    every=args.every,
                    weather=weather,
                    seed=args.seed,
                    split=args.split,
                    lane_labels=args.lane_labels,
                )
            backend_kwargs = {}
            backend_name = manifest.backend if manifest else read_manifest(out).backend
            if backend_name == "carla":
                backend_kwargs = {
                    "host": args.host,
                    "port": args.port,
                    "tm_port": args.tm_port,
                    "timeout": args.timeout,
                }
            result = record(
                out,
                manifest,
                resume=args.resume,
                overwrite=args.overwrite,
                backend_kwargs=backend_kwargs,
                progress=not args.no_progress,
                flush_every_s=args.flush_every,
                workers=args.workers,
            )
    except KeyboardInterrupt:
        n = len(read_index(out)) if out is not None and (out / "manifest.json").is_file() else 0
        print(
            f"interrupted: {n} complete frames are indexed in {out} (continue with --resume --out {out})",
            file=sys.stderr,
        )
        return 130
    except (BackendError, WriterError) as e:
        if args.debug:
            raise
        hint = ""
        if out is not None and (out / "manifest.json").is_file():
            hint = f" (complete frames are kept in {out}; fix the cause, then rerun with --resume --out {out})"
        return fail(f"{e}{hint}")
    except (ScenarioError, DatasetError, ValueError, OSError) as e:
        if args.debug:
            raise
        return fail(str(e))
    except Exception as e:  # unexpected: still one line unless --debug
        if args.debug:
            raise
        return fail(f"unexpected {type(e).__name__}: {e} (rerun with --debug for a traceback)")
    busy = result.seconds - result.reset_s
    rate = result.new_frames / busy if busy > 0 else 0.0
    print(
        f"recorded {result.new_frames} new frames in {result.seconds:.1f} s ({rate:.0f} frames/s, plus "
        f"{result.reset_s:.1f} s starting episodes); {len(result.rows)} of {result.manifest.planned_frames} "
        f"frames in {out}"
    )
    print(summarize(result.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
