"""The shared real dev frames (`../shared/data/real-lanes-dev/`), imported with our importers.

For measuring only: never train a shipped model on them, never copy them into the project.
`import_dev_sets(tmp)` imports them into a folder the caller owns (a temporary one):

- `tusimple-lanenet/` holds TuSimple frames in LaneNet's training layout (`image/`,
  `gt_instance_image/`: one grey level per lane, drawn from TuSimple's points), not TuSimple's
  JSON. `lanenet_to_tusimple` recovers the JSON line of each frame: at each of TuSimple's rows
  (160, 170, ..., 710) a lane's x is the mean column of its instance pixels in that row (the
  centre of the drawn line, within a pixel of TuSimple's point), -2 where the row has none.
  The frames are copied with it into a TuSimple-layout folder, which `import_tusimple` reads.
- `culane-nightblur/` is in CULane's own layout (`<video>.MP4/<frame>.jpg` + `.lines.txt`);
  only a list file is missing, written into the caller's folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from collect.importers.culane import import_culane
from collect.importers.tusimple import import_tusimple
from perception.lane_metrics import TUSIMPLE_ROWS

DEV_ENV = "LANELOOP_REAL_DEV"
TUSIMPLE_DIR = "tusimple-lanenet"
CULANE_DIR = "culane-nightblur"


def dev_root() -> Path | None:
    """The dev frames folder ($LANELOOP_REAL_DEV, else ../shared/data/real-lanes-dev beside the
    project), or None when it is absent (a user's fresh clone)."""
    env = os.environ.get(DEV_ENV)
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "real-lanes-dev"
    return root if (root / TUSIMPLE_DIR).is_dir() and (root / CULANE_DIR).is_dir() else None


def instance_lanes(instance: np.ndarray, rows: tuple[int, ...] = TUSIMPLE_ROWS) -> list[list[float]]:
    """A LaneNet instance image (0 = background, one value per lane) -> TuSimple `lanes` at `rows`."""
    lanes = []
    for value in np.unique(instance):
        if value == 0:
            continue
        xs = []
        for y in rows:
            cols = np.nonzero(instance[y] == value)[0] if y < instance.shape[0] else []
            xs.append(round(float(cols.mean()), 1) if len(cols) else -2)
        if any(x >= 0 for x in xs):
            lanes.append(xs)
    return lanes


def lanenet_to_tusimple(lanenet: Path, out: Path) -> Path:
    """Write `out` as a TuSimple test_set folder (clips/lanenet/<frame>/20.png + test_label.json)
    from a LaneNet-layout folder; returns `out` (module doc)."""
    lines = []
    for image in sorted((lanenet / "image").glob("*.png")):
        instance = cv2.imread(str(lanenet / "gt_instance_image" / image.name), cv2.IMREAD_GRAYSCALE)
        if instance is None:
            raise FileNotFoundError(f"{lanenet / 'gt_instance_image' / image.name}: missing or unreadable")
        raw_file = f"clips/lanenet/{image.stem}/20.png"
        (out / raw_file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, out / raw_file)
        obj = {"lanes": instance_lanes(instance), "h_samples": list(TUSIMPLE_ROWS), "raw_file": raw_file}
        lines.append(json.dumps(obj))
    (out / "test_label.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def culane_list(culane: Path, out: Path) -> Path:
    """A CULane list file naming every `*.jpg` with a `.lines.txt` under `culane`, written to `out`."""
    names = [
        "/" + p.relative_to(culane).as_posix()
        for p in sorted(culane.glob("*/*.jpg"))
        if p.with_name(p.stem + ".lines.txt").is_file()
    ]
    out.write_text("\n".join(names) + "\n", encoding="utf-8")
    return out


def import_dev_sets(tmp: Path, root: Path, size: tuple[int, int] = (160, 320)) -> dict[str, Path]:
    """Import both dev sets from `root` under `tmp` at `size` (H, W); name -> dataset folder."""
    tmp = Path(tmp)
    tusimple_src = lanenet_to_tusimple(root / TUSIMPLE_DIR, tmp / "tusimple_src")
    sets = {"tusimple": tmp / "tusimple", "culane": tmp / "culane"}
    import_tusimple(tusimple_src, sets["tusimple"], size=size)
    import_culane(root / CULANE_DIR, sets["culane"], culane_list(root / CULANE_DIR, tmp / "culane_list.txt"), size=size)
    return sets


__all__ = ["DEV_ENV", "culane_list", "dev_root", "import_dev_sets", "instance_lanes", "lanenet_to_tusimple"]
