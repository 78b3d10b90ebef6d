"""Contact sheet: real dev frames beside simulated frames, in the same layout (docs/sim_to_real.md).

    PYTHONPATH=. python benchmarks/sim_to_real_sheet.py --sim data/town03_default --sim data/town03_real \
        --out docs/sim_to_real_sheet.png

One band per source: the real TuSimple and CULane dev frames (imported at 160x320 into a
temporary folder, never into the project), then each `--sim` recording. Each band is a row of
`--cols` frames and under it the same frames with their RoadLine / lane label in green, so the
eye compares look and labels alike. Frames are spread evenly over a recording.

The real frames may not be redistributed (../shared/data/README.md): write a sheet with them
to results/, never into the project; `--no-real` writes the simulated bands alone (the
committed docs/sim_to_real_sheet.png).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import tempfile

import cv2
import numpy as np

from collect.real_dev import DEV_ENV, dev_root, import_dev_sets
from dataset.format import read_index, read_labels, read_rgb
from sim.tags import ROAD_LINE

SIZE = (160, 320)


def band(root: Path, cols: int, title: str) -> np.ndarray:
    """Two rows (RGB, RGB with the label in green) of `cols` frames of a dataset folder."""
    rows = read_index(root)
    if not rows:
        raise ValueError(f"{root}: no frames (record or import a dataset there first)")
    pick = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, cols).round()]
    top, bottom = [], []
    for r in pick:
        rgb = cv2.resize(read_rgb(root / r["rgb"]), SIZE[::-1], interpolation=cv2.INTER_AREA)
        lab = cv2.resize(read_labels(root / r["label"]), SIZE[::-1], interpolation=cv2.INTER_NEAREST)
        over = rgb.copy()
        over[lab == ROAD_LINE] = (40, 255, 40)
        top.append(rgb)
        bottom.append(over)
    img = np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0)
    head = np.full((18, img.shape[1], 3), 30, np.uint8)
    cv2.putText(head, title, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([head, img], 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sim", action="append", default=[], metavar="DIR", help="a simulator recording (repeatable)")
    p.add_argument("--cols", type=int, default=4, help="frames per band (default 4)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--no-real", action="store_true", help="only the simulated bands (a sheet to commit)")
    args = p.parse_args(argv)
    root = dev_root()
    if args.no_real and not args.sim:
        print("error: --no-real needs at least one --sim recording")
        return 1
    if root is None and not args.no_real:
        print(f"error: no real dev frames (../shared/data/real-lanes-dev beside the project, or ${DEV_ENV})")
        return 1
    for d in args.sim:
        if not (Path(d) / "manifest.json").is_file():
            print(f"error: {d} is not a dataset folder (record one with collect/record.py)")
            return 1
    bands = []
    with tempfile.TemporaryDirectory(prefix="laneloop-sheet-") as tmp:
        dev = {} if args.no_real else import_dev_sets(Path(tmp), root, SIZE)
        names = {"tusimple": "real: TuSimple highway, day", "culane": "real: CULane night"}
        for k, v in dev.items():
            bands.append(band(Path(v), args.cols, names.get(k, k)))
        for d in args.sim:
            bands.append(band(Path(d), args.cols, f"sim: {Path(d).name}"))
    sheet = np.concatenate(bands, 0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]}, {len(bands)} bands)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
