"""A sweep that survives: finished episodes journalled as they arrive, skipped when rerun.

Each finished episode is one JSON line in `episodes.jsonl` (flushed at once), keyed by what
fixes its result: model, route file, seed, stated latency, threads, runtime and the episode
settings. A rerun into the same folder with `resume=True` reads the journal (a torn last line
from a crash is ignored) and runs only the episodes whose key it lacks; so a sweep killed
after 90 of 100 episodes costs 10 more. An episode that fails twice (`suite.with_retry`, and
Ray's own retry of a dead worker) has a row with `status = "failed"` and the error; failed
rows are not journalled, so the next resume tries them again. `episodes.parquet` holds every
row of the sweep (nested fields as JSON text); the tables use only the rows that finished.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.drive.suite import Task

JOURNAL = "episodes.jsonl"
PARQUET = "episodes.parquet"


def task_key(task: Task, settings: Any = None) -> str:
    """What fixes an episode's row (not its index: a task keeps its key when the sweep grows)."""
    d = asdict(task)
    d.pop("index")
    d.pop("together")  # which other models share the worker changes no row
    d["route"] = str(Path(d["route"]).resolve())
    d["settings"] = asdict(settings) if settings is not None else None
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:20]


class Journal:
    """The finished episodes of a sweep folder, one JSON line each, appended as they finish."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / JOURNAL

    def load(self) -> dict[str, dict[str, Any]]:
        """key -> row of every complete line (a torn last line, from a crash, is skipped)."""
        out: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return out
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "key" in row:
                out[row["key"]] = row
        return out

    def start(self, keep: bool) -> None:
        """Begin writing: keep the journal (resume) or start it empty."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not keep or not self.path.is_file():
            self.path.write_text("", encoding="utf-8")
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # a torn last line (a crash mid-write): cut it, or the next line joins it
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=float) + "\n")
            f.flush()


class SweepProgress:
    """One stderr line per finished episode for the whole sweep: n/total, skipped, failed, elapsed, ETA."""

    def __init__(self, total: int, skipped: int, stream: Any = None) -> None:
        self.total, self.skipped, self.failed = total, skipped, 0
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.ran = 0

    def __call__(self, row: dict[str, Any], done: int, total: int) -> None:
        self.ran += 1
        self.failed += int(row.get("status") == "failed")
        n = self.skipped + self.ran
        el = time.perf_counter() - self.t0
        left = self.total - n
        eta = el / self.ran * left if self.ran else math.nan
        what = (
            f"FAILED ({row.get('error', '')})"
            if row.get("status") == "failed"
            else f"DS {row['driving_score']:.1f}, RC {row['route_completion']:.1f} %, {row['end']}"
        )
        print(
            f"[{n}/{self.total}] {row['model']} on {row['route']}: {what}; "
            f"{self.skipped} skipped, {self.failed} failed, {el:.0f} s elapsed, ETA {eta:.0f} s",
            file=self.stream,
            flush=True,
        )


def run_sweep(
    tasks: list[Task],
    folder: Path,
    settings: Any = None,
    *,
    resume: bool = False,
    execute: Callable[..., list[dict[str, Any]]] | None = None,
    progress: Callable[[dict[str, Any], int, int], None] | None = None,
    **engine: Any,
) -> tuple[list[dict[str, Any]], int]:
    """Every task's row in task order, and how many were skipped as already finished.

    `execute(todo, settings=..., progress=...)` runs the missing tasks (default
    `suite.run_tasks` with `engine`'s workers/use_ray/address); each row it reports is
    journalled before `progress` sees it.
    """
    from harness.drive.suite import run_tasks

    journal = Journal(folder)
    finished = journal.load() if resume else {}
    journal.start(keep=resume)
    keys = {t.index: task_key(t, settings) for t in tasks}
    old = {t.index: finished[keys[t.index]] for t in tasks if keys[t.index] in finished}
    todo = [t for t in tasks if t.index not in old]

    def on_row(row: dict[str, Any], done: int, total: int) -> None:
        row["key"] = keys[row["index"]]
        if row.get("status") != "failed":
            journal.append(row)
        if progress is not None:
            progress(row, done, total)

    run = execute or run_tasks
    new = run(todo, settings=settings, progress=on_row, **engine) if todo else []
    rows = [dict(r, index=i) for i, r in old.items()] + list(new)
    return sorted(rows, key=lambda r: r["index"]), len(old)


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    """One Parquet of the sweep: one row per episode, dicts and lists as JSON text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list[Any]] = {}
    for r in rows:
        for k in r:
            cols.setdefault(k, [])
    for r in rows:
        for k, v in cols.items():
            x = r.get(k)
            v.append(json.dumps(x, default=float) if isinstance(x, dict | list) else x)
    pq.write_table(pa.table(cols), path)


__all__ = ["JOURNAL", "PARQUET", "Journal", "SweepProgress", "run_sweep", "task_key", "write_parquet"]
