"""The closed loop's command line: put lane models into a live simulation.

    python run_sim.py --model unet_qat.pth

Thin on purpose: parses arguments, loads the predictors (perception) and the scenario, and
hands them with the one IoU (`perception.metrics.BinaryConfusion`) to `harness.loop`, which
knows nothing of perception. Outputs: results/<run>/frames.parquet, summary.json, a
frame strip and report.html; the per-model table is printed at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python run_sim.py` from anywhere: make the packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse
import logging
import os
import shlex
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

REPO = Path(__file__).resolve().parent
MODELS_DIR = REPO / "models"
RESULTS_DIR = REPO / "results"
DEFAULT_MODEL = "unet_qat.pth"
DEFAULT_SCENARIO = "town03_clear"

log = logging.getLogger("run_sim")


class UsageError(Exception):
    """Bad arguments found after parsing (exit code 1, one line)."""


def resolve_model(spec: str) -> Path:
    """A path as given, else a bare file name looked up in the repo's models/ folder."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if path.parent == Path(".") and (MODELS_DIR / path.name).exists():
        return MODELS_DIR / path.name
    if spec == DEFAULT_MODEL:
        raise UsageError(
            f"the shipped model models/{DEFAULT_MODEL} is missing (make it with python quant/qat.py, see README, "
            "or pass --model CKPT, e.g. a float checkpoint from train/train.py)"
        )
    where = f"{path}" if path.parent != Path(".") else f"{path} or {MODELS_DIR / path.name}"
    raise UsageError(f"model file not found: {where} (check the path; bare names are looked up in models/)")


def unique_names(paths: list[Path]) -> list[str]:
    """Display names: file stems, disambiguated with the parent folder (then an index) when equal."""
    stems = [p.stem for p in paths]
    names = [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 and p.parent.name else p.stem for p in paths]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if names.count(n) > 1:
            seen[n] = seen.get(n, 0) + 1
            names[i] = f"{n}#{seen[n]}"
    return [n.replace("/", "_") for n in names]


def build_scenario(args: argparse.Namespace) -> Any:
    """The scenario file (or shipped name), with --town/--weather/--frames/--seed applied."""
    from scenarios import load_scenario
    from sim.types import Weather

    scenario = load_scenario(args.scenario or DEFAULT_SCENARIO)
    kw: dict[str, Any] = {}
    if args.town and args.map:
        raise UsageError("--town and --map exclude each other (a procedural town or an OpenDRIVE file)")
    if args.town:
        kw["town"] = args.town
        kw["map"] = None
        kw["ego_spawn"] = None if args.scenario is None else scenario.ego_spawn
        if args.scenario is None:
            kw["name"] = args.town.lower()
    if args.map:
        kw["map"] = args.map
        kw["ego_spawn"] = None if args.scenario is None else scenario.ego_spawn
        if args.scenario is None:
            kw["name"] = Path(args.map).stem.lower()
    if args.weather:
        kw["weathers"] = (Weather.preset(args.weather),)
        if args.scenario is None:
            kw["name"] = f"{kw.get('name', args.town.lower() if args.town else scenario.name)}_{args.weather}"
    if args.frames is not None:
        if args.frames < 1:
            raise UsageError(f"--frames must be >= 1, got {args.frames}")
        kw["frames"] = args.frames
        kw["metres"] = None
    return replace(scenario, **kw) if kw else scenario


