"""What the lane-point datasets (TuSimple, CULane) share: polylines drawn as RoadLine masks,
their --line-width and --split options, and how their manifests describe the labels.

Their labels are lists of points along each lane; we join them into polylines drawn
`--line-width` source pixels wide as RoadLine (24), every other pixel Unlabeled (0), which
for the binary lane task means "no lane marking".
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Unpack

import numpy as np

from collect.importers.convert import ImportOptions, ImportResult, import_frames
from collect.importers.source import SourceFrame
from dataset.format import SPLITS
from sim.tags import ROAD_LINE


def lane_mask(
    lanes: Iterable[np.ndarray], src_size: tuple[int, int], size: tuple[int, int], width: float
) -> np.ndarray:
    """Lane polylines -> HxW uint8 label image: RoadLine (24) on the lanes, Unlabeled (0) elsewhere.

    `lanes` are Nx2 arrays of (x, y) points in source-image pixels (x = column, y = row,
    pixel centres at integers); a single point is a dot. An output pixel is lane when its
    centre, mapped back into source pixels, lies within `width / 2` of a polyline, so the
    width is in source pixels whatever `size` is (CULane's 30 px means 30 px at 1640x590),
    and drawing at another size is not a blurred resize of the full-size mask. A vertical
    lane through pixel centres is thus 2*floor(width/2)+1 pixels wide at the source size.
    """
    h, w = size
    sy, sx = src_size[0] / h, src_size[1] / w
    half = width / 2.0
    r2 = half * half + 1e-9
    hit = np.zeros((h, w), dtype=bool)
    for pts in lanes:
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        if len(p) == 0:
            continue
        ends = zip(p[:-1], p[1:], strict=True) if len(p) > 1 else [(p[0], p[0])]
        for a, b in ends:
            lo, hi = np.minimum(a, b) - half, np.maximum(a, b) + half
            # Output pixels whose centres map into [lo, hi], widened by one (the test below decides).
            j0 = max(0, math.floor((lo[0] + 0.5) / sx - 0.5) - 1)
            j1 = min(w - 1, math.ceil((hi[0] + 0.5) / sx - 0.5) + 1)
            i0 = max(0, math.floor((lo[1] + 0.5) / sy - 0.5) - 1)
            i1 = min(h - 1, math.ceil((hi[1] + 0.5) / sy - 0.5) + 1)
            if j0 > j1 or i0 > i1:
                continue
            px = ((np.arange(j0, j1 + 1) + 0.5) * sx - 0.5)[None, :] - a[0]
            py = ((np.arange(i0, i1 + 1) + 0.5) * sy - 0.5)[:, None] - a[1]
            d = b - a
            length2 = float(d @ d)
            t = np.clip((px * d[0] + py * d[1]) / length2, 0.0, 1.0) if length2 > 0 else 0.0
            dx, dy = px - t * d[0], py - t * d[1]
            hit[i0 : i1 + 1, j0 : j1 + 1] |= dx * dx + dy * dy <= r2
    return np.where(hit, np.uint8(ROAD_LINE), np.uint8(0))


def import_lanes(
    frames: Sequence[SourceFrame],
    root: Path,
    out: str | Path,
    *,
    dataset: str,
    title: str,
    details: dict[str, Any],
    line_width: float,
    split: str,
    **options: Unpack[ImportOptions],
) -> ImportResult:
    """`import_frames` for a lane-point dataset: lane labels only, described the same way for all.

    `details` are the dataset's own `source` entries (its label files or list).
    """
    source = {
        "importer": f"collect.import_{dataset}",  # the old command (still working): imports stay byte-identical
        "origin": str(root),
        **details,
        "line_width": line_width,
        "labels": (
            f"{title} lane points joined into polylines {line_width:g} source pixels wide, RoadLine (24); "
            "every other pixel Unlabeled (0) = no lane marking; only the labelled lanes are marked"
        ),
        "task_note": f"{title} labels lane markings only: other tags are not annotated",
    }
    return import_frames(
        frames, out, dataset=dataset, split=split, annotated_tags=(ROAD_LINE,), source=source, **options
    )


def positive_float(text: str) -> float:
    """argparse type for --line-width."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of pixels, got {text!r}")
    return value


def add_lane_arguments(parser: argparse.ArgumentParser, default_width: float) -> None:
    """--line-width and --split of the lane-point datasets (TuSimple, CULane), every frame in one split."""
    parser.add_argument(
        "--line-width",
        type=positive_float,
        default=default_width,
        metavar="PX",
        help=f"lane width in source pixels (default {default_width:g})",
    )
    parser.add_argument("--split", default="test", choices=SPLITS, help="our split (default test)")


__all__ = ["add_lane_arguments", "import_lanes", "lane_mask", "positive_float"]
