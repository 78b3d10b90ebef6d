"""Import TuSimple lane labels into our dataset format: binary lane masks (RoadLine, 24).

    python -m collect.importers tusimple ~/data/tusimple/test_set --json test_label.json --size 160x320 \\
        --out data/tusimple_test

ROOT is the folder the labels' `raw_file` paths start from (TuSimple's `train_set/` or
`test_set/`, holding `clips/`). Each label file has one JSON object per line:

    {"lanes": [[-2, -2, 632, 625, ...], ...], "h_samples": [240, 250, ...],
     "raw_file": "clips/0530/1492626047222176976_0/20.jpg"}

Lane i has the point (lanes[i][k], h_samples[k]) for every k where x is not -2 (TuSimple's
"no point"; any negative x is treated so). Consecutive points are joined into a polyline
and a missing point breaks it (no line is drawn across a gap). The polylines are drawn
`--line-width` source pixels wide (default 20: the pixel threshold of TuSimple's own
accuracy metric; a drawing convention of ours, not part of the dataset) as RoadLine (24);
every other pixel is Unlabeled (0), which for the binary lane task means "no lane marking".
TuSimple labels only the ego lane and its neighbours (up to 4-5 lanes) and no other
markings, so unlabelled markings farther out count as background.

All frames go to one split (`--split`, default test); one episode per clip folder.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from functools import partial
from pathlib import Path
from typing import Any, Unpack

import numpy as np

from collect.importers.convert import ImportOptions, ImportResult
from collect.importers.lanes import add_lane_arguments, import_lanes, lane_mask
from collect.importers.source import Source, SourceError, SourceFrame

DEFAULT_JSONS = ("label_data_*.json", "test_label.json")
DEFAULT_LINE_WIDTH = 20.0
KEYS = ("lanes", "h_samples", "raw_file")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def lane_polylines(xs: list[float], h_samples: list[float]) -> list[np.ndarray]:
    """One TuSimple lane -> its polylines (Nx2 x, y), split where a point is missing (x < 0)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, h_samples, strict=True):
        if x < 0:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((float(x), float(y)))
    return [np.asarray(r, dtype=np.float64) for r in runs if r]


def parse_label(line: str, where: str) -> tuple[str, list[np.ndarray]]:
    """One JSON line -> (raw_file, polylines); SourceError saying what is wrong at `where`."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise SourceError(
            f"{where}: malformed JSON ({e.msg}, column {e.colno}) (each line must be one JSON object; re-download it)"
        ) from None
    hint = "(TuSimple label lines hold lanes, h_samples and raw_file; is this a label file?)"
    if not isinstance(obj, dict):
        raise SourceError(f"{where}: a JSON {type(obj).__name__}, not an object {hint}")
    missing = [k for k in KEYS if k not in obj]
    if missing:
        raise SourceError(f"{where}: no {missing[0]!r} {hint}")
    raw_file, h_samples, lanes = obj["raw_file"], obj["h_samples"], obj["lanes"]
    if not isinstance(raw_file, str) or not raw_file:
        raise SourceError(f"{where}: raw_file is not a path {hint}")
    if not isinstance(h_samples, list) or not all(_is_number(y) for y in h_samples):
        raise SourceError(f"{where}: h_samples is not a list of numbers {hint}")
    if not isinstance(lanes, list):
        raise SourceError(f"{where}: lanes is not a list {hint}")
    polylines = []
    for i, xs in enumerate(lanes):
        if not isinstance(xs, list) or not all(_is_number(x) for x in xs):
            raise SourceError(f"{where}: lane {i} is not a list of numbers {hint}")
        if len(xs) != len(h_samples):
            raise SourceError(f"{where}: lane {i} has {len(xs)} x values for {len(h_samples)} h_samples {hint}")
        polylines += lane_polylines(xs, h_samples)
    return raw_file, polylines


def label_files(root: Path, patterns: list[str] | None) -> list[Path]:
    """The label JSON files: `patterns` (relative to ROOT unless absolute, globs allowed) or the defaults."""
    if patterns:
        files = []
        for pattern in patterns:
            found = sorted(Path(p) for p in glob.glob(os.path.join(glob.escape(str(root)), pattern)))
            if not found:
                raise SourceError(f"{root / pattern}: no such label file (--json paths are relative to ROOT)")
            files += found
        return list(dict.fromkeys(files))
    files = [p for pattern in DEFAULT_JSONS for p in sorted(root.glob(pattern))]
    if not files:
        raise SourceError(
            f"{root}: no {' or '.join(DEFAULT_JSONS)} (ROOT must be TuSimple's train_set/ or test_set/ folder "
            "holding clips/ and the label JSON; or name the label files with --json)"
        )
    return files


def find_frames(root: Path, jsons: list[str] | None, line_width: float) -> list[SourceFrame]:
    """Every labelled image of the label files, checked to exist; SourceError naming the file otherwise."""
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder (pass TuSimple's train_set/ or test_set/ folder as ROOT)")
    frames, seen = [], {}
    for path in label_files(root, jsons):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise SourceError(f"{path}: unreadable ({e}) (re-download it)") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path} line {n}"
            raw_file, polylines = parse_label(line, where)
            name = Path(raw_file).as_posix()
            if name in seen:
                raise SourceError(f"{where}: {raw_file} is labelled twice, first at {seen[name]} (pass each file once)")
            seen[name] = where
            image = root / raw_file
            if not image.is_file():
                raise SourceError(
                    f"{image} is missing: the image of {where} (ROOT must be the folder raw_file paths start from)"
                )
            frames.append(
                SourceFrame(
                    name=name,
                    episode=Path(raw_file).parent.as_posix(),
                    town="tusimple",
                    image=image,
                    labels=partial(_draw, tuple(polylines), line_width),
                )
            )
    return frames


def _draw(polylines: tuple[np.ndarray, ...], width: float, src: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    return lane_mask(polylines, src, size, width)


def import_tusimple(
    root: str | Path,
    out: str | Path,
    jsons: list[str] | None = None,
    line_width: float = DEFAULT_LINE_WIDTH,
    split: str = "test",
    **options: Unpack[ImportOptions],
) -> ImportResult:
    """Import the TuSimple frames labelled in `jsons` (default: every label file in `root`) into `out`."""
    root = Path(root)
    return import_lanes(
        find_frames(root, jsons, line_width),
        root,
        out,
        dataset="tusimple",
        title="TuSimple",
        # relative to ROOT, so collect.real_lanes can read the lanes back for the lane metrics
        details={"label_files": sorted({Path(os.path.relpath(p, root)).as_posix() for p in label_files(root, jsons)})},
        line_width=line_width,
        split=split,
        **options,
    )


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="append",
        metavar="FILE",
        help="label file relative to ROOT, globs allowed; repeat for several (default: label_data_*.json, "
        "test_label.json)",
    )
    add_lane_arguments(p, DEFAULT_LINE_WIDTH)


SOURCE = Source(
    name="tusimple",
    description="Import TuSimple lane labels (JSON lines) into a laneloop dataset folder as binary lane masks.",
    examples=(
        "python -m collect.importers tusimple ~/data/tusimple/test_set --json test_label.json --size 160x320 "
        "--out data/tusimple_test",
        "python -m collect.importers tusimple ~/data/tusimple/train_set --json 'label_data_*.json' --split train "
        "--out data/tusimple_train",
    ),
    function=import_tusimple,
    options=lambda a: {"jsons": a.json, "line_width": a.line_width, "split": a.split},
    add_arguments=_arguments,
)
