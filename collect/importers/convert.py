"""Source frames -> one dataset folder: what every importer hands its frames to.

An importer (`tusimple`, `culane`, `cityscapes`) only knows its dataset's layout: it lists
`SourceFrame`s (an image and a way to make its label image) and hands them to
`import_frames`, which writes our dataset format (`dataset.format`) in a folder staged beside
`--out` (`dataset.staging`) that is moved into place only once every frame, the index and the
manifest are complete. A failure or Ctrl-C deletes it: `--out` is never half-written, and an
old dataset there is only removed (with `--overwrite`) after the new one is whole.

What an imported folder declares in its manifest: see `collect.importers`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from collect.importers.pixels import read_image, resize_rgb
from collect.importers.source import SourceError, SourceFrame
from dataset.format import (
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
from dataset.staging import check_replaceable, staged
from dataset.stats import split_counts, tag_totals
from plumbing import atomic_write_bytes, progress_bar
from sim.tags import MAX_TAG, ROAD_LINE

WEATHER_UNKNOWN = "unknown"


class ImportOptions(TypedDict, total=False):
    """The keyword options every importer takes and hands on to `import_frames` unchanged."""

    size: tuple[int, int] | None  # (height, width) to resize to; None keeps the source size
    overwrite: bool  # replace an existing dataset in `out`
    workers: int  # conversion threads
    progress: bool  # a progress bar on stderr (only on a terminal)


@dataclass
class ImportResult:
    """What `import_frames` wrote."""

    out: Path
    manifest: Manifest
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


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


def _convert_all(
    jobs: list[SourceFrame],
    rows: list[dict[str, Any]],
    tmp: Path,
    size: tuple[int, int],
    resize: bool,
    workers: int,
    bar: Any,
) -> None:
    """Convert every frame into `tmp` on a thread pool, completing its row with the pixel counts."""
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="import") as pool:
        results = pool.map(lambda f, r: _convert(f, tmp, r["rgb"], r["label"], size, resize), jobs, rows)
        try:
            for row, hist in zip(rows, results, strict=True):
                row["tag_pixels"] = hist
                row["lane_pixels"] = hist[ROAD_LINE]
                if bar is not None:
                    bar.update(1)
        except BaseException:  # Ctrl-C or a bad frame: drop the frames not started yet
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            if bar is not None:
                bar.close()


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
    check_replaceable(out, overwrite)
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

    with staged(out) as tmp:
        for e in range(len(plans)):
            (tmp / rgb_relpath(e, 0)).parent.mkdir(parents=True)
            (tmp / label_relpath(e, 0)).parent.mkdir(parents=True)
        _convert_all(jobs, rows, tmp, out_size, resize, workers, progress_bar(len(jobs), dataset, progress))
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


__all__ = ["WEATHER_UNKNOWN", "ImportOptions", "ImportResult", "import_frames"]
