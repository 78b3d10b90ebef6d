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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from dataset.format import (
    SPLITS,
    STATUS_COMPLETE,
    DatasetError,
    EpisodePlan,
    Manifest,
    read_index,
    read_manifest,
)
from dataset.stats import summarize
from dataset.writer import DatasetWriter, WriterError, WriterTimes, check_new_root
from plumbing import fail, interrupt_on_signals, progress_bar
from scenarios import Scenario, ScenarioError, load_scenario
from sim.backend import BACKENDS, BackendError, make_backend
from sim.types import PRESET_NAMES, CameraSpec, Weather

log = logging.getLogger("collect.record")

#: `--weather cycle` walks the presets in this order, one per episode: noon, sunset and night
#: alternate, so that even a few episodes cover the light conditions.
WEATHER_CYCLE: tuple[str, ...] = (
    "ClearNoon",
    "WetSunset",
    "ClearNight",
    "CloudyNoon",
    "HardRainSunset",
    "WetNight",
    "SoftRainNoon",
    "ClearSunset",
    "CloudyNight",
    "HardRainNoon",
    "CloudySunset",
    "SoftRainNight",
    "WetNoon",
    "SoftRainSunset",
    "WetCloudyNight",
    "MidRainyNoon",
    "WetCloudySunset",
    "MidRainyNight",
    "WetCloudyNoon",
    "MidRainSunset",
    "HardRainNight",
    "DustStorm",
)
DEFAULT_FRAMES = 600
DEFAULT_EPISODES = 6
DEFAULT_EVERY = 2
DEFAULT_SPLIT = "train=0.8,val=0.1,test=0.1"


# ----------------------------------------------------------------------------- planning


def parse_split(spec: str) -> dict[str, float]:
    """'train=0.8,val=0.1,test=0.1' -> normalised fractions (ValueError on a bad spec)."""
    out: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in SPLITS:
            raise ValueError(f"bad split {part!r} (write e.g. {DEFAULT_SPLIT}; names: {', '.join(SPLITS)})")
        try:
            frac = float(value)
        except ValueError:
            raise ValueError(f"bad split fraction {value!r} in {part!r} (a number such as 0.8)") from None
        if frac < 0 or name in out:
            raise ValueError(f"bad split {part!r} (fractions are >= 0, each split named once)")
        out[name] = frac
    total = sum(out.values())
    if total <= 0:
        raise ValueError(f"split {spec!r} has no positive fraction (write e.g. {DEFAULT_SPLIT})")
    return {k: v / total for k, v in out.items()}


def assign_splits(n_episodes: int, fractions: dict[str, float], seed: int) -> list[str]:
    """Split of each episode: counts by largest remainder, every named split gets one episode
    when there are enough, and which episode goes where is a seeded shuffle."""
    names = [s for s in SPLITS if fractions.get(s, 0) > 0]
    raw = {s: fractions[s] * n_episodes for s in names}
    counts = {s: int(raw[s]) for s in names}
    for s in sorted(names, key=lambda s: raw[s] - counts[s], reverse=True)[: n_episodes - sum(counts.values())]:
        counts[s] += 1
    if n_episodes >= len(names):
        for s in names:
            if counts[s] == 0:
                donor = max(names, key=lambda d: counts[d])
                counts[donor] -= 1
                counts[s] += 1
    labels = [s for s in names for _ in range(counts[s])]
    order = np.random.default_rng([seed, 0x5B117]).permutation(n_episodes)
    return [labels[i] for i in order]


