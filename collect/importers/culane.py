"""Import CULane lane labels into our dataset format: binary lane masks (RoadLine, 24).

    python -m collect.importers culane ~/data/CULane --list list/test.txt --size 160x320 --out data/culane_test

ROOT is CULane's folder as unpacked (driver_*_30frame/, list/, ...). The list file (relative
to ROOT unless absolute) names one image per line by its path under ROOT, e.g.
`/driver_100_30frame/05251517_0433.MP4/00000.jpg` (lines of `train_gt.txt` carry more
columns after it; only the first is read). Next to each image, `00000.lines.txt` holds one
lane per line as "x1 y1 x2 y2 ..." in image pixels; an empty file is a frame without lanes.
Each lane's points are joined into a polyline drawn `--line-width` source pixels wide
(default 30, the width CULane's official evaluation draws lanes with) as RoadLine (24);
every other pixel is Unlabeled (0). CULane labels at most four lanes (the ego lane and its
neighbours), so other markings count as background.

All frames go to one split (`--split`, default test); one episode per video folder
(`*.MP4/`), the index's town is the driver folder.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Unpack

import numpy as np

from collect.importers.convert import ImportOptions, ImportResult
from collect.importers.lanes import add_lane_arguments, import_lanes, lane_mask
from collect.importers.source import Source, SourceError, SourceFrame

DEFAULT_LINE_WIDTH = 30.0
LINES_SUFFIX = ".lines.txt"


def read_lines_file(path: Path) -> list[np.ndarray]:
    """A CULane `*.lines.txt` -> one Nx2 (x, y) array per lane; SourceError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: unreadable ({e}) (re-extract the annotation archive)") from None
    lanes = []
    for n, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            raise SourceError(f"{path} line {n}: not a list of numbers (expected 'x1 y1 x2 y2 ...')") from None
        if len(values) % 2 or not np.all(np.isfinite(values)):
            raise SourceError(f"{path} line {n}: {len(values)} numbers, not x y pairs (expected 'x1 y1 x2 y2 ...')")
        lanes.append(np.asarray(values, dtype=np.float64).reshape(-1, 2))
    return lanes


def find_frames(root: Path, list_file: str | Path, line_width: float) -> list[SourceFrame]:
    """The images the list names, each checked to have its image and lines file."""
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder (pass CULane's folder, the one holding list/ and driver_*/)")
    list_path = root / list_file
    if not list_path.is_file():
        raise SourceError(f"{list_path}: no such list file (--list is relative to ROOT, e.g. list/test.txt)")
    try:
        entries = list_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{list_path}: unreadable ({e})") from None
    frames, seen = [], set()
    for n, entry in enumerate(entries, 1):
        tokens = entry.split()
        if not tokens:
            continue
        name = tokens[0].lstrip("/")
        if not name.lower().endswith((".jpg", ".png")):
            raise SourceError(f"{list_path} line {n}: {tokens[0]!r} is not an image path (is this a CULane list?)")
        if name in seen:
            continue  # the official lists name each image once; tolerate a repeat
        seen.add(name)
        image = root / name
        if not image.is_file():
            raise SourceError(f"{image} is missing: named by {list_path} line {n} (is ROOT CULane's folder?)")
        lines = image.with_name(image.stem + LINES_SUFFIX)
        if not lines.is_file():
            raise SourceError(f"{lines} is missing: the lane file of {image} (unpack CULane's annotations into ROOT)")
        parts = Path(name).parts
        frames.append(
            SourceFrame(
                name=Path(name).as_posix(),
                episode=Path(name).parent.as_posix(),
                town=parts[0] if len(parts) > 1 else "culane",
                image=image,
                labels=partial(_draw, lines, line_width),
            )
        )
    return frames


def _draw(lines: Path, width: float, src: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    return lane_mask(read_lines_file(lines), src, size, width)


def import_culane(
    root: str | Path,
    out: str | Path,
    list_file: str | Path = "list/test.txt",
    line_width: float = DEFAULT_LINE_WIDTH,
    split: str = "test",
    **options: Unpack[ImportOptions],
) -> ImportResult:
    """Import the CULane frames `list_file` names (module doc) into the dataset folder `out`."""
    root = Path(root)
    return import_lanes(
        find_frames(root, list_file, line_width),
        root,
        out,
        dataset="culane",
        title="CULane",
        details={"list": Path(list_file).as_posix()},
        line_width=line_width,
        split=split,
        **options,
    )


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--list", required=True, metavar="FILE", help="image list relative to ROOT, e.g. list/test.txt")
    add_lane_arguments(p, DEFAULT_LINE_WIDTH)


SOURCE = Source(
    name="culane",
    description="Import CULane lane labels (*.lines.txt) into a laneloop dataset folder as binary lane masks.",
    examples=(
        "python -m collect.importers culane ~/data/CULane --list list/test.txt --size 160x320 --out data/culane_test",
        "python -m collect.importers culane ~/data/CULane --list list/test_split/test8_night.txt --size 160x320 "
        "--out data/culane_night",
    ),
    function=import_culane,
    options=lambda a: {"list_file": a.list, "line_width": a.line_width, "split": a.split},
    add_arguments=_arguments,
)
