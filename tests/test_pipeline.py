"""scripts/pipeline.py: the step runner skips what is up to date, reruns what changed, and a
failed step stops the run with one line while finished steps are kept (the CI smoke test of
the real chain, `pipeline.py --quick`, runs in .ci/run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pipeline", REPO / "scripts" / "pipeline.py")
pipeline = importlib.util.module_from_spec(_spec)
sys.modules["pipeline"] = pipeline  # dataclasses look their module up while the file runs
_spec.loader.exec_module(pipeline)


def _write_step(name: str, src: Path | None, dst: Path, log: Path) -> pipeline.Step:
    """A step that appends its name to `log` and writes `dst` (from `src` when given)."""
    code = (
        "import sys, pathlib; log, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]); "
        "src = pathlib.Path(sys.argv[3]) if len(sys.argv) > 3 else None; "
        "log.open('a').write(sys.argv[4] if len(sys.argv) > 4 else 'x'); "
        "dst.write_text((src.read_text() if src else '') + '+')"
    )
    argv = [sys.executable, "-c", code, str(log), str(dst)]
    if src is not None:
        argv += [str(src), name]
    return pipeline.Step(name, argv, [dst], [src] if src is not None else [])


def test_steps_skip_when_up_to_date_and_rerun_when_inputs_change(tmp_path: Path, capsys) -> None:
    log = tmp_path / "log"
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    steps = [_write_step("make a", None, a, log), _write_step("make b", a, b, log)]
    pipeline.run(steps, tmp_path, force=False)
    assert log.read_text() == "xmake b" and b.read_text() == "++"
    pipeline.run(steps, tmp_path, force=False)
    assert log.read_text() == "xmake b"  # nothing ran again
    assert capsys.readouterr().out.count("up to date") == 2
    b.unlink()  # a lost output is made again
    pipeline.run(steps, tmp_path, force=False)
    assert log.read_text() == "xmake bmake b"
    a.write_text("changed")  # a changed input reruns the steps that read it
    pipeline.run(steps, tmp_path, force=False)
    assert log.read_text().count("make b") == 3 and b.read_text() == "changed+"
    pipeline.run(steps, tmp_path, force=True)
    assert log.read_text() == "xmake bmake bmake bxmake b"


def test_a_failed_step_stops_with_one_line_and_a_rerun_continues(tmp_path: Path) -> None:
    log = tmp_path / "log"
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    good = _write_step("make a", None, a, log)
    bad = pipeline.Step("broken", [sys.executable, "-c", "raise SystemExit(3)"], [b], [a])
    with pytest.raises(SystemExit, match=r"error: step 'broken' failed with exit code 3 \(fix it and rerun"):
        pipeline.run([good, bad], tmp_path, force=False)
    assert a.exists() and log.read_text() == "x"
    silent = pipeline.Step("writes nothing", [sys.executable, "-c", "pass"], [b], [a])
    with pytest.raises(SystemExit, match="did not write"):
        pipeline.run([good, silent], tmp_path, force=False)
    pipeline.run([good, _write_step("make b", a, b, log)], tmp_path, force=False)
    assert log.read_text() == "xmake b"  # "make a" was kept, not redone


def test_plans_chain_every_cli_and_keep_outputs_in_the_work_folder(tmp_path: Path) -> None:
    for setting in (pipeline.QUICK, pipeline.FULL):
        steps = pipeline.plan(setting, tmp_path)
        scripts = [s.argv[1] for s in steps]
        for cli in ("collect/record.py", "train/train.py", "quant/ptq.py", "quant/qat.py", "quant/export.py",
                    "quant/compare.py", "run_sim.py"):  # fmt: skip
            assert cli in scripts
            assert (REPO / cli).exists()
        for s in steps:
            assert all(tmp_path in o.parents for o in s.outputs), s.name
        # every input is made by an earlier step (or is a recorded dataset)
        made: set[Path] = set()
        for s in steps:
            for i in s.inputs:
                assert i in made or any(i == o.parent for o in made), (s.name, i)
            made.update(s.outputs)
    qat = next(s for s in pipeline.plan(pipeline.FULL, tmp_path) if s.name == "QAT int8")
    assert qat.argv.count("--data") == 3  # every training town, not the last one only


def test_dry_run_prints_the_plan(capsys) -> None:
    assert pipeline.main(["--quick", "--dry-run", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "record Town01" in out and "run_sim.py on town03_clear" in out and "--threads 1" in out
