"""``runtime="auto"``: time the runtimes that can run a model file here and keep the fastest.

Candidates for a file:

- ``.pth``: torch (compiled unless ``compile=False``), plus ONNX Runtime and OpenVINO on a
  sibling ``.onnx`` with the same stem whose stored metadata has the same quant scheme
  (e.g. ``models/unet_qat.pth`` and ``models/unet_qat.onnx``);
- ``.onnx``: ONNX Runtime and OpenVINO.

A runtime whose package is not installed is not a candidate. Each candidate is loaded,
warmed up, then timed on N=10 `predict` calls on a zero frame (median ms); the fastest wins
(`choose`; a tie goes to the first in `PREFERENCE`). A single candidate is taken untimed
and unannounced.

The choice is cached as JSON in ``<cache>/runtime/<key>.json`` where ``<cache>`` is
``$LANELOOP_CACHE``, else ``$XDG_CACHE_HOME/laneloop``, else ``~/.cache/laneloop``, and
the key hashes what could change the answer: the files' sha256 and size, threads, input
size, torch compile, this CPU's `cpu_info().signature()` and the torch / onnxruntime /
openvino versions. A corrupt cache file is ignored and rewritten. One line goes to stderr:
``runtime auto: openvino (openvino 12.1 ms, onnx 20.3 ms) [measured]`` (or ``[cached]``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from perception.checkpoint import CheckpointError, load_checkpoint

#: Tie-break order of `choose` (and the order candidates are timed and printed in).
PREFERENCE = ("torch", "onnx", "openvino")
CALLS = 10
CACHE_VERSION = 1


@dataclass(frozen=True)
class Candidate:
    runtime: str
    path: Path


def choose(timings: dict[str, float]) -> str:
    """The fastest runtime of `timings` (runtime -> median ms); a tie goes to the first in
    `PREFERENCE` (runtimes not in it come after, by name)."""
    if not timings:
        raise ValueError("no runtime timings to choose from")
    rank = {r: i for i, r in enumerate(PREFERENCE)}
    return min(timings, key=lambda r: (timings[r], rank.get(r, len(rank)), r))


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _scheme(path: Path) -> str | None:
    from perception.onnx_runtime import read_onnx_meta

    try:
        meta = read_onnx_meta(path) if path.suffix == ".onnx" else load_checkpoint(path)[1]
    except CheckpointError:
        return None
    return meta.quant.scheme


def candidates(path: str | os.PathLike[str]) -> list[Candidate]:
    """The (runtime, file) pairs that can run `path` on this machine, in `PREFERENCE` order."""
    path = Path(path)
    onnx_file: Path | None = None
    out = []
    if path.suffix == ".onnx":
        onnx_file = path
    else:
        out.append(Candidate("torch", path))
        sibling = path.with_suffix(".onnx")
        sibling_scheme = _scheme(sibling) if sibling.is_file() else None
        if sibling_scheme is not None and sibling_scheme == _scheme(path):
            onnx_file = sibling
    if onnx_file is not None:
        if _installed("onnxruntime"):
            out.append(Candidate("onnx", onnx_file))
        if _installed("openvino"):
            out.append(Candidate("openvino", onnx_file))
    if not out:
        raise CheckpointError(f"no runtime can run {path} here (install onnxruntime or openvino, or give a .pth)")
    return out


def cache_dir() -> Path:
    """``$LANELOOP_CACHE`` or ``$XDG_CACHE_HOME/laneloop`` or ``~/.cache/laneloop``, + ``/runtime``."""
    if os.environ.get("LANELOOP_CACHE"):
        root = Path(os.environ["LANELOOP_CACHE"])
    elif os.environ.get("XDG_CACHE_HOME"):
        root = Path(os.environ["XDG_CACHE_HOME"]) / "laneloop"
    else:
        root = Path("~/.cache/laneloop")
    return root.expanduser() / "runtime"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Installed versions of the runtimes' packages ("absent" when not installed)."""
    out = {}
    for pkg in ("torch", "onnxruntime", "openvino"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def cache_key(
    files: list[Path],
    threads: int,
    input_size: tuple[int, int] | None,
    compile: bool | str = True,
    cpu_signature: str | None = None,
    package_versions: dict[str, str] | None = None,
) -> str:
    """sha256 of everything that could change which runtime is fastest."""
    from perception.cpu import cpu_info

    fields = {
        "v": CACHE_VERSION,
        "files": [[file_sha256(f), f.stat().st_size] for f in sorted(set(files))],
        "threads": int(threads),
        "input_size": list(input_size) if input_size else None,
        "compile": compile if isinstance(compile, str) else bool(compile),
        "cpu": cpu_signature if cpu_signature is not None else cpu_info().signature(),
        "versions": package_versions if package_versions is not None else versions(),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def time_predictor(predictor: Any, calls: int = CALLS) -> float:
    """Median ms of `calls` `predict` calls on a zero frame at the model's size, after warmup."""
    h, w = predictor.input_size
    frame = np.zeros((h, w, 3), np.uint8)
    predictor.warmup()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        predictor.predict(frame)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return float(statistics.median(times))


def _read_cache(path: Path, cands: list[Candidate]) -> tuple[str, dict[str, float]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        runtime = data["runtime"]
        timings = {str(k): float(v) for k, v in data["timings"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if runtime not in {c.runtime for c in cands} or runtime not in timings:
        return None
    return runtime, timings


def _line(runtime: str, timings: dict[str, float], how: str) -> str:
    ordered = sorted(timings, key=lambda r: timings[r])
    return f"runtime auto: {runtime} ({', '.join(f'{r} {timings[r]:.1f} ms' for r in ordered)}) [{how}]"


def auto_predictor(
    path: str | os.PathLike[str],
    threads: int,
    input_size: tuple[int, int] | None = None,
    compile: bool | str = True,
) -> Any:
    """The `Predictor` of the fastest runtime for `path` (measured once, then cached)."""
    from perception.predictor import load_predictor

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path} (check the path)")
    cands = candidates(path)

    def load(c: Candidate) -> Any:
        kw = {"compile": compile} if c.runtime == "torch" else {}
        return load_predictor(c.path, runtime=c.runtime, threads=threads, input_size=input_size, **kw)

    if len(cands) == 1:  # nothing to choose: no timing, no cache, no line (a plain .pth stays quiet)
        return load(cands[0])
    key = cache_key([c.path for c in cands], threads, input_size, compile)
    cache_file = cache_dir() / f"{key}.json"
    cached = _read_cache(cache_file, cands)
    if cached is not None:
        runtime, timings = cached
        winner = next(c for c in cands if c.runtime == runtime)
        print(_line(runtime, timings, "cached"), file=sys.stderr)
        return load(winner)
    from plumbing import atomic_write_json

    preds: dict[str, Any] = {}
    timings: dict[str, float] = {}
    for c in cands:
        preds[c.runtime] = load(c)
        timings[c.runtime] = time_predictor(preds[c.runtime])
    runtime = choose(timings)
    winner = next(c for c in cands if c.runtime == runtime)
    record = {
        "runtime": runtime,
        "file": str(winner.path),
        "timings": timings,
        "threads": threads,
        "input_size": list(preds[runtime].input_size),
        "calls": CALLS,
    }
    try:
        atomic_write_json(cache_file, record)
    except OSError as exc:  # a read-only cache folder only costs a re-measurement next time
        print(f"runtime auto: cannot write the cache {cache_file}: {exc}", file=sys.stderr)
    print(_line(runtime, timings, "measured"), file=sys.stderr)
    return preds[runtime]


__all__ = [
    "PREFERENCE",
    "Candidate",
    "auto_predictor",
    "cache_dir",
    "cache_key",
    "candidates",
    "choose",
    "time_predictor",
    "versions",
]
