"""frames.parquet: one row per frame per model, written as the run goes.

Rows are buffered and written as a Parquet row group at least every `flush_every_s`
seconds, so an interrupted run loses at most that much; `close` (called on every exit
path by the loop, Ctrl-C included) writes the footer that makes the file readable.
A process killed with SIGKILL never writes the footer: that file is not readable.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

#: The columns of frames.parquet, in order (units: s, m, m/s, rad, ms; steer is CARLA's, + right).
FRAME_SCHEMA = pa.schema(
    [
        ("run", pa.string()),
        ("model", pa.string()),
        ("scenario", pa.string()),
        ("seed", pa.int64()),
        ("frame", pa.int64()),
        ("sim_time", pa.float64()),
        ("iou", pa.float64()),
        ("precision", pa.float64()),
        ("recall", pa.float64()),
        ("lane_px_true", pa.int64()),
        ("lane_px_pred", pa.int64()),
        ("preprocess_ms", pa.float64()),
        ("inference_ms", pa.float64()),
        ("postprocess_ms", pa.float64()),
        ("total_ms", pa.float64()),
        ("inferred", pa.bool_()),
        ("deadline_missed", pa.bool_()),
        ("speed", pa.float64()),
        ("distance", pa.float64()),
        ("lateral_offset", pa.float64()),
        ("heading_error", pa.float64()),
        ("steer", pa.float64()),
        ("lane_departure", pa.bool_()),
        ("collision", pa.bool_()),
        ("weather", pa.string()),
        ("in_junction", pa.bool_()),
    ]
)
COLUMNS: tuple[str, ...] = tuple(FRAME_SCHEMA.names)


class FrameLog:
    """Append-only Parquet writer of frame rows with time-based row-group flushes."""

    def __init__(self, path: str | Path, flush_every_s: float = 1.0) -> None:
        self.path = Path(path)
        self.flush_every_s = float(flush_every_s)
        self._buf: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        self._writer: pq.ParquetWriter | None = None  # opened by the first flush
        self._closed = False
        self._last_flush = time.perf_counter()
        self.rows = 0
        self.row_groups = 0

    def append(self, row: dict[str, Any]) -> None:
        """Add one row (every column of FRAME_SCHEMA; None/NaN for unknown values)."""
        for c in COLUMNS:
            self._buf[c].append(row[c])
        self.rows += 1
        if time.perf_counter() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one row group (no-op when empty)."""
        self._last_flush = time.perf_counter()
        if self._closed or not self._buf["frame"]:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, FRAME_SCHEMA, compression="snappy")
        arrays = [pa.array(_nan_to_none(self._buf[f.name], f.type), type=f.type) for f in FRAME_SCHEMA]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=FRAME_SCHEMA))
        self.row_groups += 1
        for c in COLUMNS:
            self._buf[c].clear()

    def close(self, discard: bool = False) -> None:
        """Flush and write the footer (a run without rows still gets a valid, empty file);
        with `discard` and no row written yet, leave no file at all. Safe to call twice."""
        if self._closed:
            return
        try:
            if not (discard and self._writer is None):
                self.flush()
                if self._writer is None:
                    self._writer = pq.ParquetWriter(self.path, FRAME_SCHEMA, compression="snappy")
        finally:
            self._closed = True
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def __enter__(self) -> FrameLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _nan_to_none(values: list[Any], typ: pa.DataType) -> list[Any]:
    """Integer and bool columns cannot hold NaN: store a missing value as null instead."""
    if pa.types.is_floating(typ) or pa.types.is_string(typ):
        return values
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


__all__ = ["COLUMNS", "FRAME_SCHEMA", "FrameLog"]