def load_models(
    specs: list[str],
    camera_hw: tuple[int, int],
    runtime: str = "torch",
    threads: int | None = None,
    compile: bool = True,
    announce: bool = False,
) -> list[Any]:
    """Predictors for the model files, checked against the lane task, warmed up (compiled)."""
    from harness.contracts import ModelSlot
    from perception.checkpoint import IncompatibleCheckpointError, check_compatible
    from perception.predictor import load_predictor

    paths = [resolve_model(s) for s in specs]
    names = unique_names(paths)
    loaded = []
    for name, path in zip(names, paths, strict=True):
        kw = {} if compile or runtime not in ("torch", "auto") else {"compile": False}
        predictor = load_predictor(path, runtime=runtime, threads=threads, **kw)
        try:
            check_compatible(predictor.meta, lanes=True)
        except IncompatibleCheckpointError as exc:
            raise IncompatibleCheckpointError(f"{path}: {exc}") from None
        if predictor.meta.task.target == "boundaries":
            log.warning(
                "%s predicts lane boundaries (through dash gaps), but the loop scores IoU against painted pixels: "
                "its IoU here is low by definition (score it with train/evaluate.py --metrics real)",
                name,
            )
        if tuple(predictor.input_size) != tuple(camera_hw):
            h, w = predictor.input_size
            log.warning(
                "%s runs at %dx%d (HxW) but the camera gives %dx%d: frames are resized to the model and "
                "masks back to the camera size (IoU is scored at the camera size)",
                name, h, w, camera_hw[0], camera_hw[1],
            )  # fmt: skip
        predictor.name = name
        loaded.append((name, path, predictor))
    # Warm up (compile) only once every model is loaded: loading a QAT checkpoint re-runs
    # prepare_qat_pt2e, which resets torch.compile's caches, so a model compiled before it
    # would compile again on the loop's first frame (a 10-20 s stall, measured).
    slots = []
    for name, path, predictor in loaded:
        meta = predictor.meta
        if announce:
            print(f"warming up {name} ({getattr(predictor, 'description', predictor.scheme)}) ...", file=sys.stderr)
        t0 = time.perf_counter()
        predictor.warmup()
        info = {
            "arch": meta.arch,
            "arch_kwargs": dict(meta.arch_kwargs),
            "runtime": getattr(predictor, "runtime", runtime),
            "threads": getattr(predictor, "threads", threads),
            "input_size": list(predictor.input_size),
            "bits": meta.quant.bits,
            "description": getattr(predictor, "description", ""),
            "warmup_s": time.perf_counter() - t0,
            "checkpoint_metrics": dict(meta.metrics),
        }
        slots.append(ModelSlot(name, predictor, str(path), path.stat().st_size, info))
    return slots


