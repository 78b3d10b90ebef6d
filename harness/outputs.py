"""A run's folder: which files it holds, creating it safely, and strict JSON written atomically."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from harness.contracts import LoopError
from plumbing import atomic_write_json

#: Files a run writes into its folder (what --overwrite may replace).
OUTPUTS = ("frames.parquet", "frames.parquet.partial", "summary.json", "report.html", "strip", "screenshots")


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create the run folder; refuse one that holds a run unless `overwrite` (then clear only our files)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LoopError(f"{out} exists and is not a folder (choose another --out)")
    taken = [name for name in OUTPUTS if (out / name).exists()]
    if taken and not overwrite:
        raise LoopError(f"{out} already holds a run ({', '.join(taken)}) (pass --overwrite or choose another --out)")
    for name in taken:
        p = out / name
        if p.is_dir():
            for f in sorted(p.rglob("*"), reverse=True):
                f.rmdir() if f.is_dir() else f.unlink()
            p.rmdir()
        else:
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def json_safe(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python numbers, tuples -> lists (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Strict JSON (NaN -> null), atomically, so a reader never sees half a file."""
    atomic_write_json(path, json_safe(data))


__all__ = ["OUTPUTS", "json_safe", "prepare_out", "write_json"]
