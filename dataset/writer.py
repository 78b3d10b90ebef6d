"""DatasetWriter: append frames to a dataset folder, safely enough to be killed at any moment.

PNGs are encoded and written by a small thread pool (OpenCV releases the GIL while it
encodes, so this overlaps with the simulator). A frame enters the index only once both of
its files are complete; the index is rewritten atomically every `flush_every_s` seconds and
on close, so a kill -9 loses at most that much work and never leaves the index naming a
file that is not there. Resuming drops nothing complete and rewrites everything else; as
episodes are deterministic, the rewritten frames are the frames the killed run would have
written.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataset.format import (
    INDEX_NAME,
    LABEL_DIR,
    LANES_COLUMN,
    LOOK_COLUMN,
    MANIFEST_NAME,
    RGB_DIR,
    STATUS_COMPLETE,
    STATUS_RECORDING,
    TMP_SUFFIX,
    DatasetError,
    Manifest,
    encode_label_png,
    encode_rgb_png,
    frame_id,
    label_relpath,
    read_index,
    read_manifest,
    rgb_relpath,
    tag_histogram,
    write_index,
    write_manifest,
)
from dataset.stats import split_counts, tag_totals
from plumbing import atomic_write_bytes
from sim.tags import ROAD_LINE
from sim.types import Observation


class WriterError(OSError):
    """A file of the dataset could not be written (full disk, permissions, folder gone)."""


@dataclass
class WriterTimes:
    """Where the writer's time goes, in seconds (encode/write are summed over workers)."""

    encode_s: float = 0.0
    write_s: float = 0.0
    index_s: float = 0.0
    wait_s: float = 0.0  # main thread blocked on a full queue


def records_look(manifest: Manifest) -> bool:
    """True when the recording's scenario asks for a non-default look (every row says its knobs)."""
    sc = manifest.scenario or {}
    return sc.get("look", "default") != "default" or bool(sc.get("randomize", False))


def _encode_and_write(
    root: Path, rgb_rel: str, label_rel: str, rgb: np.ndarray, labels: np.ndarray, times: WriterTimes
) -> list[int]:
    t0 = time.perf_counter()
    rgb_png = encode_rgb_png(rgb)
    label_png = encode_label_png(labels)
    hist = tag_histogram(labels)
    t1 = time.perf_counter()
    for rel, data in ((rgb_rel, rgb_png), (label_rel, label_png)):
        try:
            atomic_write_bytes(root / rel, data)
        except OSError as e:
            raise WriterError(f"cannot write {root / rel}: {e.strerror or e}") from None
    t2 = time.perf_counter()
    times.encode_s += t1 - t0  # float += under the GIL: good enough for a benchmark breakdown
    times.write_s += t2 - t1
    return hist.tolist()


