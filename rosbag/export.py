"""`python -m rosbag.export SRC --out BAG`: a recorded dataset or a finished run as a ROS 2 bag.

- a dataset folder (`manifest.json`, from `collect/record.py`): every frame's RGB, labels,
  depth (embedded world), pose as odometry and tf. Episodes follow each other in one bag,
  each shifted to start `EPISODE_GAP_S` after the previous one ended (stamps stay monotonic;
  odometry jumps to the next episode's start); `--episode N` exports one.
- a run folder (`summary.json`, from `run_sim.py`): frames are not stored, but an embedded
  autopilot run is a pure function of its command and seed, so the world is simulated again,
  frame for frame (`--masks` also re-runs the run's models for their lane masks). A
  `--drive model` run's frames depend on its masks: write it live with `run_sim.py --rosbag`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from plumbing import progress_bar, run_cli

EPISODE_GAP_S = 1.0


@contextmanager
def _whole_or_aborted(rec: Any, bar: Any) -> Iterator[None]:
    """Close the bag when the block ends, abort it (nothing half-written stays) when it raises."""
    try:
        yield
    except BaseException:
        rec.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    rec.close()


class ExportError(ValueError):
    """A source that cannot be exported (the message says why and what to do)."""


def export_dataset(
    src: Path,
    out: Path,
    overwrite: bool = False,
    episode: int | None = None,
    progress: bool = False,
    compressed: bool = False,
):
    """A recorded dataset folder as one bag; returns the BagRecorder (its `bags`, `frames`, `seconds`)."""
    from dataset.format import DatasetError, read_index, read_labels, read_manifest, read_rgb
    from rosbag.recorder import BagRecorder
    from sim.types import CameraSpec, EgoState

    try:
        manifest = read_manifest(src)
        rows = read_index(src)
    except DatasetError as e:
        raise ExportError(str(e)) from None
    if episode is not None:
        rows = [r for r in rows if r["episode"] == episode]
        if not rows:
            raise ExportError(f"{src} has no frames of episode {episode} (see its manifest.json for the episodes)")
    if not rows:
        raise ExportError(f"{src} has no frames to export")
    if any(r.get("x") is None or r.get("sim_time") is None for r in rows):
        raise ExportError(f"{src} has frames without a pose or time (an imported real dataset?): nothing to replay")
    spec = CameraSpec(**manifest.camera)
    rows.sort(key=lambda r: (r["episode"], r["frame"]))
    rec = BagRecorder(out, overwrite, depth=manifest.backend == "embedded", compressed=compressed)
    bar = progress_bar(len(rows), "export", enabled=progress)
    offset, last_ep, ep_start, ep_end = 0.0, None, 0.0, 0.0
    with _whole_or_aborted(rec, bar):
        for r in rows:
            if r["episode"] != last_ep:
                if last_ep is not None:
                    offset += ep_end - ep_start + EPISODE_GAP_S
                last_ep, ep_start = r["episode"], float(r["sim_time"])
            ep_end = float(r["sim_time"])
            ego = EgoState(x=r["x"], y=r["y"], z=r["z"] or 0.0, yaw=r["yaw"], speed=r["speed"] or 0.0)
            rgb, labels = read_rgb(src / r["rgb"]), read_labels(src / r["label"])
            rec.record_frame(offset + ep_end - ep_start, ego, spec, rgb, labels, r.get("town") or "")
            if bar is not None:
                bar.update(1)
    return rec


def export_run(
    src: Path,
    out: Path,
    overwrite: bool = False,
    masks: bool = False,
    progress: bool = False,
    compressed: bool = False,
    workers: int = 1,
):
    """An embedded autopilot run, simulated again from its command and seed (by `workers`
    processes, see `simulated_frames`), as one bag."""
    summary = json.loads((src / "summary.json").read_text())
    if summary.get("backend") != "embedded" or summary.get("drive") != "autopilot":
        raise ExportError(
            f"{src} is a {summary.get('backend')} --drive {summary.get('drive')} run: only embedded autopilot runs "
            "can be simulated again (write other runs live: run_sim.py ... --rosbag DIR)"
        )
    import run_sim
    from rosbag.recorder import BagRecorder

    argv = shlex.split(summary["command"])[2:]  # drop "python run_sim.py"
    args = run_sim.build_parser().parse_args(argv)
    scenario = run_sim.build_scenario(args)
    models = summary.get("models") or []
    frames = summary["rows"] // max(len(models), 1)
    slots = []
    if masks:
        cam = scenario.cameras[0]
        slots = run_sim.load_models(
            [m["path"] for m in models], (cam.height, cam.width), args.runtime, args.threads, not args.no_compile
        )
    rec = BagRecorder(out, overwrite, depth=True, compressed=compressed)
    bar = progress_bar(frames, "export", enabled=progress)
    with _whole_or_aborted(rec, bar):
        for obs in simulated_frames(scenario, summary["seed"], frames, workers):
            preds = {s.name: s.predictor.predict_timed(obs.camera.rgb)[0] for s in slots}
            rec.record(obs, preds)
            if bar is not None:
                bar.update(1)
    return rec


def _simulate(scenario: Any, seed: int, frames: int, queue: Any, index: int, workers: int) -> None:
    """A worker: the embedded autopilot episode, rendering only frames k with k % workers == index
    (the others are stepped without rendering: the world's state does not depend on rendering, and
    a frame's rendering only on that state and k); each rendered observation into `queue`, then None."""
    from sim.backend import make_backend

    try:
        with make_backend("embedded") as backend:
            obs = backend.reset(scenario, seed=seed)
            if index == 0:
                queue.put(obs)
            for k in range(1, frames):
                mine = k % workers == index
                obs = backend.step(None, render=mine)
                if mine:
                    queue.put(obs)
        queue.put(None)
    except BaseException as e:  # noqa: BLE001 - handed to the parent, which raises it
        queue.put(ExportError(f"simulating the run failed: {type(e).__name__}: {e}"))


def simulated_frames(scenario: Any, seed: int, frames: int, workers: int = 1, ahead: int = 4) -> Iterator[Any]:
    """The observations of an embedded autopilot episode, rendered by `workers` processes in turn.

    Rendering is most of a frame's simulation, and each worker renders every `workers`-th frame
    (stepping the world through the others without rendering), while this process converts and
    writes: simulating and writing overlap (a thread would not: both halves are mostly Python
    holding the GIL). Spawned, not forked: the parent may hold torch and OpenCV threads. The
    frames are the same as stepping one backend here (a test compares the bags' bytes).
    Each extra worker also steps the whole world and builds the town: more CPU in all, less
    wall time only where cores are free (benchmarks/bench_rosbag.py --export N --workers W).
    """
    import multiprocessing as mp
    import queue as queues

    ctx = mp.get_context("spawn")
    qs = [ctx.Queue(maxsize=ahead) for _ in range(workers)]
    procs = [
        ctx.Process(target=_simulate, args=(scenario, seed, frames, q, i, workers), daemon=True)
        for i, q in enumerate(qs)
    ]
    for proc in procs:
        proc.start()

    def take(i: int) -> Any:
        while True:
            try:
                item = qs[i].get(timeout=5.0)
            except queues.Empty:
                if not procs[i].is_alive():
                    raise ExportError(f"a simulator process died (exit code {procs[i].exitcode})") from None
                continue
            if isinstance(item, ExportError):
                raise item
            return item

    try:
        for k in range(frames):
            obs = take(k % workers)
            if obs is None:
                raise ExportError(f"the simulator stopped after {k} of {frames} frames")
            yield obs
        for i in range(workers):
            take(i)  # each worker's closing None, so that it can exit
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rosbag.export",
        description="Write a recorded dataset or a finished run as a ROS 2 bag (rosbag2 folder, MCAP).",
        epilog=(
            "examples:\n"
            "  python -m rosbag.export data/town03 --out bags/town03\n"
            "  python -m rosbag.export data/town03 --episode 2 --out bags/town03_e2\n"
            "  python -m rosbag.export results/<run> --masks --out bags/run\n"
            "  python -m rosbag.export results/<run> --compressed --out bags/run_jpeg\n"
            "Topics, frames and how to play the bag: docs/rosbag.md"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", help="dataset folder (manifest.json) or run folder (summary.json)")
    p.add_argument("--out", required=True, help="bag folder to write (metadata.yaml + .mcap)")
    p.add_argument("--episode", type=int, help="dataset: export only this episode")
    p.add_argument("--masks", action="store_true", help="run: re-run the run's models for their lane masks")
    p.add_argument(
        "--compressed",
        action="store_true",
        help="RGB, labels and masks as sensor_msgs/CompressedImage on <topic>/compressed (JPEG q95; PNG, lossless)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run: simulator processes rendering frames in turn (default 1; more help only where cores are free)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        try:
            import mcap_ros2  # noqa: F401
        except ImportError:
            raise ExportError("the mcap libraries are missing (pip install 'laneloop[ros]')") from None
        src, out = Path(args.src), Path(args.out)
        progress = not args.no_progress
        if (src / "manifest.json").exists():
            rec = export_dataset(src, out, args.overwrite, args.episode, progress, args.compressed)
        elif (src / "summary.json").exists():
            if args.workers < 1:
                raise ExportError(f"--workers must be >= 1, got {args.workers}")
            rec = export_run(src, out, args.overwrite, args.masks, progress, args.compressed, args.workers)
        else:
            raise ExportError(f"{src} is neither a dataset (manifest.json) nor a run folder (summary.json)")
        size = sum(f.stat().st_size for b in rec.bags for f in b.iterdir())
        print(f"{rec.frames} frames in {rec.seconds:.1f} s, {size / 1e6:.1f} MB: {out}")
        return 0

    from rosbag.bag import BagError

    return run_cli(body, expected=(ExportError, BagError, OSError), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
