"""Import Cityscapes' fine annotations into our dataset format, labels as CARLA tags.

    python -m collect.importers cityscapes ~/data/cityscapes --split val --size 160x320 --out data/cityscapes_val

Reads the official layout (ROOT as unpacked from leftImg8bit_trainvaltest.zip and
gtFine_trainvaltest.zip):

    ROOT/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Label ids become CARLA tags through `collect.cityscapes_labels` (one table, its choices
documented there). Cityscapes has no lane-marking class, so the manifest's `annotated_tags`
leaves RoadLine out and `LaneDataset(tags=(24,))` refuses the folder; multi-class tasks on
the tags it has (road, sidewalk, car, person, sky, ...) work. One episode per city; every
frame goes to our split of the same name as the Cityscapes split (the Cityscapes test
split's labels are not public: its gtFine files hold no classes).
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Unpack

import cv2
import numpy as np

from collect.cityscapes_labels import ANNOTATED_TAGS, MAX_CITYSCAPES_ID, UNMAPPED, to_tags, unknown_ids
from collect.importers.convert import ImportOptions, ImportResult, import_frames
from collect.importers.pixels import resize_labels
from collect.importers.source import Source, SourceError, SourceFrame

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
CS_SPLITS = ("train", "val", "test")
LAYOUT_HINT = (
    "ROOT must hold leftImg8bit/<split>/<city>/ and gtFine/<split>/<city>/, "
    "as unpacked from leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip"
)
TASK_NOTE = (
    "Cityscapes has no lane-marking class: painted markings are labelled road, so the binary "
    "lane task (RoadLine, 24) is undefined on it"
)


def cityscapes_labels(path: Path, src_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """A `*_gtFine_labelIds.png` as CARLA tag ids at `size`; SourceError naming the file if it is not one."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise SourceError(f"{path} does not decode as an image (re-extract gtFine_trainvaltest.zip)")
    if raw.dtype != np.uint8 or raw.ndim != 2:
        shape = "x".join(map(str, raw.shape))
        raise SourceError(
            f"{path} is {raw.dtype} {shape}, not an 8-bit single-channel labelIds image "
            "(use the *_gtFine_labelIds.png files, not *_color or *_instanceIds)"
        )
    if raw.shape != src_size:
        raise SourceError(
            f"{path} is {raw.shape[1]}x{raw.shape[0]} but its image is {src_size[1]}x{src_size[0]} "
            "(image and label files do not belong together)"
        )
    bad = unknown_ids(raw)
    if bad:
        raise SourceError(
            f"{path} holds unknown Cityscapes label id(s) {', '.join(map(str, bad[:5]))} "
            f"(labelIds are 0..{MAX_CITYSCAPES_ID}; is it a trainIds file? see collect/cityscapes_labels.py)"
        )
    return resize_labels(to_tags(raw), size)


def find_frames(root: Path, split: str) -> list[SourceFrame]:
    """Every image of `split` with its label file; SourceError on a wrong layout or a missing label."""
    images_dir, labels_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for d in (images_dir, labels_dir):
        if not d.is_dir():
            raise SourceError(f"{d} not found ({LAYOUT_HINT})")
    frames = []
    for city_dir in sorted(d for d in images_dir.iterdir() if d.is_dir()):
        for image in sorted(city_dir.glob("*" + IMAGE_SUFFIX)):
            label = labels_dir / city_dir.name / (image.name[: -len(IMAGE_SUFFIX)] + LABEL_SUFFIX)
            if not label.is_file():
                raise SourceError(f"{label} is missing: the label file of {image} (unpack gtFine_trainvaltest.zip)")
            frames.append(
                SourceFrame(
                    name=image.relative_to(root).as_posix(),
                    episode=city_dir.name,
                    town=city_dir.name,
                    image=image,
                    labels=partial(cityscapes_labels, label),
                )
            )
    if not frames:
        raise SourceError(f"{images_dir}: no <city>/*{IMAGE_SUFFIX} images ({LAYOUT_HINT})")
    return frames


def import_cityscapes(
    root: str | Path,
    out: str | Path,
    split: str = "val",
    **options: Unpack[ImportOptions],
) -> ImportResult:
    """Import one Cityscapes split from `root` into the dataset folder `out` (module doc)."""
    if split not in CS_SPLITS:
        raise SourceError(f"unknown Cityscapes split {split!r} (choose one of: {', '.join(CS_SPLITS)})")
    root = Path(root)
    source = {
        "importer": "collect.import_cityscapes",  # the forwarder: imports stay byte-identical
        "origin": str(root),
        "source_split": split,
        "labels": (
            "gtFine labelIds mapped to CARLA tags by collect/cityscapes_labels.py; classes without a "
            f"counterpart are Unlabeled (0): {', '.join(UNMAPPED)}; nearest-neighbour resize"
        ),
        "task_note": TASK_NOTE,
    }
    return import_frames(
        find_frames(root, split),
        out,
        dataset="cityscapes",
        split=split,
        annotated_tags=ANNOTATED_TAGS,
        source=source,
        **options,
    )


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="val", choices=CS_SPLITS, help="Cityscapes split, kept as ours (default val)")


SOURCE = Source(
    name="cityscapes",
    description="Import Cityscapes (gtFine labelIds) into a laneloop dataset folder, labels mapped to CARLA tags.",
    examples=(
        "python -m collect.importers cityscapes ~/data/cityscapes --split val --size 160x320 --out data/cityscapes_val",
        "python train/evaluate.py --model runs/multi/best.pth --data data/cityscapes_val --split val",
    ),
    function=import_cityscapes,
    options=lambda a: {"split": a.split},
    add_arguments=_arguments,
)