def episode_seed(seed: int, episode: int) -> int:
    """Seed of one episode, derived from the recording seed (independent streams per episode)."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def _scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    return asdict(scenario)


def _scenario_from_dict(data: dict[str, Any]) -> Scenario:
    """Inverse of `scenario_to_dict` (the manifest keeps the scenario to resume from it)."""
    d = dict(data)
    d["weathers"] = tuple(Weather(**w) for w in d["weathers"])
    d["cameras"] = tuple(CameraSpec(**c) for c in d["cameras"])
    return Scenario(**d)


def plan_recording(
    scenario: Scenario,
    *,
    backend: str = "embedded",
    episodes: int = DEFAULT_EPISODES,
    frames: int | None = DEFAULT_FRAMES,
    episode_frames: int | None = None,
    every: int = DEFAULT_EVERY,
    weather: str | None = "cycle",
    seed: int | None = None,
    split: str | dict[str, float] = DEFAULT_SPLIT,
    lane_labels: bool = False,
) -> Manifest:
    """The manifest of a new recording: the episodes with their seeds, weathers and splits.

    `frames` is the total, spread over `episodes`; `episode_frames` (if given) is per episode.
    `weather`: a preset name, "cycle" (one preset per episode, WEATHER_CYCLE), or None for the
    scenario's own weather(s). Only the scenario's first camera is recorded.
    `lane_labels`: every frame also carries its lane boundaries (sim/lane_instances.py; the
    embedded backend only, which knows the road geometry).
    """
    if lane_labels and backend != "embedded":
        raise ValueError("--lane-labels needs the embedded backend (it reads the road network's geometry)")
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    if episode_frames is not None:
        if episode_frames < 1:
            raise ValueError(f"--episode-frames must be >= 1, got {episode_frames}")
        per_episode = [episode_frames] * episodes
    else:
        total = DEFAULT_FRAMES if frames is None else frames
        if total < 1:
            raise ValueError(f"--frames must be >= 1, got {total}")
        episodes = min(episodes, total)
        per_episode = [total // episodes + (1 if e < total % episodes else 0) for e in range(episodes)]
    if weather not in (None, "cycle") and weather not in PRESET_NAMES:
        raise ValueError(f"unknown weather {weather!r} (choose cycle or one of: {', '.join(PRESET_NAMES)})")
    fractions = parse_split(split) if isinstance(split, str) else dict(split)
    seed = scenario.seed if seed is None else seed
    scenario = replace(scenario, seed=seed, cameras=scenario.cameras[:1])
    splits = assign_splits(episodes, fractions, seed)
    plans = []
    for e in range(episodes):
        if weather == "cycle":
            w = WEATHER_CYCLE[e % len(WEATHER_CYCLE)]
        elif weather is None:
            w = ",".join(x.name for x in scenario.weathers)
        else:
            w = weather
        plans.append(
            EpisodePlan(episode=e, seed=episode_seed(seed, e), split=splits[e], weather=w, frames=per_episode[e])
        )
    return Manifest(
        backend=backend,
        town=scenario.place,
        scenario=_scenario_to_dict(scenario),
        seed=seed,
        every=every,
        camera=asdict(scenario.cameras[0]),
        episodes=plans,
        split_fractions=fractions,
        lane_instances=lane_instance_spec(scenario.cameras[0]) if lane_labels else None,
    )


def lane_instance_spec(camera: Any) -> dict[str, Any]:
    """The manifest's `lane_instances` entry: TuSimple's rows at this camera's height."""
    from sim.lane_instances import RANGE_M, frame_rows

    return {"format": "tusimple", "h_samples": frame_rows(camera.height).tolist(), "range_m": RANGE_M}


def frame_lane_labels(sim: Any, obs: Any, range_m: float) -> list[list[float]]:
    """The lane boundaries of `obs` in TuSimple form, from the embedded backend's road network."""
    from sim.lane_instances import frame_lanes

    cam, ego = obs.camera, obs.ego
    return frame_lanes(sim.town.network, ego.x, ego.y, ego.yaw, cam.spec, cam.labels, range_m).to_tusimple()


def episode_scenario(manifest: Manifest, plan: EpisodePlan) -> Scenario:
    """The scenario one episode runs: the recording's, with this episode's seed, length, weather."""
    base = _scenario_from_dict(manifest.scenario)
    ticks = (plan.frames - 1) * manifest.every + 1
    kw: dict[str, Any] = {"seed": plan.seed, "frames": ticks, "metres": None}
    if plan.weather in PRESET_NAMES:
        kw["weathers"] = (Weather.preset(plan.weather),)
    return replace(base, **kw)


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
                writer.add(plan.episode, frame, tick, obs, weather=weather, lanes=lanes)
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