class DatasetWriter:
    """Appends frames of a planned recording to `root`; see the module docstring.

    Use `create` for a new folder and `open` to resume one; then `add` frames, and `close`
    (also on Ctrl-C: it waits for the files in flight and flushes the index).
    """

    def __init__(
        self,
        root: str | Path,
        manifest: Manifest,
        rows: list[dict[str, Any]],
        workers: int = 2,
        flush_every_s: float = 1.0,
        max_pending: int = 32,
    ) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.rows = rows  # committed: both files complete, named by the index
        self.done: set[tuple[int, int]] = {(r["episode"], r["frame"]) for r in rows}
        self.times = WriterTimes()
        self._split_of = manifest.split_of()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="png")
        self._pending: deque[tuple[dict[str, Any], Future]] = deque()
        self._max_pending = max(1, max_pending)
        self._flush_every_s = flush_every_s
        self._last_flush = time.monotonic()
        self._dirs: set[str] = set()
        self._dirty = False
        self._closed = False

    # -- construction ---------------------------------------------------------------

    @classmethod
    def create(cls, root: str | Path, manifest: Manifest, overwrite: bool = False, **kw: Any) -> DatasetWriter:
        """Start a new dataset in `root` (absent or empty; an old dataset only with overwrite)."""
        root = Path(root)
        if check_new_root(root, overwrite):
            remove_dataset(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            write_manifest(root, manifest)
        except OSError as e:
            raise WriterError(f"cannot write to {root}: {e.strerror or e}") from None
        return cls(root, manifest, [], **kw)

    @classmethod
    def open(cls, root: str | Path, **kw: Any) -> DatasetWriter:
        """Reopen a (possibly killed) recording: keep complete frames, forget the rest."""
        root = Path(root)
        manifest = read_manifest(root)
        rows = read_index(root)
        planned = {(e.episode, f) for e in manifest.episodes for f in range(e.frames)}
        kept, seen = [], set()
        for r in rows:
            key = (r["episode"], r["frame"])
            if key in planned and key not in seen and (root / r["rgb"]).is_file() and (root / r["label"]).is_file():
                kept.append(r)
                seen.add(key)
        for tmp in root.rglob("*" + TMP_SUFFIX):
            tmp.unlink(missing_ok=True)
        writer = cls(root, manifest, kept, **kw)
        if len(kept) != len(rows):
            writer._dirty = True
            writer.flush()
        return writer

    # -- writing --------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        return len(self.done) >= self.manifest.planned_frames

    def episode_done(self, episode: int) -> bool:
        plan = self.manifest.episodes[episode]
        return all((episode, f) in self.done for f in range(plan.frames))

    def add(
        self,
        episode: int,
        frame: int,
        tick: int,
        obs: Observation,
        weather: str | None = None,
        lanes: list[list[float]] | None = None,
        look: dict | None = None,
    ) -> None:
        """Queue one frame (the first camera of `obs`); returns before the files are written.
        `lanes`: its lane boundaries in TuSimple form (a dataset whose manifest has `lane_instances`).
        `look`: the knobs of a non-default look (the backend's `look_record()`), stored per frame."""
        self._check_open()
        if (episode, frame) in self.done:
            return
        cam = obs.camera
        rgb_rel, label_rel = rgb_relpath(episode, frame), label_relpath(episode, frame)
        edir = rgb_rel.rsplit("/", 1)[0]
        if edir not in self._dirs:
            try:
                (self.root / edir).mkdir(parents=True, exist_ok=True)
                (self.root / label_rel.rsplit("/", 1)[0]).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise WriterError(f"cannot create {self.root / edir}: {e.strerror or e}") from None
            self._dirs.add(edir)
        ego = obs.ego
        row = {
            "id": frame_id(episode, frame),
            "split": self._split_of[episode],
            "episode": episode,
            "frame": frame,
            "tick": tick,
            "sim_time": float(obs.sim_time),
            "town": obs.town or self.manifest.town,
            "weather": weather or obs.weather or self.manifest.episodes[episode].weather,
            "x": float(ego.x),
            "y": float(ego.y),
            "z": float(ego.z),
            "yaw": float(ego.yaw),
            "speed": float(ego.speed),
            "lane_id": ego.lane_id,
            "lateral_offset": ego.lateral_offset,
            "heading_error": ego.heading_error,
            "in_junction": getattr(ego, "in_junction", None),
            "rgb": rgb_rel,
            "label": label_rel,
        }
        if self.manifest.lane_instances is not None:
            row[LANES_COLUMN] = json.dumps(lanes if lanes is not None else [])
        if records_look(self.manifest):
            row[LOOK_COLUMN] = json.dumps(look if look is not None else {})
        # The backend may reuse its buffers on the next step: hand the pool copies.
        fut = self._pool.submit(
            _encode_and_write,
            self.root,
            rgb_rel,
            label_rel,
            np.array(cam.rgb, copy=True),
            np.array(cam.labels, copy=True),
            self.times,
        )
        self._pending.append((row, fut))
        if len(self._pending) > self._max_pending:
            t0 = time.perf_counter()
            self._pending[0][1].result()
            self.times.wait_s += time.perf_counter() - t0
        self._collect()
        if time.monotonic() - self._last_flush >= self._flush_every_s:
            self.flush()

    def _collect(self, wait: bool = False) -> None:
        """Move finished frames (a prefix, in recording order) from pending to committed."""
        while self._pending and (wait or self._pending[0][1].done()):
            row, fut = self._pending[0]
            hist = fut.result()  # re-raises a WriterError from the worker
            self._pending.popleft()
            row["tag_pixels"] = hist
            row["lane_pixels"] = hist[ROAD_LINE]
            self.rows.append(row)
            self.done.add((row["episode"], row["frame"]))
            self._dirty = True

    def flush(self, wait: bool = False) -> None:
        """Atomically rewrite the index with every complete frame (wait: drain the pool first)."""
        self._collect(wait=wait)
        if self._dirty:
            t0 = time.perf_counter()
            try:
                write_index(self.root, self.rows)
            except OSError as e:
                raise WriterError(f"cannot write {self.root / INDEX_NAME}: {e.strerror or e}") from None
            self.times.index_s += time.perf_counter() - t0
            self._dirty = False
        self._last_flush = time.monotonic()

    def close(self) -> bool:
        """Wait for files in flight, flush the index, mark the manifest complete when it is.

        Safe to call after an error or Ctrl-C: whatever completed is kept and indexed.
        Returns True when every planned frame is recorded.
        """
        if self._closed:
            return self.complete
        self._closed = True
        error: BaseException | None = None
        try:
            self._collect(wait=True)
        except BaseException as e:  # keep the frames before the failed one, drop the rest
            error = e
        finally:
            for _, fut in self._pending:
                fut.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True)
            self.flush()
        if self.complete and self.manifest.status != STATUS_COMPLETE:
            self.manifest.status = STATUS_COMPLETE
            self.manifest.counts = split_counts(self.rows)
            self.manifest.tag_pixels = tag_totals(self.rows).tolist()
            write_manifest(self.root, self.manifest)
        if error is not None:
            raise error
        return self.complete

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("DatasetWriter is closed")


def check_new_root(root: str | Path, overwrite: bool = False) -> bool:
    """Raise DatasetError unless a new dataset may go to `root`; True when an old one must go first.

    Only a folder that is absent, empty, or (with overwrite) holds a dataset qualifies: a
    folder of other files is never deleted.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root} is a file, not a folder (choose another --out)")
    if not root.is_dir() or not any(root.iterdir()):
        return False
    if not (root / MANIFEST_NAME).is_file():
        raise DatasetError(f"{root} is not empty and holds no dataset (choose another --out; nothing was deleted)")
    if not overwrite:
        raise DatasetError(
            f"{root} already holds a dataset (pass --overwrite to replace it or --resume to continue it)"
        )
    return True


def remove_dataset(root: Path) -> None:
    """Delete a dataset's own files (index and images first, manifest last), nothing else."""
    (root / INDEX_NAME).unlink(missing_ok=True)
    for sub in (RGB_DIR, LABEL_DIR):
        shutil.rmtree(root / sub, ignore_errors=True)
    for name in (INDEX_NAME, MANIFEST_NAME):  # temporary files of a killed write (plumbing.atomic_output)
        for tmp in root.glob(f".{name}.*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
    (root / MANIFEST_NAME).unlink(missing_ok=True)


__all__ = [
    "DatasetWriter",
    "STATUS_RECORDING",
    "check_new_root",
    "WriterError",
    "WriterTimes",
    "remove_dataset",
]
