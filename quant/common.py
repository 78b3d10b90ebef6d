"""Shared pieces of the quant/ CLIs: the error convention, calibration frames, metadata.

Every CLI prints expected errors as one line ``error: <what> (<what to do>)`` and exits 1
(2 for usage errors), with a traceback only under ``--debug`` (DESIGN.md, Conventions).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataset.format import DatasetError
from dataset.reader import LaneDataset, dataset_for
from perception import quantized
from perception.checkpoint import CheckpointError, CheckpointMeta, Quantization
from perception.predictor import use_inductor_cache
from plumbing import file_digest, run_cli  # file_digest: re-exported for quant/


class QuantError(Exception):
    """An expected failure of a quant/ command; the message says what to do."""


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """--threads, --overwrite, --no-progress, --debug, --seed: the same in every CLI."""
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")


def run_quant_cli(
    main: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser, argv: list[str] | None
) -> int:
    """Parse `argv`, set threads and the inductor cache, run `main`, map errors to one line."""
    args = parser.parse_args(argv)
    if getattr(args, "threads", None) is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    threads = getattr(args, "threads", None) or os.cpu_count() or 1
    torch.set_num_threads(threads)
    use_inductor_cache()
    return run_cli(
        lambda: main(args),
        expected=(QuantError, CheckpointError, DatasetError, FileExistsError, FileNotFoundError, ValueError),
        debug=args.debug,
    )


def progress_enabled(args: argparse.Namespace) -> bool:
    """tqdm on stderr only when it is a terminal and --no-progress is not given."""
    return not args.no_progress and sys.stderr.isatty()


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Refuse to overwrite an existing output unless --overwrite (checked before the work)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise QuantError(f"{path} exists (pass --overwrite to replace it)")
    return path


def command_line() -> str:
    """The command that is running, for the checkpoint's ``command`` field."""
    return shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])


def binary_dataset_for(
    meta: CheckpointMeta, root: str | Path | list[str], split: str, size: tuple[int, int] | None = None
) -> LaneDataset:
    """`dataset.reader.dataset_for`, refusing the multi-class checkpoints quantization does not handle."""
    if meta.task.kind != "binary":
        raise QuantError("quantization tools handle binary lane checkpoints only (use a binary checkpoint)")
    return dataset_for(meta, root, split, size)


def calibration_frames(ds: LaneDataset, n: int) -> Iterator[torch.Tensor]:
    """`n` frames spread evenly over the dataset (deterministic), each 1x3xHxW."""
    if n < 1:
        raise QuantError(f"--calib-frames must be >= 1, got {n}")
    idx = np.unique(np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int))
    for i in idx:
        yield ds[int(i)][0].unsqueeze(0)


def quantized_meta(
    float_meta: CheckpointMeta,
    gm: torch.fx.GraphModule,
    scheme: str,
    recipe: dict[str, Any],
    parent: str | Path,
    extra: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> CheckpointMeta:
    """Metadata of an int8 checkpoint derived from its float parent."""
    parent = Path(parent)
    quant_extra = {
        **recipe,
        "graph": quantized.graph_fingerprint(gm),
        "parent": {"path": str(parent), "sha256_16": file_digest(parent), "metrics": dict(float_meta.metrics)},
        **(extra or {}),
    }
    return dataclasses.replace(
        float_meta,
        quant=Quantization(scheme, 8, quantized.BACKEND, quant_extra),
        metrics=dict(metrics or {}),
        data=dict(data if data is not None else float_meta.data),
        command=command_line(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def size_mb(path: str | Path) -> float:
    """File size in MB (10^6 bytes)."""
    return Path(path).stat().st_size / 1e6
