"""What the real-dataset importers share: lane drawing, frame conversion, atomic publication, CLI.

The importers (`import_cityscapes`, `import_tusimple`, `import_culane`) only know their
dataset's layout: each lists `SourceFrame`s (an image and a way to make its label image) and
hands them to `import_frames`, which writes our dataset format (dataset/format.py) into a
hidden sibling folder of `--out` and moves it into place only once every frame, the index
and the manifest are complete. A failure or Ctrl-C deletes that folder: `--out` is never
half-written, and an old dataset there is only removed (with `--overwrite`) after the new
one is whole.

Imported folders differ from recordings in three ways, all declared in the manifest:
`backend` is the dataset's name, `source` says where the frames came from and how their
labels were made (and maps each frame id to its source file), and `annotated_tags` lists the
tags the labels define, so that `LaneDataset` refuses a task the labels cannot score (the
lane task on Cityscapes). Index columns the dataset does not know (pose, speed, simulation
time, lane id) are null.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dataset.format import (
    INDEX_NAME,
    LABEL_DIR,
    MANIFEST_NAME,
    RGB_DIR,
    SPLITS,
    STATUS_COMPLETE,
    DatasetError,
    EpisodePlan,
    Manifest,
    encode_label_png,
    encode_rgb_png,
    frame_id,
    label_relpath,
    rgb_relpath,
    tag_histogram,
    write_index,
    write_manifest,
)
from dataset.writer import check_new_root, remove_dataset, split_counts, tag_totals
from plumbing import atomic_write_bytes, progress_bar, run_cli, size_type
from sim.tags import MAX_TAG, ROAD_LINE

#: (source image height, width), (output height, width) -> HxW uint8 tag ids at the output size.
LabelMaker = Callable[[tuple[int, int], tuple[int, int]], np.ndarray]

WEATHER_UNKNOWN = "unknown"


class SourceError(ValueError):
    """The source dataset is not what the importer expects; the message names the file."""


@dataclass(frozen=True)
class SourceFrame:
    """One image of the source dataset and the recipe for its label image."""

    name: str  # path relative to the source root, '/' separated: errors and the manifest name it
    episode: str  # frames sharing it form one episode (a city, a clip, a video)
    town: str  # the index's `town` column (city, driver folder, dataset name)
    image: Path
    labels: LabelMaker


@dataclass
class ImportResult:
    """What `import_frames` wrote."""

    out: Path
    manifest: Manifest
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


# ----------------------------------------------------------------------------- pixels


def read_image(path: Path) -> np.ndarray:
    """A source image (JPEG or PNG) as HxWx3 uint8 RGB; SourceError naming the file otherwise."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        why = "is missing" if not path.is_file() else "does not decode as an image"
        raise SourceError(f"{path} {why} (re-extract the dataset's archive)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an image to (height, width): area averaging to shrink, bilinear to grow."""
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    shrink = h * w < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a label image to (height, width), nearest neighbour: each output pixel takes the
    label of the source pixel under its centre (OpenCV's INTER_NEAREST_EXACT), never a blend."""
    h, w = size
    if labels.shape == (h, w):
        return labels
    return cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


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


# ----------------------------------------------------------------------------- writing


def _check_out(out: Path, overwrite: bool) -> None:
    if (out / MANIFEST_NAME).is_file() and not overwrite:
        raise DatasetError(f"{out} already holds a dataset (pass --overwrite to replace it)")
    check_new_root(out, overwrite)


def _convert(
    frame: SourceFrame, tmp: Path, rgb_rel: str, label_rel: str, size: tuple[int, int], resize: bool
) -> list[int]:
    """Read, label, resize and write one frame into `tmp`; pixels per tag of its labels."""
    rgb = read_image(frame.image)
    src = (rgb.shape[0], rgb.shape[1])
    if not resize and src != size:
        raise SourceError(
            f"{frame.image} is {src[1]}x{src[0]}, the first image {size[1]}x{size[0]} "
            "(pass --size HxW to resize every frame to one size)"
        )
    labels = frame.labels(src, size)
    if labels.dtype != np.uint8 or labels.shape != size or (labels.size and int(labels.max()) > MAX_TAG):
        raise AssertionError(f"{frame.name}: label maker returned {labels.dtype} {labels.shape}")  # a bug, not data
    for rel, data in ((rgb_rel, encode_rgb_png(resize_rgb(rgb, size))), (label_rel, encode_label_png(labels))):
        atomic_write_bytes(tmp / rel, data)
    return tag_histogram(labels).tolist()


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished dataset in `tmp` to `out`, replacing an old dataset there."""
    if out.is_dir() and (out / MANIFEST_NAME).is_file():
        remove_dataset(out)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(tmp, out)  # one step: readers see no dataset or the whole one
        return
    # `out` keeps files of its own (not ours to delete): move ours in, the manifest last.
    for name in (RGB_DIR, LABEL_DIR, INDEX_NAME, MANIFEST_NAME):
        os.replace(tmp / name, out / name)
    tmp.rmdir()


def import_frames(
    frames: Sequence[SourceFrame],
    out: str | Path,
    *,
    dataset: str,
    split: str,
    size: tuple[int, int] | None = None,
    annotated_tags: Sequence[int],
    source: dict[str, Any],
    overwrite: bool = False,
    workers: int = 2,
    progress: bool = False,
) -> ImportResult:
    """Write `frames` as one dataset folder `out`, all in `split`, atomically (module doc).

    `size` is (height, width); None keeps the source size, which every image must then share.
    Episodes are the frames' `episode` keys in sorted order, frames within one by name.
    """
    t0 = time.perf_counter()
    out = Path(out)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} (choose one of: {', '.join(SPLITS)})")
    if not frames:
        raise SourceError(f"{source.get('origin', dataset)}: no frames found (check ROOT and the layout it needs)")
    _check_out(out, overwrite)
    if size is None:
        first = read_image(frames[0].image)
        out_size, resize = (first.shape[0], first.shape[1]), False
    else:
        out_size, resize = (int(size[0]), int(size[1])), True

    by_episode: dict[str, list[SourceFrame]] = {}
    for f in sorted(frames, key=lambda f: (f.episode, f.name)):
        by_episode.setdefault(f.episode, []).append(f)
    plans, rows, jobs = [], [], []
    for e, (_, group) in enumerate(sorted(by_episode.items())):
        plans.append(EpisodePlan(episode=e, seed=0, split=split, weather=WEATHER_UNKNOWN, frames=len(group)))
        for k, f in enumerate(group):
            rows.append(_row(e, k, f, split))
            jobs.append(f)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.importing-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for e in range(len(plans)):
            (tmp / rgb_relpath(e, 0)).parent.mkdir(parents=True)
            (tmp / label_relpath(e, 0)).parent.mkdir(parents=True)
        bar = progress_bar(len(jobs), dataset, progress)
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="import") as pool:
            results = pool.map(lambda f, r: _convert(f, tmp, r["rgb"], r["label"], out_size, resize), jobs, rows)
            try:
                for row, hist in zip(rows, results, strict=True):
                    row["tag_pixels"] = hist
                    row["lane_pixels"] = hist[ROAD_LINE]
                    if bar is not None:
                        bar.update(1)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            finally:
                if bar is not None:
                    bar.close()
        manifest = Manifest(
            backend=dataset,
            town=dataset,
            scenario={"name": f"import-{dataset}"},
            seed=0,
            every=1,
            camera={"name": "front", "width": out_size[1], "height": out_size[0]},
            episodes=plans,
            split_fractions={split: 1.0},
            status=STATUS_COMPLETE,
            counts=split_counts(rows),
            tag_pixels=tag_totals(rows).tolist(),
            source={**source, "dataset": dataset, "files": {r["id"]: f.name for r, f in zip(rows, jobs, strict=True)}},
            annotated_tags=sorted(int(t) for t in annotated_tags),
        )
        write_index(tmp, rows)
        write_manifest(tmp, manifest)
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ImportResult(out=out, manifest=manifest, rows=rows, seconds=time.perf_counter() - t0)


def _row(episode: int, frame: int, f: SourceFrame, split: str) -> dict[str, Any]:
    """An index row for an imported frame: what a photo does not know is null."""
    return {
        "id": frame_id(episode, frame),
        "split": split,
        "episode": episode,
        "frame": frame,
        "tick": frame,
        "sim_time": None,
        "town": f.town,
        "weather": WEATHER_UNKNOWN,
        "x": None,
        "y": None,
        "z": None,
        "yaw": None,
        "speed": None,
        "lane_id": None,
        "lateral_offset": None,
        "heading_error": None,
        "in_junction": None,
        "rgb": rgb_relpath(episode, frame),
        "label": label_relpath(episode, frame),
    }


# ----------------------------------------------------------------------------- CLI


def positive_float(text: str) -> float:
    """argparse type for --line-width."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of pixels, got {text!r}")
    return value


def make_parser(prog: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A parser with ROOT and the output options every importer has; the caller adds its own."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"examples:\n{examples}\nThen check it with: python -m dataset.validate DIR (docs/real_datasets.md)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", type=Path, help="the dataset's folder, as unpacked from its archives")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="dataset folder to write")
    p.add_argument("--size", type=size_type(16), metavar="HxW", help="resize every frame, e.g. 160x320 (default: keep)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    p.add_argument("--workers", type=int, default=2, help="conversion threads (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="tracebacks on errors")
    return p


def run_import_cli(args: argparse.Namespace, do_import: Callable[[], ImportResult]) -> int:
    """Run an import with the CLI conventions: one-line errors (exit 1), Ctrl-C (exit 130)."""
    results: list[ImportResult] = []

    def body() -> int:
        results.append(do_import())  # SIGTERM and Ctrl-C unwind: the temporary folder goes
        return 0

    code = run_cli(
        body,
        expected=(SourceError, DatasetError, OSError),
        debug=args.debug,
        interrupted=f"interrupted: nothing was written to {args.out}",
    )
    if code:
        return code
    result = results[0]
    m = result.manifest
    lanes = ""
    if ROAD_LINE in (m.annotated_tags or []):
        share = sum(r["lane_pixels"] for r in result.rows) / max(1, len(result.rows) * m.width * m.height)
        lanes = f"; lane pixels {100 * share:.2f}%"
    print(
        f"imported {len(result.rows)} frames in {len(m.episodes)} episodes ({m.width}x{m.height}, split "
        f"{m.episodes[0].split}) into {result.out} in {result.seconds:.1f} s{lanes}"
    )
    return 0


__all__ = [
    "ImportResult",
    "LabelMaker",
    "SourceError",
    "SourceFrame",
    "import_frames",
    "lane_mask",
    "make_parser",
    "positive_float",
    "read_image",
    "resize_labels",
    "resize_rgb",
    "run_import_cli",
]