def overlap_sim(choice: str, threads: int | None) -> bool:
    """Whether the simulator steps beside the models: `auto` when a core is free of the runtime's threads."""
    if choice != "auto":
        return choice == "on"
    return (os.cpu_count() or 1) > (threads or os.cpu_count() or 1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_sim.py",
        description=(
            "Closed-loop simulation: every model sees the camera live; per-frame IoU and latency are logged, "
            "and with --drive model each model drives its own episode on what it sees."
        ),
        epilog=(
            "examples:\n"
            "  python run_sim.py --model unet_qat.pth\n"
            "  python run_sim.py --model unet_float.pth --model unet_ptq.pth --model unet_qat.pth "
            "--scenario town10_rain --frames 1200\n"
            "  python run_sim.py --model unet_qat.pth --drive model --realtime --scenario highway_curves\n"
            "  python run_sim.py --model unet_qat.pth --view                 # pygame window\n"
            "  python -m harness.report results/<run>                            # rebuild the report\n"
            "\n"
            "Bare model names not found in the current folder are looked up in models/. A model trained at\n"
            "another input size than the camera's runs on resized frames (a warning says so); a model of\n"
            "another task than lane markings is refused."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("models")
    g.add_argument(
        "--model",
        action="append",
        metavar="CKPT",
        help=(
            "checkpoint (.pth, or .onnx with --runtime onnx/openvino); repeat to compare "
            f"(default: models/{DEFAULT_MODEL})"
        ),
    )
    g.add_argument(
        "--runtime",
        choices=("auto", "torch", "onnx", "openvino", "tensorrt"),
        default="auto",
        help=(
            "inference runtime (default auto: the fastest of torch for a .pth, ONNX Runtime and OpenVINO for an "
            ".onnx or a sibling .onnx of the same model, timed once per machine and cached)"
        ),
    )
    g.add_argument("--threads", type=int, help="intra-op threads of the runtime (default: all cores)")
    g.add_argument(
        "--no-compile",
        action="store_true",
        help="torch runtime: skip torch.compile (starts in seconds; int8 models then run the slow reference graph)",
    )
    g = p.add_argument_group("world")
    g.add_argument("--scenario", help=f"scenario TOML file or shipped name (default {DEFAULT_SCENARIO})")
    g.add_argument("--town", help="procedural town, overriding the scenario's (e.g. Town03)")
    g.add_argument(
        "--map",
        metavar="FILE",
        help="OpenDRIVE road network (.xodr, e.g. CARLA's Town03.xodr), overriding the scenario's town and map",
    )
    g.add_argument("--weather", help="weather preset, overriding the scenario's (e.g. ClearNoon, HardRainNoon)")
    g.add_argument("--frames", type=int, help="frames per episode (default: the scenario's)")
    g.add_argument("--seed", type=int, help="episode seed (default: the scenario's)")
    g.add_argument("--backend", choices=("embedded", "carla"), default="embedded", help="simulator (default embedded)")
    g.add_argument("--host", default="127.0.0.1", help="CARLA server host")
    g.add_argument("--port", type=int, default=2000, help="CARLA server port")
    g.add_argument("--tm-port", type=int, default=8000, help="CARLA traffic manager port")
    g.add_argument("--timeout", type=float, default=10.0, help="CARLA client timeout [s]")
    g = p.add_argument_group("loop")
    g.add_argument(
        "--drive",
        choices=("autopilot", "model"),
        default="autopilot",
        help="autopilot: one episode, all models scored on the same frames; model: each model drives its own "
        "episode with the lane-keeping controller (default autopilot)",
    )
    g.add_argument(
        "--realtime",
        action="store_true",
        help="charge each model's latency to simulated time: a slow model steers on stale masks, "
        "frames it cannot keep up with are deadline misses",
    )
    g.add_argument(
        "--junctions",
        choices=("hold", "autopilot"),
        default="autopilot",
        help="--drive model in junctions, where there are no lane markings: autopilot (default: the "
        "simulator's navigator takes the junction and 12 m past it, the lane keeper every road) or hold "
        "(the lane keeper drives straight on: in grid towns the episode ends at a T junction)",
    )
    g.add_argument(
        "--overlap",
        choices=("auto", "on", "off"),
        default="auto",
        help=(
            "autopilot drive: step the simulator beside the models (on) or after them (off); auto (default): beside "
            "them only when a core is left over from the runtime's threads (on 2 cores with 2 threads it only "
            "stretched inference: p50 1.37x vs 1.05x of the model alone, benchmarks/bench_loop.py latency)"
        ),
    )
    g.add_argument("--view", action="store_true", help="live pygame view (space pause, n step, tab model, q quit)")
    g.add_argument(
        "--screenshot-every",
        type=int,
        metavar="N",
        help="with --view: also save the view every N frames to <out>/screenshots (works headless)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--out", help="run folder (default results/<time>_<scenario>_<drive>)")
    g.add_argument("--overwrite", action="store_true", help="replace the outputs of an existing run folder")
    g.add_argument("--no-report", action="store_true", help="skip report.html at the end")
    g.add_argument(
        "--rosbag",
        metavar="DIR",
        help="also write the run as a ROS 2 bag (rosbag2 folder, MCAP): images, depth, labels, lane masks, "
        "odometry, tf; with --drive model one bag per model in DIR/<model> (needs laneloop[ros], docs/rosbag.md)",
    )
    g.add_argument(
        "--rosbag-compressed",
        action="store_true",
        help="with --rosbag: RGB, labels and masks as sensor_msgs/CompressedImage (<topic>/compressed: JPEG, PNG)",
    )
    g.add_argument(
        "--lanemap",
        action="store_true",
        help="each model's top-down lane map, scored within 0.2 m, in <out>/lanemap and the report "
        "(embedded backend; always on with --rosbag)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--debug", action="store_true", help="tracebacks and debug logging")
    return p


def _fail(msg: str, code: int = 1) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.threads is not None and args.threads < 1:
        return _fail(f"--threads must be >= 1, got {args.threads}", 2)
    if args.screenshot_every is not None and (args.screenshot_every < 1 or not args.view):
        return _fail("--screenshot-every needs --view and N >= 1 (e.g. --view --screenshot-every 50)", 2)
    try:
        return _run(args, argv)
    except KeyboardInterrupt:
        print("interrupted before the run started (nothing written)", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line per expected error, a hint for the rest
        if args.debug:
            raise
        return _fail(_message(e))


def _message(e: Exception) -> str:
    from harness.contracts import LoopError
    from perception.checkpoint import CheckpointError
    from scenarios import ScenarioError
    from sim.backend import BackendError

    if isinstance(e, (UsageError, CheckpointError, ScenarioError, BackendError, LoopError)):
        return str(e)
    if isinstance(e, ValueError):
        return str(e)
    if isinstance(e, OSError):
        return f"{e} (check the path and permissions)"
    return f"unexpected {type(e).__name__}: {e} (rerun with --debug for a traceback)"


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from harness.outputs import prepare_out
    from harness.report import format_table, write_report

    scenario = build_scenario(args)
    if args.out:
        out = Path(args.out)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = RESULTS_DIR / f"{stamp}_{scenario.name}_{args.drive}{'_rt' if args.realtime else ''}"
    created = not out.exists()
    recorder = _recorder(args, out)
    prepare_out(out, args.overwrite)  # fail early, before minutes of compiling
    try:
        result = _loop(args, argv, scenario, out, recorder)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # nothing was written: leave no empty run folder behind
        raise
    print(format_table(result.summary))
    mapper = recorder.lane_mapper if recorder is not None and hasattr(recorder, "lane_mapper") else recorder
    if mapper is not None and getattr(mapper, "maps", None):
        lanemap = mapper.save(out / "lanemap")
        for model, r in lanemap["models"].items():
            print(f"lane map {model}: precision {r['precision']:.3f}, recall {r['recall']:.3f} within 0.2 m")
    report = None
    if not args.no_report:
        try:
            report = write_report(out)
        except Exception as e:  # noqa: BLE001 - the run's data is safe; say why the report is missing
            if args.debug:
                raise
            print(f"warning: report not written: {e} (retry with python -m harness.report {out})", file=sys.stderr)
    where = report if report is not None else out
    if result.interrupted:
        print(f"interrupted ({result.summary['end']}): partial results in {where}", file=sys.stderr)
        return 130
    print(f"results in {where}")
    if getattr(recorder, "bags", None):
        print(f"ROS 2 bag{'s' if len(recorder.bags) > 1 else ''}: {', '.join(map(str, recorder.bags))}")
    return 0


def _recorder(args: argparse.Namespace, out: Path) -> Any:
    """The --rosbag writer and/or the --lanemap mapper (checked before the models compile), or None."""
    if args.rosbag_compressed and not args.rosbag:
        raise UsageError("--rosbag-compressed needs --rosbag DIR")
    if args.lanemap and args.backend != "embedded":
        raise UsageError("--lanemap needs the embedded backend (it scores against the town's ground raster)")
    mapper = None
    if args.backend == "embedded" and (args.lanemap or args.rosbag):
        from harness.lanemap import LaneMapper
        from sim.embedded.town import load_town
        from sim.maps.load import load_xodr_town

        scenario = build_scenario(args)
        try:
            town = load_xodr_town(scenario.map) if scenario.map else load_town(scenario.town)
        except Exception:  # noqa: BLE001 - the backend reports a bad town or map with its own message
            town = None
        mapper = LaneMapper(town) if town is not None else None
    if not args.rosbag:
        return mapper
    if Path(args.rosbag).resolve() == out.resolve():
        raise UsageError(f"--rosbag {args.rosbag} is the run folder (give the bag its own folder, e.g. {out}_bag)")
    try:
        import mcap_ros2  # noqa: F401
    except ImportError:
        raise UsageError("--rosbag needs the mcap libraries (pip install 'laneloop[ros]')") from None
    from rosbag.recorder import BagRecorder

    return BagRecorder(
        args.rosbag,
        args.overwrite,
        depth=args.backend == "embedded",
        per_episode=args.drive == "model",
        compressed=args.rosbag_compressed,
        town=mapper.town if mapper is not None else None,
        lane_mapper=mapper,
    )


def _loop(args: argparse.Namespace, argv: list[str] | None, scenario: Any, out: Path, recorder: Any = None) -> Any:
    """Load the models and run the loop (outputs in `out`)."""
    from harness.contracts import LoopConfig
    from harness.loop import run_loop
    from perception.metrics import BinaryConfusion

    cam = scenario.cameras[0]
    models = load_models(
        args.model or [DEFAULT_MODEL],
        (cam.height, cam.width),
        runtime=args.runtime,
        threads=args.threads,
        compile=not args.no_compile,
        announce=not args.no_progress and sys.stderr.isatty(),
    )
    backend_kwargs: dict[str, Any] = {}
    if args.backend == "carla":
        backend_kwargs = {"host": args.host, "port": args.port, "tm_port": args.tm_port, "timeout": args.timeout}
    view = None
    if args.view:
        from harness.view import LoopView

        view = LoopView(screenshot_dir=out / "screenshots", screenshot_every=args.screenshot_every)
    command = "python run_sim.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    config = LoopConfig(
        scenario=scenario,
        out=out,
        run=out.name,
        seed=args.seed,
        drive=args.drive,
        realtime=args.realtime,
        junctions=args.junctions,
        backend=args.backend,
        backend_kwargs=backend_kwargs,
        threads=args.threads or os.cpu_count(),
        runtime=args.runtime,
        progress=not args.no_progress,
        overlap_sim=overlap_sim(args.overlap, args.threads),
        command=command,
    )
    return run_loop(config, models, BinaryConfusion, view=view, recorder=recorder)


if __name__ == "__main__":
    sys.exit(main())
