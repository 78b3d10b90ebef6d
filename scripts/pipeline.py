"""The whole laneloop pipeline, from nothing to a report, as one resumable command.

    python scripts/pipeline.py --quick            # a few minutes: the CI smoke test
    python scripts/pipeline.py                    # the full setting that made models/
    python scripts/pipeline.py --install          # ... and copy the models into models/

Steps: record train/val data (three towns, cycled weathers) and a held-out test town ->
train the float U-Net -> PTQ -> QAT -> ONNX export -> compare -> run_sim.py with all three
models on a held-out scenario -> report. Each step runs the project's own CLI and is skipped
when its outputs exist and its command has not changed (a stamp file per step), so a rerun
after a crash continues where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Step:
    name: str
    argv: list[str]  # relative to the repo root; the first item is a script or "-m"
    outputs: list[Path]
    inputs: list[Path] = field(default_factory=list)

    def key(self) -> str:
        """What the step's result depends on: its command and its inputs' sizes and times."""
        parts = [json.dumps(self.argv)]
        for p in self.inputs:
            files = sorted(p.rglob("*")) if p.is_dir() else [p]
            for f in files:
                if f.is_file():
                    st = f.stat()
                    parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Setting:
    """How much of everything: --quick for CI, the default for the shipped models."""

    train_towns: tuple[str, ...]
    test_town: str
    episodes: int
    frames: int
    every: int
    epochs: int
    qat_epochs: int
    qat_steps: int
    calib_frames: int
    base_width: int
    loop_frames: int
    scenario: str
    threads: int
    compare_runs: int
    compare_threads: str  # thread counts timed by quant/compare.py
    unseen_weathers: tuple[str, ...]  # one held-out test set per preset: the town and weathers training never saw
    unseen_episodes: int
    unseen_episode_frames: int


FULL = Setting(
    ("Town03", "Town05", "Town01"),
    "Town10HD",
    episodes=12,
    frames=480,
    every=5,
    epochs=2,
    qat_epochs=3,
    qat_steps=40,
    calib_frames=200,
    base_width=16,
    loop_frames=1200,
    scenario="town10_rain",
    threads=2,
    compare_runs=50,
    compare_threads="2,1",
    unseen_weathers=("WetNoon", "SoftRainSunset", "WetCloudyNight", "MidRainyNoon"),
    unseen_episodes=2,
    unseen_episode_frames=40,
)
QUICK = Setting(
    ("Town01",),
    "Town02",
    episodes=3,
    frames=36,
    every=2,
    epochs=1,
    qat_epochs=1,
    qat_steps=2,
    calib_frames=8,
    base_width=4,
    loop_frames=20,
    scenario="town03_clear",
    threads=2,
    compare_runs=3,
    compare_threads="1",
    unseen_weathers=("WetNoon",),
    unseen_episodes=1,
    unseen_episode_frames=4,
)


def plan(s: Setting, work: Path) -> list[Step]:
    """The steps of a setting, in order; every path lives under `work`."""
    py = [sys.executable]
    data = work / "data"
    steps: list[Step] = []
    train_sets = []
    for i, town in enumerate(s.train_towns):
        out = data / town.lower()
        train_sets.append(out)
        steps.append(
            Step(
                f"record {town}",
                py
                + [
                    "collect/record.py",
                    "--town",
                    town,
                    "--episodes",
                    str(s.episodes),
                    "--frames",
                    str(s.frames),
                    "--every",
                    str(s.every),
                    "--weather",
                    "cycle",
                    "--seed",
                    str(100 + i),
                    "--split",
                    "train=0.85,val=0.15,test=0",
                    "--out",
                    str(out),
                    "--no-progress",
                ],
                [out / "manifest.json"],
            )
        )
    test = data / f"{s.test_town.lower()}_test"
    steps.append(
        Step(
            f"record {s.test_town} (held out)",
            py
            + [
                "collect/record.py",
                "--town",
                s.test_town,
                "--episodes",
                str(max(s.episodes // 2, 1)),
                "--frames",
                str(max(s.frames // 2, 12)),
                "--every",
                str(s.every),
                "--weather",
                "cycle",
                "--seed",
                "900",
                "--split",
                "train=0,val=0,test=1",
                "--out",
                str(test),
                "--no-progress",
            ],
            [test / "manifest.json"],
        )
    )
    unseen = []  # the models' test IoU (models/README.md) is scored on these
    for i, weather in enumerate(s.unseen_weathers):
        out = data / f"test_{s.test_town.lower()}_{weather.lower()}"
        unseen.append(out)
        steps.append(
            Step(
                f"record {s.test_town} in {weather} (held out)",
                py
                + [
                    "collect/record.py",
                    "--town",
                    s.test_town,
                    "--episodes",
                    str(s.unseen_episodes),
                    "--episode-frames",
                    str(s.unseen_episode_frames),
                    "--every",
                    str(s.every),
                    "--weather",
                    weather,
                    "--seed",
                    str(901 + i),
                    "--split",
                    "test=1",
                    "--out",
                    str(out),
                    "--no-progress",
                ],
                [out / "manifest.json"],
            )
        )
    runs = work / "runs" / "unet_float"
    float_ckpt = runs / "best.pth"
    data_args = [a for d in train_sets for a in ("--data", str(d))]
    steps.append(
        Step(
            "train float U-Net",
            py
            + [
                "train/train.py",
                *data_args,
                "--arch",
                "unet",
                "--arch-kwargs",
                json.dumps({"base_width": s.base_width}),
                "--epochs",
                str(s.epochs),
                "--threads",
                str(s.threads),
                "--seed",
                "0",
                "--out",
                str(runs),
                "--overwrite",
                "--no-progress",
            ],
            [float_ckpt],
            train_sets,
        )
    )
    models = work / "models"
    ptq, qat = models / "unet_ptq.pth", models / "unet_qat.pth"
    steps.append(
        Step(
            "PTQ int8",
            py
            + [
                "quant/ptq.py",
                "--model",
                str(float_ckpt),
                *data_args,
                "--calib-frames",
                str(s.calib_frames),
                "--threads",
                str(s.threads),
                "--out",
                str(ptq),
                "--overwrite",
            ],
            [ptq],
            [float_ckpt],
        )
    )
    steps.append(
        Step(
            "QAT int8",
            py
            + [
                "quant/qat.py",
                "--model",
                str(float_ckpt),
                *data_args,
                "--epochs",
                str(s.qat_epochs),
                "--steps-per-epoch",
                str(s.qat_steps),
                "--threads",
                str(s.threads),
                "--run-dir",
                str(work / "runs" / "unet_qat"),
                "--out",
                str(qat),
                "--overwrite",
                "--no-progress",
            ],
            [qat],
            [float_ckpt],
        )
    )
    flt = models / "unet_float.pth"
    steps.append(
        Step(
            "copy float checkpoint",
            py + ["-c", ("import shutil,sys; shutil.copyfile(sys.argv[1], sys.argv[2])"), str(float_ckpt), str(flt)],
            [flt],
            [float_ckpt],
        )
    )
    onnx = models / "unet_qat.onnx"
    steps.append(
        Step(
            "ONNX export (QAT, QDQ)",
            py
            + [
                "quant/export.py",
                "--model",
                str(qat),
                "--format",
                "onnx",
                "--out",
                str(onnx),
                "--data",
                str(test),
                "--check-frames",
                "32",
                "--overwrite",
            ],
            [onnx],
            [qat, test / "manifest.json"],
        )
    )
    compare = work / "compare"
    steps.append(
        Step(
            "compare float / PTQ / QAT",
            py
            + [
                "quant/compare.py",
                "--models",
                str(flt),
                str(ptq),
                str(qat),
                "--data",
                str(test),
                "--split",
                "test",
                "--runs",
                str(s.compare_runs),
                "--thread-counts",
                s.compare_threads,
                "--out",
                str(compare),
                "--overwrite",
                "--no-progress",
            ],
            [compare.with_suffix(".md")],
            [flt, ptq, qat],
        )
    )
    unseen_args = [a for d in unseen for a in ("--data", str(d))]
    for model, runtime in ((flt, "torch"), (ptq, "torch"), (qat, "torch"), (onnx, "onnx")):
        out = work / "eval" / f"{model.name.replace('.', '_')}.json"
        steps.append(
            Step(
                f"evaluate {model.name} on the held-out weathers",
                py
                + [
                    "train/evaluate.py",
                    "--model",
                    str(model),
                    "--runtime",
                    runtime,
                    *unseen_args,
                    "--split",
                    "test",
                    "--threads",
                    str(s.threads),
                    "--json",
                    str(out),
                    "--overwrite",
                    "--no-progress",
                ],
                [out],
                [model] + [d / "manifest.json" for d in unseen],
            )
        )
    loop = work / "results" / "loop"
    steps.append(
        Step(
            f"run_sim.py on {s.scenario}",
            py
            + [
                "run_sim.py",
                "--model",
                str(flt),
                "--model",
                str(ptq),
                "--model",
                str(qat),
                "--scenario",
                s.scenario,
                "--frames",
                str(s.loop_frames),
                "--threads",
                str(s.threads),
                "--out",
                str(loop),
                "--overwrite",
                "--runtime",
                "torch",  # the three schemes in one runtime (auto would move the QAT slot to its .onnx)
                "--no-progress",
            ],
            [loop / "summary.json"],
            [flt, ptq, qat],
        )
    )
    return steps


def run(steps: list[Step], work: Path, force: bool) -> None:
    stamps = work / ".stamps"
    stamps.mkdir(parents=True, exist_ok=True)
    for i, step in enumerate(steps, 1):
        stamp = stamps / (hashlib.sha1(step.name.encode()).hexdigest()[:12] + ".json")
        key = step.key()
        done = stamp.exists() and json.loads(stamp.read_text()).get("key") == key
        if done and all(o.exists() for o in step.outputs) and not force:
            print(f"[{i}/{len(steps)}] {step.name}: up to date", flush=True)
            continue
        print(f"[{i}/{len(steps)}] {step.name}: {' '.join(step.argv[1:])}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(step.argv, cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(
                f"error: step '{step.name}' failed with exit code {proc.returncode} "
                f"(fix it and rerun: finished steps are kept)"
            )
        missing = [str(o) for o in step.outputs if not o.exists()]
        if missing:
            raise SystemExit(f"error: step '{step.name}' did not write {', '.join(missing)} (a bug: report it)")
        seconds = time.perf_counter() - t0
        stamp.write_text(json.dumps({"key": key, "seconds": round(seconds, 1), "argv": step.argv}, indent=1))
        print(f"    done in {seconds:.0f} s", flush=True)


def summary(work: Path) -> str:
    """Markdown table of the held-out test IoU of every evaluated model (work/eval/*.json)."""
    lines = ["| model | runtime | test lane IoU | mean frame IoU | frames |", "|---|---|---:|---:|---:|"]
    for f in sorted((work / "eval").glob("*.json")):
        r = json.loads(f.read_text())
        lines.append(
            f"| {Path(r['model']).name} | {r['runtime']} | {r['iou']:.4f} | {r['mean_frame_iou']:.4f} | {r['frames']} |"
        )
    return "\n".join(lines) + "\n"


def install(work: Path) -> None:
    """Copy the pipeline's models into models/ (the shipped ones)."""
    dest = ROOT / "models"
    dest.mkdir(exist_ok=True)
    for name in ("unet_float.pth", "unet_ptq.pth", "unet_qat.pth", "unet_qat.onnx"):
        src = work / "models" / name
        if src.exists():
            shutil.copyfile(src, dest / name)
            print(f"installed models/{name} ({src.stat().st_size / 2**20:.2f} MiB)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny setting (a few minutes; the CI smoke test)")
    ap.add_argument("--work", help="working folder (default build/pipeline or build/pipeline-quick)")
    ap.add_argument("--force", action="store_true", help="rerun every step even when up to date")
    ap.add_argument("--install", action="store_true", help="copy the resulting models into models/")
    ap.add_argument("--dry-run", action="store_true", help="print the steps and stop")
    ap.add_argument("--threads", type=int, help="torch intra-op threads of every step (default: the setting's, 2)")
    args = ap.parse_args(argv)
    setting = QUICK if args.quick else FULL
    if args.threads:
        setting = replace(setting, threads=args.threads)
    work = Path(args.work) if args.work else ROOT / "build" / ("pipeline-quick" if args.quick else "pipeline")
    work = work.resolve()
    steps = plan(setting, work)
    if args.dry_run:
        for s in steps:
            print(f"{s.name}: {' '.join(s.argv[1:])}")
        return 0
    try:
        run(steps, work, args.force)
    except KeyboardInterrupt:
        print("error: interrupted (rerun the same command to continue)", file=sys.stderr)
        return 130
    table = summary(work)
    (work / "summary.md").write_text(table)
    print(table, end="")
    if args.install:
        install(work)
    print(f"pipeline finished: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
