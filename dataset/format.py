"""The dataset format on disk (DESIGN.md "Dataset"): one folder, written atomically.

    DIR/manifest.json            format version, status, backend, camera, tag table, plan, counts
                                 (imported real datasets also: source, annotated tags)
    DIR/index.parquet            one row per complete frame (INDEX_SCHEMA)
    DIR/rgb/e0000/f000000.png    RGB, 8-bit, 3 channels
    DIR/labels/e0000/f000000.png tag ids, 8-bit, 1 channel, lossless

The manifest carries the whole recording plan (episodes, their seeds, weathers, splits), so
a killed recording resumes from the folder alone. Every file is written to a temporary name
and renamed into place (`os.replace`), and the index only ever names frames whose two PNGs
are complete: a reader never sees a half-written frame.

No torch here: recording must not pay torch's import time.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from plumbing import atomic_output, atomic_write_bytes
from sim.tags import MAX_TAG, ROAD_LINE, TAGS

FORMAT_NAME = "laneloop-dataset"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.parquet"
RGB_DIR = "rgb"
LABEL_DIR = "labels"
TMP_SUFFIX = ".tmp"
SPLITS = ("train", "val", "test")
STATUS_RECORDING = "recording"
STATUS_COMPLETE = "complete"
N_TAGS = MAX_TAG + 1

#: Low zlib level: PNG stays lossless, encoding is several times faster than the default 3.
PNG_COMPRESSION = 1
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"


class DatasetError(ValueError):
    """A dataset folder that cannot be used; the message says what is wrong and what to do."""


# ----------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class EpisodePlan:
    """One planned episode: a pure function of (scenario, seed, episode index)."""

    episode: int
    seed: int
    split: str
    weather: str
    frames: int  # recorded frames (ticks = (frames - 1) * every + 1)


@dataclass
class Manifest:
    """`manifest.json`: what was recorded, how, and the plan to finish it."""

    backend: str
    town: str
    scenario: dict[str, Any]  # name, source, dt, npc_vehicles, target_speed, ...
    seed: int
    every: int
    camera: dict[str, Any]  # CameraSpec fields
    episodes: list[EpisodePlan]
    split_fractions: dict[str, float]
    status: str = STATUS_RECORDING
    counts: dict[str, int] = field(default_factory=dict)  # frames per split, when complete
    tag_pixels: list[int] = field(default_factory=list)  # pixels per tag id, when complete
    tags: dict[str, list] = field(
        default_factory=lambda: {str(i): [name, list(rgb)] for i, (name, rgb) in TAGS.items()}
    )
    # Optional, for frames imported from a real dataset (collect/importers/); absent from
    # the JSON when None, so simulator recordings keep the keys older readers know.
    source: dict[str, Any] | None = None  # dataset, origin, label rules, notes, id -> source file
    annotated_tags: list[int] | None = None  # tags the labels define; None: all (a simulator labels every pixel)
    # Optional: the index's `lanes` column holds each frame's lane boundaries (sim/lane_instances.py):
    # {"format": "tusimple", "h_samples": rows of the frame, "range_m": visibility range}.
    lane_instances: dict[str, Any] | None = None
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    @property
    def planned_frames(self) -> int:
        return sum(e.frames for e in self.episodes)

    @property
    def width(self) -> int:
        return int(self.camera["width"])

    @property
    def height(self) -> int:
        return int(self.camera["height"])

    def split_of(self) -> dict[int, str]:
        """Episode index -> split."""
        return {e.episode: e.split for e in self.episodes}

    def unannotated(self, tags: list[int] | tuple[int, ...]) -> list[int]:
        """The tags of `tags` this dataset's labels do not define (scoring them would be meaningless)."""
        if self.annotated_tags is None:
            return []
        return [t for t in tags if t not in self.annotated_tags]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["episodes"] = [asdict(e) for e in self.episodes]
        for key in _OPTIONAL_KEYS:
            if d[key] is None:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = MANIFEST_NAME) -> Manifest:
        """Validate parsed JSON; a foreign or newer format is an error, not a guess."""
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise DatasetError(f"{where}: not a laneloop dataset manifest (record one with collect/record.py)")
        if data.get("format_version") != FORMAT_VERSION:
            raise DatasetError(
                f"{where}: format version {data.get('format_version')!r}, this laneloop reads "
                f"{FORMAT_VERSION} (re-record, or use the laneloop version that wrote it)"
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise DatasetError(f"{where}: unknown key {unknown[0]!r} (file edited by hand?)")
        try:
            kw = dict(data)
            kw["episodes"] = [EpisodePlan(**e) for e in data["episodes"]]
            return cls(**kw)
        except (KeyError, TypeError) as e:
            raise DatasetError(f"{where}: malformed manifest ({e}); re-record the dataset") from None


_OPTIONAL_KEYS = ("source", "annotated_tags", "lane_instances")


def read_manifest(root: str | Path) -> Manifest:
    """The manifest of a dataset folder, or DatasetError saying why there is none."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(
            f"{root}: no {MANIFEST_NAME} (not a dataset folder; record one with collect/record.py --out DIR)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: unreadable ({e}); re-record the dataset") from None
    return Manifest.from_dict(data, where=str(path))


def write_manifest(root: str | Path, manifest: Manifest) -> None:
    """Atomically (re)write the manifest, stamping `updated`."""
    manifest.updated = time.time()
    text = json.dumps(manifest.to_dict(), indent=1, sort_keys=False) + "\n"
    atomic_write_bytes(Path(root) / MANIFEST_NAME, text.encode("utf-8"), fsync=True)


# ----------------------------------------------------------------------------- index

INDEX_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("split", pa.string()),
        ("episode", pa.int32()),
        ("frame", pa.int32()),  # recorded frame within the episode
        ("tick", pa.int64()),  # simulator tick within the episode
        ("sim_time", pa.float64()),
        ("town", pa.string()),
        ("weather", pa.string()),
        ("x", pa.float64()),
        ("y", pa.float64()),
        ("z", pa.float64()),
        ("yaw", pa.float64()),
        ("speed", pa.float64()),
        ("lane_id", pa.int32()),
        ("lateral_offset", pa.float64()),
        ("heading_error", pa.float64()),
        ("in_junction", pa.bool_()),  # None where the backend does not know
        ("rgb", pa.string()),  # path relative to the dataset folder, '/' separated
        ("label", pa.string()),
        ("lane_pixels", pa.int32()),  # pixels tagged RoadLine
        ("tag_pixels", pa.list_(pa.int32(), N_TAGS)),  # pixels per tag id 0..MAX_TAG
    ]
)
INDEX_COLUMNS: tuple[str, ...] = tuple(INDEX_SCHEMA.names)
#: Optional column of datasets whose manifest has `lane_instances`: per frame a JSON list of
#: lanes, each the x of a lane boundary at the manifest's h_samples, -2 where absent (TuSimple's form).
LANES_COLUMN = "lanes"
#: Optional column of recordings with a look other than the default (sim/embedded/look.py): per
#: frame a JSON object of the knobs that made it (colours, wear, camera mounting, effects).
LOOK_COLUMN = "look"
OPTIONAL_COLUMNS: tuple[str, ...] = (LANES_COLUMN, LOOK_COLUMN)


def frame_lanes(row: dict[str, Any], n_rows: int, root: Path | str = "") -> list[np.ndarray]:
    """One index row's lane boundaries (x per h_sample, -2 where absent), as the `lanes` column holds them."""
    try:
        lanes = json.loads(row.get(LANES_COLUMN) or "null")
    except ValueError:
        lanes = None
    if not isinstance(lanes, list) or any(not isinstance(x, list) or len(x) != n_rows for x in lanes):
        raise DatasetError(
            f"{root}: frame {row.get('id')} has no valid lane instances for {n_rows} rows "
            "(re-record it with --lane-labels)"
        )
    return [np.asarray(x, np.float64) for x in lanes]


def frame_id(episode: int, frame: int) -> str:
    """Unique id of a frame within one dataset folder."""
    return f"e{episode:04d}_f{frame:06d}"


def rgb_relpath(episode: int, frame: int) -> str:
    return f"{RGB_DIR}/e{episode:04d}/f{frame:06d}.png"


def label_relpath(episode: int, frame: int) -> str:
    return f"{LABEL_DIR}/e{episode:04d}/f{frame:06d}.png"


def tag_histogram(labels: np.ndarray) -> np.ndarray:
    """Pixels per tag id 0..MAX_TAG (ids above MAX_TAG are invalid and not counted)."""
    return np.bincount(labels.ravel(), minlength=256)[:N_TAGS].astype(np.int64)


def write_index(root: str | Path, rows: list[dict[str, Any]]) -> None:
    """Atomically replace the index with `rows` (each a dict of INDEX_COLUMNS)."""
    schema = INDEX_SCHEMA
    for col in OPTIONAL_COLUMNS:
        if rows and col in rows[0]:
            schema = schema.append(pa.field(col, pa.string()))
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_output(Path(root) / INDEX_NAME, fsync=True) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_index(root: str | Path) -> list[dict[str, Any]]:
    """Index rows, in recording order; a missing or foreign index is a DatasetError."""
    path = Path(root) / INDEX_NAME
    if not path.is_file():
        return []
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise DatasetError(f"{path}: unreadable index ({e}); rerun record.py --resume to rebuild") from None
    missing = [c for c in INDEX_COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: index lacks column {missing[0]!r} (written by another tool?)")
    extra = [c for c in OPTIONAL_COLUMNS if c in table.column_names]
    return table.select(list(INDEX_COLUMNS) + extra).to_pylist()


# ----------------------------------------------------------------------------- files


def encode_rgb_png(rgb: np.ndarray) -> bytes:
    """HxWx3 uint8 RGB -> PNG bytes (OpenCV wants BGR: convert here, at file I/O only)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), _PNG_PARAMS)
    if not ok:  # pragma: no cover - OpenCV failure
        raise ValueError("PNG encoding of an RGB image failed")
    return buf.tobytes()


def encode_label_png(labels: np.ndarray) -> bytes:
    """HxW uint8 tag ids -> single-channel lossless PNG bytes."""
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise ValueError(f"labels must be HxW uint8, got {labels.shape} {labels.dtype}")
    ok, buf = cv2.imencode(".png", labels, _PNG_PARAMS)
    if not ok:  # pragma: no cover - OpenCV failure
        raise ValueError("PNG encoding of a label image failed")
    return buf.tobytes()


def png_is_complete(data: bytes) -> bool:
    """True when `data` starts with the PNG signature and ends with the IEND chunk.

    A truncated file can still decode partially in libpng; this catches it cheaply.
    """
    return data[:8] == _PNG_SIGNATURE and data[-8:] == _PNG_IEND


def decode_png(data: bytes, channels: int) -> np.ndarray:
    """PNG bytes -> RGB (channels=3, converted from OpenCV's BGR) or HxW (channels=1).

    Raises ValueError for a truncated or undecodable file, or the wrong channel count.
    """
    if not png_is_complete(data):
        raise ValueError("not a complete PNG (truncated or foreign file)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("PNG does not decode")
    if img.dtype != np.uint8:
        raise ValueError(f"PNG is {img.dtype}, expected 8-bit")
    got = 1 if img.ndim == 2 else img.shape[2]
    if got != channels:
        raise ValueError(f"PNG has {got} channel(s), expected {channels}")
    if channels == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def read_rgb(path: str | Path) -> np.ndarray:
    """An RGB PNG of the dataset as HxWx3 uint8 in RGB order."""
    return decode_png(Path(path).read_bytes(), 3)


def read_labels(path: str | Path) -> np.ndarray:
    """A label PNG of the dataset as HxW uint8 tag ids."""
    return decode_png(Path(path).read_bytes(), 1)


__all__ = [
    "DatasetError",
    "EpisodePlan",
    "FORMAT_VERSION",
    "LANES_COLUMN",
    "LOOK_COLUMN",
    "INDEX_COLUMNS",
    "INDEX_NAME",
    "INDEX_SCHEMA",
    "LABEL_DIR",
    "MANIFEST_NAME",
    "Manifest",
    "RGB_DIR",
    "ROAD_LINE",
    "SPLITS",
    "decode_png",
    "encode_label_png",
    "encode_rgb_png",
    "frame_id",
    "frame_lanes",
    "label_relpath",
    "png_is_complete",
    "read_index",
    "read_labels",
    "read_manifest",
    "read_rgb",
    "rgb_relpath",
    "tag_histogram",
    "write_index",
    "write_manifest",
]
