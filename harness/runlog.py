"""frames.parquet: one row per frame per model, written as the run goes.

Rows are buffered and appended at least every `flush_every_s` seconds to a journal next to
the Parquet file (``frames.parquet.partial``, an Arrow IPC stream: every flushed batch stays
readable even if the process dies mid-write, which a Parquet file without its footer is
not). `close` (called on every exit path by the loop, Ctrl-C included) turns the journal
into ``frames.parquet``; after a crash or SIGKILL, `recover` (run by ``python -m harness.report``)
does the same with every complete batch, so a crash loses at most `flush_every_s` of rows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from plumbing import atomic_output


@dataclass
class FrameRow:
    """One row of frames.parquet: one model on one frame (units: s, m, m/s, rad, ms; steer is
    CARLA's, + right). The Parquet schema is derived from these fields, in this order."""

    run: str
    model: str
    scenario: str
    seed: int
    frame: int
    sim_time: float
    iou: float
    precision: float
    recall: float
    lane_px_true: int
    lane_px_pred: int
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float
    total_ms: float
    inferred: bool
    deadline_missed: bool
    speed: float
    distance: float
    lateral_offset: float
    heading_error: float
    steer: float
    lane_departure: bool
    collision: bool
    weather: str
    in_junction: bool


_ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
#: The columns of frames.parquet, in order: `FrameRow`'s fields.
FRAME_SCHEMA = pa.schema([(f.name, _ARROW_TYPES[f.type]) for f in fields(FrameRow)])
COLUMNS: tuple[str, ...] = tuple(FRAME_SCHEMA.names)


def journal_path(path: str | Path) -> Path:
    """Where the rows of `path` (frames.parquet) live while the run goes."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def recover(path: str | Path) -> int | None:
    """Turn the journal of a run that died into `path`; the number of rows recovered, or
    None when there is no journal. The last batch is dropped if it was cut short."""
    path = Path(path)
    journal = journal_path(path)
    if not journal.is_file():
        return None
    batches = []
    try:
        with pa.OSFile(str(journal), "rb") as f:
            reader = pa.ipc.open_stream(f)
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
    except (pa.ArrowInvalid, OSError):
        pass  # a batch cut short by the crash: keep the complete ones
    _write_parquet(path, pa.Table.from_batches(batches, schema=FRAME_SCHEMA))
    journal.unlink()
    return sum(b.num_rows for b in batches)


def _write_parquet(path: Path, table: pa.Table) -> None:
    with atomic_output(path) as tmp:  # readers never see half a file
        pq.write_table(table, tmp, compression="snappy")


class FrameLog:
    """Append-only log of frame rows: time-based flushes to a crash-safe journal, Parquet at close."""

    def __init__(self, path: str | Path, flush_every_s: float = 1.0) -> None:
        self.path = Path(path)
        self.journal = journal_path(self.path)
        self.flush_every_s = float(flush_every_s)
        self._buf: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        self._sink: pa.OSFile | None = None  # opened by the first flush
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._closed = False
        self._last_flush = time.perf_counter()
        self.rows = 0
        self.batches = 0  # flushed to the journal
        _warm_up()

    def append(self, row: FrameRow | dict[str, Any]) -> None:
        """Add one row (a `FrameRow`, or a dict with every column; NaN for unknown values)."""
        values = vars(row) if isinstance(row, FrameRow) else row
        for c in COLUMNS:
            self._buf[c].append(values[c])
        self.rows += 1
        if time.perf_counter() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Append the buffered rows to the journal as one batch (no-op when empty)."""
        self._last_flush = time.perf_counter()
        if self._closed or not self._buf["frame"]:
            return
        if self._writer is None:
            self._sink = pa.OSFile(str(self.journal), "wb")
            self._writer = pa.ipc.new_stream(self._sink, FRAME_SCHEMA)
        arrays = [pa.array(_nan_to_none(self._buf[f.name], f.type), type=f.type) for f in FRAME_SCHEMA]
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=FRAME_SCHEMA))
        self._sink.flush()  # in the OS's hands: survives the death of this process
        self.batches += 1
        for c in COLUMNS:
            self._buf[c].clear()

    def close(self, discard: bool = False) -> None:
        """Flush and write frames.parquet from the journal (a run without rows still gets a
        valid, empty file); with `discard` and no row written yet, leave no file at all.
        Safe to call twice."""
        if self._closed:
            return
        try:
            if not (discard and self._writer is None):
                self.flush()
        finally:
            self._closed = True
            if self._writer is not None:
                self._writer.close()
                self._sink.close()
                self._writer = self._sink = None
        if discard and not self.journal.exists():
            return
        if self.journal.exists():
            recover(self.path)
        else:
            _write_parquet(self.path, FRAME_SCHEMA.empty_table())

    def __enter__(self) -> FrameLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _warm_up() -> None:
    """Write one row into memory: pyarrow initialises its array and IPC machinery on first use
    (0.3-4 s measured), which would otherwise land in the first flush, inside the timed loop."""
    zero = {"string": "", "int64": 0, "double": 0.0, "bool": False}
    arrays = [pa.array([zero[str(f.type)]], type=f.type) for f in FRAME_SCHEMA]
    with pa.ipc.new_stream(pa.BufferOutputStream(), FRAME_SCHEMA) as writer:
        writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=FRAME_SCHEMA))


def _nan_to_none(values: list[Any], typ: pa.DataType) -> list[Any]:
    """Integer and bool columns cannot hold NaN: store a missing value as null instead."""
    if pa.types.is_floating(typ) or pa.types.is_string(typ):
        return values
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


__all__ = ["COLUMNS", "FRAME_SCHEMA", "FrameLog", "FrameRow", "journal_path", "recover"]
