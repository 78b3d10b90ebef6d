"""The sweep: episodes repeat bit for bit, Ray gives the same rows as one process, the CLI's files."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harness.drive.suite import ORACLE, Task, ray_available, run_tasks
from harness.drive.sweep import JOURNAL, run_sweep, write_parquet


def _routes(tmp_path: Path) -> list[str]:
    files = []
    for name, start in (("tiny_a", 0), ("tiny_b", 3)):
        f = tmp_path / f"{name}.toml"
        f.write_text(f'town = "Town02"\nstart = {start}\nlength_m = 35\ntraffic = 3\nseed = 5\n')
        files.append(str(f))
    return files


def _strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Task], list[dict]]:
    files = _routes(tmp_path_factory.mktemp("routes"))
    tasks = [Task(i, ORACLE, f, latency_ms=lat) for i, (f, lat) in enumerate([(files[0], 0.0), (files[1], 120.0)])]
    return tasks, run_tasks(tasks, workers=1, use_ray=False)


def test_rows_in_task_order_and_latency_is_charged(tiny: tuple[list[Task], list[dict]]) -> None:
    tasks, rows = tiny
    assert [r["index"] for r in rows] == [0, 1] and [r["route"] for r in rows] == ["tiny_a", "tiny_b"]
    a, b = rows
    assert a["end"] == "completed" and a["route_completion"] == 100.0 and a["miou"] == 1.0
    assert a["inferred_frames"] == a["frames"] and a["deadline_misses"] == 0
    # 120 ms at 20 Hz: the model is busy for two more frames after each one it starts.
    assert b["inferred_frames"] == math.ceil(b["frames"] / 3)
    assert b["deadline_misses"] == b["frames"]


def test_same_tasks_same_rows(tiny: tuple[list[Task], list[dict]]) -> None:
    tasks, rows = tiny
    assert _strip(run_tasks(tasks[::-1], workers=1, use_ray=False)) == _strip(rows)


@pytest.mark.slow  # starting a local Ray takes 20-60 s on a loaded 2-core box
@pytest.mark.skipif(not ray_available(), reason="Ray is not installed (pip install 'laneloop[ray]')")
def test_ray_gives_the_rows_of_one_process(tiny: tuple[list[Task], list[dict]]) -> None:
    # In a fresh process: Ray's start aborts the interpreter when the carla client library is
    # loaded in it (as other test files do), which would take the whole session down.
    tasks, rows = tiny
    script = (
        "import json, sys\n"
        "from harness.drive.suite import Task, run_tasks\n"
        "tasks = [Task(**{**t, 'together': tuple(t['together'])}) for t in json.loads(sys.argv[1])]\n"
        "print(json.dumps(run_tasks(tasks, workers=2, use_ray=True)))\n"
    )
    arg = json.dumps([dataclasses.asdict(t) for t in tasks])
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", script, arg], capture_output=True, text=True, env=env, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _strip(json.loads(done.stdout.strip().splitlines()[-1])) == json.loads(json.dumps(_strip(rows)))


def test_cli_writes_the_table_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.drive.__main__ import main

    _routes(tmp_path)
    out = tmp_path / "run"
    argv = ["--model", ORACLE, "--routes", str(tmp_path), "--only", "tiny_a", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    doc = json.loads((out / "drive.json").read_text())
    assert doc["models"]["oracle"]["driving_score"] == 100.0 and doc["latency_ms"] == {"oracle": 0.0}
    assert (out / "episodes.csv").read_text().splitlines()[1].startswith("tiny_a,oracle,")
    assert "| oracle | 0.0 | 100.0 | 100.0 |" in (out / "report.md").read_text()
    capsys.readouterr()
    assert main(argv) == 1
    assert "already holds a run" in capsys.readouterr().err
    # --resume: the journal already holds the one episode, so nothing runs again and the table is the same
    assert main([*argv, "--resume"]) == 0
    again = json.loads((out / "drive.json").read_text())
    assert again["skipped_as_finished"] == 1 and again["models"] == doc["models"]
    assert pq.read_table(out / "episodes.parquet").column("driving_score").to_pylist() == [100.0]


def _flaky(fails: dict[int, int], calls: list[int]):
    """A stand-in episode runner: task i raises its first fails[i] times, else a row with its index."""

    def run(task: Task, settings: object = None) -> dict:
        calls.append(task.index)
        if calls.count(task.index) <= fails.get(task.index, 0):
            raise RuntimeError(f"simulator lost (task {task.index})\nsecond line")
        return {
            "index": task.index,
            "model": "m",
            "route": "r",
            "driving_score": 50.0 + task.index,
            "events": [{"k": 1}],
        }

    return run


def test_a_failed_episode_is_retried_once_then_reported_and_the_sweep_goes_on() -> None:
    tasks = [Task(i, "m.pth", f"r{i}.toml", 0.0) for i in range(3)]
    calls: list[int] = []
    rows = run_tasks(tasks, use_ray=False, runner=_flaky({0: 1, 1: 5}, calls))
    assert sorted(calls) == [0, 0, 1, 1, 2]  # 0 fails once and passes; 1 fails twice: never a third try
    assert rows[0]["status"] == "ok" and rows[0]["attempts"] == 2 and rows[2]["attempts"] == 1
    assert rows[1]["status"] == "failed" and rows[1]["error"] == "RuntimeError: simulator lost (task 1)"
    assert rows[1]["route"] == "r1" and rows[1]["model"] == "m"


def test_resume_runs_only_what_the_journal_lacks(tmp_path: Path) -> None:
    tasks = [Task(i, "m.pth", f"r{i}.toml", 10.0 * i) for i in range(3)]

    def execute(calls: list[int], fails: dict[int, int]):
        return lambda todo, **kw: run_tasks(todo, use_ray=False, runner=_flaky(fails, calls), **kw)

    first: list[int] = []
    rows, skipped = run_sweep(tasks, tmp_path, execute=execute(first, {2: 9}))
    assert skipped == 0 and [r.get("status") for r in rows] == ["ok", "ok", "failed"]
    with open(tmp_path / JOURNAL, "a") as f:
        f.write('{"key": "torn by a cras')  # a crash mid-line: ignored on resume
    second: list[int] = []
    rows2, skipped2 = run_sweep(tasks, tmp_path, resume=True, execute=execute(second, {}))
    assert skipped2 == 2 and second == [2]  # only the failed episode runs again
    assert [r["driving_score"] for r in rows2] == [50.0, 51.0, 52.0] and [r["index"] for r in rows2] == [0, 1, 2]
    # a changed latency is another episode: not skipped
    third: list[int] = []
    moved = [dataclasses.replace(t, latency_ms=t.latency_ms + 1) if t.index == 0 else t for t in tasks]
    run_sweep(moved, tmp_path, resume=True, execute=execute(third, {}))
    assert third == [0]
    write_parquet(tmp_path / "e.parquet", rows + rows2)
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.num_rows == 6 and table.column("status").to_pylist()[2] == "failed"
    assert (
        table.column("driving_score").to_pylist()[2] is None and table.column("events").to_pylist()[0] == '[{"k": 1}]'
    )
