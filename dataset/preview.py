"""Contact sheet of a dataset: one row per sampled frame, RGB | labels | overlay.

python -m dataset.preview data/town03 --out sheet.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from dataset.format import (
    SPLITS,
    DatasetError,
    encode_rgb_png,
    read_index,
    read_labels,
    read_manifest,
    read_rgb,
)
from plumbing import atomic_write_bytes
from sim.tags import colorize, overlay

CAPTION_PX = 14


def contact_sheet(root: str | Path, n: int = 8, split: str | None = None) -> np.ndarray:
    """HxWx3 RGB sheet of `n` frames spread evenly over the index (optionally one split)."""
    root = Path(root)
    read_manifest(root)
    rows = [r for r in read_index(root) if split is None or r["split"] == split]
    if not rows:
        raise DatasetError(f"{root}: no frames{' in split ' + split if split else ''} to preview")
    picks = np.unique(np.linspace(0, len(rows) - 1, num=min(n, len(rows))).round().astype(int))
    tiles = []
    for i in picks:
        r = rows[int(i)]
        rgb, labels = read_rgb(root / r["rgb"]), read_labels(root / r["label"])
        strip = np.concatenate([rgb, colorize(labels), overlay(rgb, labels)], axis=1)
        caption = np.full((CAPTION_PX, strip.shape[1], 3), 24, np.uint8)
        text = f"{r['id']}  {r['split']}  {r['town']}  {r['weather']}  lane px {r['lane_pixels']}"
        cv2.putText(
            caption,
            text,
            (3, CAPTION_PX - 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            (235, 235, 235),
            1,
            cv2.LINE_AA,
        )
        tiles += [caption, strip]
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0))) for t in tiles]
    return np.concatenate(tiles, axis=0)


def main(argv: list[str] | None = None) -> int:
    """CLI: write the contact sheet PNG; exit 1 on an unusable folder or existing output."""
    p = argparse.ArgumentParser(
        prog="python -m dataset.preview",
        description="Write a contact sheet (RGB | labels | overlay) of a recorded dataset.",
        epilog="example:\n  python -m dataset.preview data/town03 --out sheet.png --frames 12 --split val",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="dataset folder")
    p.add_argument("--out", default="preview.png", help="output PNG (default preview.png)")
    p.add_argument("--frames", type=int, default=8, help="rows in the sheet (default 8)")
    p.add_argument("--split", choices=SPLITS, help="only frames of this split")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--debug", action="store_true", help="tracebacks")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(f"error: {out} exists (pass --overwrite or choose another --out)", file=sys.stderr)
        return 1
    try:
        sheet = contact_sheet(args.dir, n=max(1, args.frames), split=args.split)
        atomic_write_bytes(out, encode_rgb_png(sheet))
    except (DatasetError, OSError, ValueError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
