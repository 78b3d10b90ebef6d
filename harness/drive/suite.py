"""Models x routes as independent episodes: in this process, or as Ray tasks on N workers.

An episode is a pure function of its `Task` (model file, route file, seed, stated latency),
so the order and the place it runs in change nothing: the same tasks give the same rows in
one process or on Ray (each worker owns its simulator and loads each model once). Model
latencies are measured before the sweep, one model at a time in this process, and stated
to every task (`measure_latency`); `--latency-ms` states them instead.
"""

from __future__ import annotations

import importlib.util
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("harness.drive")

ORACLE = "oracle"  # model spec of harness.oracle's perfect, instant mask (the ceiling)
REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models"


class SuiteError(RuntimeError):
    """An expected failure of a sweep (a missing model, Ray asked for but absent); one line."""


@dataclass(frozen=True)
class Task:
    """One episode: which model drives which route, with what seed and stated latency [ms]."""

    index: int
    model: str  # a model file, or "oracle"
    route: str  # a route file
    latency_ms: float
    seed: int | None = None
    threads: int = 1
    runtime: str = "torch"
    together: tuple[str, ...] = ()  # every model of the sweep: loaded together (see _predictor)


def model_name(spec: str) -> str:
    return ORACLE if spec == ORACLE else Path(spec).stem


def resolve_model(spec: str) -> str:
    """'oracle', a path as given, or a bare name looked up in models/."""
    if spec == ORACLE:
        return spec
    p = Path(spec).expanduser()
    if p.exists():
        return str(p)
    if p.parent == Path(".") and (MODELS_DIR / p.name).exists():
        return str(MODELS_DIR / p.name)
    raise SuiteError(f"model file not found: {spec} (give a path, a name in models/, or 'oracle')")


# ------------------------------------------------------------------------------ in a worker
_PREDICTORS: dict[tuple[str, int, str], Any] = {}


def _predictor(spec: str, threads: int, runtime: str, together: tuple[str, ...] = ()) -> Any:
    """The model's predictor, loaded and warmed up once per process.

    Every model of the sweep (`together`) is loaded before any is warmed up: loading a QAT
    checkpoint resets torch.compile's caches, so a model compiled before it would compile again.
    """
    from perception.predictor import load_predictor

    todo = [m for m in dict.fromkeys((*together, spec)) if m != ORACLE and (m, threads, runtime) not in _PREDICTORS]
    loaded = []
    for m in todo:
        p = load_predictor(m, runtime=runtime, threads=threads)
        p.name = model_name(m)
        loaded.append((m, p))
    for m, p in loaded:
        p.warmup()
        _PREDICTORS[(m, threads, runtime)] = p
    return _PREDICTORS[(spec, threads, runtime)]


def run_task(task: Task, settings: Any = None) -> dict[str, Any]:
    """Drive one episode (see the module doc); the row of results, with the task's index."""
    from harness.drive.episode import drive_route
    from harness.drive.navigate import RoutedBackend
    from harness.drive.route import load_route
    from harness.oracle import GroundTruthMaskPredictor, truth_backend
    from perception.metrics import BinaryConfusion
    from sim.backend import make_backend

    route = load_route(task.route)
    t0 = time.perf_counter()
    if task.model == ORACLE:
        predictor: Any = GroundTruthMaskPredictor(ORACLE)
        factory: Callable[..., Any] = truth_backend(predictor)
    else:
        predictor = _predictor(task.model, task.threads, task.runtime, task.together)
        factory = make_backend
    backend = RoutedBackend(factory("embedded"), route)
    try:
        row = drive_route(route, predictor, task.latency_ms, backend, BinaryConfusion(), task.seed, settings)
    finally:
        backend.close()
    row["index"] = task.index
    row["wall_s"] = time.perf_counter() - t0  # not part of the result: varies with the machine
    return row


def measure_latency(
    spec: str, route_file: str, threads: int, runtime: str, frames: int = 30, together: tuple[str, ...] = ()
) -> float:
    """Median latency [ms] of a model on the first frame of a route (after 5 warm runs); 0 for the oracle."""
    if spec == ORACLE:
        return 0.0
    from harness.drive.route import load_route
    from sim.backend import make_backend

    p = _predictor(spec, threads, runtime, together)
    route = load_route(route_file)
    with make_backend("embedded") as b:
        rgb = b.reset(route.scenario(), seed=route.seed).camera.rgb
    ms = []
    for i in range(frames + 5):
        _, t = p.predict_timed(rgb)
        if i >= 5:
            ms.append(t.preprocess_ms + t.inference_ms + t.postprocess_ms)
    return float(statistics.median(ms))


