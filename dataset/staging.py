"""A whole dataset built aside and moved into place at once, for producers that write every
frame in one go (the importers): `--out` is never half-written.

`staged(out)` yields a hidden sibling folder of `out`; once the block has written the whole
dataset there it replaces the dataset in `out` (the manifest last), and on any failure or
Ctrl-C the sibling is deleted and `out` is untouched. An old dataset in `out` is only removed
after the new one is whole, and files of the user's beside it are kept.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dataset.format import INDEX_NAME, LABEL_DIR, MANIFEST_NAME, RGB_DIR, DatasetError
from dataset.writer import check_new_root, remove_dataset

#: In the sibling folder's name, `.<out>.importing-<pid>`: a leftover of a killed run is easy to spot.
STAGING_TAG = "importing"


def check_replaceable(out: Path, overwrite: bool) -> None:
    """DatasetError unless a new dataset may go to `out` (absent, empty, or an old one with overwrite)."""
    if (out / MANIFEST_NAME).is_file() and not overwrite:
        raise DatasetError(f"{out} already holds a dataset (pass --overwrite to replace it)")
    check_new_root(out, overwrite)


def publish(tmp: Path, out: Path) -> None:
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


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """Yield a sibling path of `out` (not created yet) to write a dataset in; `publish` it when the
    block ends normally, delete it in every case (call `check_replaceable` first)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{STAGING_TAG}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
        publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["STAGING_TAG", "check_replaceable", "publish", "staged"]