def failed_row(task: Task, error: BaseException) -> dict[str, Any]:
    """The row of an episode that failed twice: who, where, and the error in one line."""
    msg = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    return {"index": task.index, "model": model_name(task.model), "route": Path(task.route).stem, "status": "failed",
            "error": msg, "seed": task.seed, "latency_ms": task.latency_ms}  # fmt: skip


def with_retry(runner: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """`runner` tried twice; a second failure is a failed row instead of an exception (the sweep goes on)."""

    def run(task: Task, settings: Any = None) -> dict[str, Any]:
        for attempt in (1, 2):
            try:
                row = runner(task, settings)
            except Exception as e:  # noqa: BLE001 - any episode error is retried once, then reported
                if attempt == 2:
                    return failed_row(task, e)
                log.warning("episode %d (%s on %s) failed, retrying once: %s", task.index, task.model, task.route, e)
                continue
            row["status"], row["attempts"] = "ok", attempt
            return row
        raise AssertionError("unreachable")

    return run


# ------------------------------------------------------------------------------ the sweep
def ray_available() -> bool:
    """Whether Ray is installed, without importing it (importing Ray into a process that has
    loaded the carla client library makes that process abort later)."""
    return importlib.util.find_spec("ray") is not None


def run_tasks(
    tasks: list[Task],
    workers: int = 1,
    use_ray: bool | None = None,
    address: str | None = None,
    settings: Any = None,
    progress: Callable[[dict[str, Any], int, int], None] | None = None,
    runner: Callable[..., dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every task's row, in task order. `use_ray`: None = Ray when installed and workers > 1.

    Each episode is tried twice (`with_retry`; on Ray a dead worker's task is also resubmitted
    once); one that fails both times gives a row with `status = "failed"`, and the rest go on.
    """
    if use_ray is None:
        use_ray = workers > 1 and ray_available()
    if use_ray and not ray_available():
        raise SuiteError("Ray is not installed (pip install 'laneloop[ray]', or run with --workers 1)")
    if workers > 1 and not use_ray:
        log.warning("Ray is not installed: running the %d episodes in this process, one at a time", len(tasks))
    run = with_retry(runner or run_task)
    rows = (
        _run_ray(tasks, workers, address, settings, progress, run)
        if use_ray
        else _run_here(tasks, settings, progress, run)
    )
    return sorted(rows, key=lambda r: r["index"])


def _run_here(
    tasks: list[Task], settings: Any, progress: Any, run: Callable[..., dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    for t in tasks:
        rows.append(run(t, settings))
        if progress is not None:
            progress(rows[-1], len(rows), len(tasks))
    return rows


def _run_ray(
    tasks: list[Task],
    workers: int,
    address: str | None,
    settings: Any,
    progress: Any,
    run: Callable[..., dict[str, Any]],
) -> list[dict[str, Any]]:
    import os

    import ray

    started = not ray.is_initialized()
    if started:
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}}
        kw: dict[str, Any] = {"runtime_env": env, "include_dashboard": False, "log_to_driver": False}
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=workers, **kw)
    try:
        remote = ray.remote(num_cpus=1, max_retries=1)(run)
        of = {}
        for t in tasks:
            of[remote.remote(t, settings)] = t
        pending = list(of)
        rows: list[dict[str, Any]] = []
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                rows.append(ray.get(done[0]))
            except Exception as e:  # noqa: BLE001 - the worker died twice: report the episode, go on
                rows.append(failed_row(of[done[0]], e))
            if progress is not None:
                progress(rows[-1], len(rows), len(tasks))
        return rows
    finally:
        if started:
            ray.shutdown()


def task_dict(t: Task) -> dict[str, Any]:
    return asdict(t)


__all__ = [
    "ORACLE", "SuiteError", "Task", "failed_row", "measure_latency", "ray_available", "resolve_model", "run_task",
    "run_tasks", "with_retry",
]  # fmt: skip
