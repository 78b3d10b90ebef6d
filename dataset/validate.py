"""Check a dataset folder: manifest vs index vs files. Non-zero exit on any defect.

    python -m dataset.validate data/town03

Defects: no or foreign manifest, unreadable index, duplicate ids or frames, frames outside
the plan, an episode in two splits or in a split the plan does not give it, a missing,
truncated or undecodable PNG, a wrong size or channel count, a tag id outside the tag table,
labels that disagree with the index's pixel counts, an unfinished recording. Leftover
temporary files and PNGs that the index does not name are reported as warnings (a killed
recording leaves them; `record.py --resume` cleans them up).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataset.format import (
    INDEX_NAME,
    LABEL_DIR,
    LANES_COLUMN,
    RGB_DIR,
    SPLITS,
    STATUS_COMPLETE,
    TMP_SUFFIX,
    DatasetError,
    Manifest,
    decode_png,
    read_index,
    read_manifest,
    tag_histogram,
)
from sim.tags import MAX_TAG


@dataclass
class ValidationReport:
    """Outcome of `validate`: defects make a dataset unusable, warnings do not."""

    root: Path
    frames: int = 0
    planned: int = 0
    defects: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.defects

    def format(self, max_items: int = 20) -> str:
        """Human-readable report, listing at most `max_items` defects and warnings each."""
        head = "OK" if self.ok else f"{len(self.defects)} defect(s)"
        lines = [f"{self.root}: {head}; {self.frames} of {self.planned} planned frames indexed"]
        if self.splits:
            order = sorted(self.splits, key=lambda k: (SPLITS.index(k) if k in SPLITS else len(SPLITS), k))
            lines.append("  splits: " + ", ".join(f"{k} {self.splits[k]}" for k in order))
        for title, items in (("defect", self.defects), ("warning", self.warnings)):
            for msg in items[:max_items]:
                lines.append(f"  {title}: {msg}")
            if len(items) > max_items:
                lines.append(f"  ... and {len(items) - max_items} more {title}s")
        return "\n".join(lines)


def _check_frame(root: Path, row: dict[str, Any], width: int, height: int) -> list[str]:
    out = []
    fid = row["id"]
    labels = None
    for key, channels in (("rgb", 3), ("label", 1)):
        path = root / row[key]
        try:
            img = decode_png(path.read_bytes(), channels)
        except FileNotFoundError:
            out.append(f"{fid}: {key} file {row[key]} is missing")
            continue
        except (OSError, ValueError) as e:
            out.append(f"{fid}: {key} file {row[key]}: {e}")
            continue
        if img.shape[:2] != (height, width):
            out.append(f"{fid}: {key} is {img.shape[1]}x{img.shape[0]}, the manifest says {width}x{height}")
            continue
        if key == "label":
            labels = img
    if labels is not None:
        top = int(labels.max())
        if top > MAX_TAG:
            out.append(f"{fid}: label holds tag id {top}, outside the tag table 0..{MAX_TAG}")
        elif list(row["tag_pixels"]) != tag_histogram(labels).tolist():
            out.append(f"{fid}: label pixels differ from the index's counts (file changed after recording)")
    return out


def _check_lanes(manifest: Manifest, rows: list[dict[str, Any]]) -> list[str]:
    """Lane instances (manifest `lane_instances`): every frame has a JSON list of lanes, one x per h_samples row."""
    spec = manifest.lane_instances
    if spec is None:
        return []
    n = len(spec.get("h_samples", []))
    if spec.get("format") != "tusimple" or n == 0:
        return [f"manifest lane_instances {spec!r} is not TuSimple rows (re-record with --lane-labels)"]
    out = []
    for r in rows:
        try:
            lanes = json.loads(r.get(LANES_COLUMN) or "null")
        except ValueError:
            lanes = None
        if not isinstance(lanes, list) or any(
            not isinstance(x, list) or len(x) != n or not all(isinstance(v, (int, float)) for v in x) for x in lanes
        ):
            out.append(f"{r['id']}: lanes is not a list of lanes of {n} x values (the manifest has lane instances)")
    return out


def validate(root: str | Path, workers: int = 2) -> ValidationReport:
    """Check one dataset folder; never raises for a defect, reports it."""
    root = Path(root)
    report = ValidationReport(root=root)
    try:
        manifest: Manifest = read_manifest(root)
    except DatasetError as e:
        report.defects.append(str(e))
        return report
    report.planned = manifest.planned_frames
    try:
        rows = read_index(root)
    except DatasetError as e:
        report.defects.append(str(e))
        return report
    if not (root / INDEX_NAME).is_file() and manifest.status == STATUS_COMPLETE:
        report.defects.append(f"{INDEX_NAME} is missing but the manifest says complete")
    report.frames = len(rows)
    plan = {p.episode: p for p in manifest.episodes}

    ids: dict[str, int] = defaultdict(int)
    keys: dict[tuple[int, int], int] = defaultdict(int)
    episode_splits: dict[int, set[str]] = defaultdict(set)
    for r in rows:
        ids[r["id"]] += 1
        keys[(r["episode"], r["frame"])] += 1
        episode_splits[r["episode"]].add(r["split"])
        report.splits[r["split"]] = report.splits.get(r["split"], 0) + 1
        p = plan.get(r["episode"])
        if p is None or not 0 <= r["frame"] < p.frames:
            report.defects.append(f"{r['id']}: episode {r['episode']} frame {r['frame']} is not in the plan")
    report.defects += [f"id {i} appears {n} times in the index" for i, n in ids.items() if n > 1]
    report.defects += [f"episode {e} frame {f} appears {n} times in the index" for (e, f), n in keys.items() if n > 1]
    for e, splits in sorted(episode_splits.items()):
        if len(splits) > 1:
            report.defects.append(f"episode {e} is in several splits ({', '.join(sorted(splits))}): splits overlap")
        elif e in plan and splits != {plan[e].split}:
            report.defects.append(f"episode {e} is in {next(iter(splits))}, the manifest plans {plan[e].split}")

    report.defects += _check_lanes(manifest, rows)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for problems in pool.map(lambda r: _check_frame(root, r, manifest.width, manifest.height), rows):
            report.defects += problems

    unique = len(keys)
    if manifest.status != STATUS_COMPLETE or unique < manifest.planned_frames:
        report.defects.append(
            f"recording unfinished: {unique} of {manifest.planned_frames} frames "
            f"(finish it with: python collect/record.py --resume --out {root})"
        )
    elif manifest.counts and {k: v for k, v in manifest.counts.items() if v} != {
        k: v for k, v in report.splits.items() if v
    }:
        report.defects.append(f"manifest counts {manifest.counts} differ from the index {report.splits}")

    named = {r[k] for r in rows for k in ("rgb", "label")}
    tmp = [p for p in root.rglob("*" + TMP_SUFFIX)]
    if tmp:
        report.warnings.append(f"{len(tmp)} leftover temporary file(s), e.g. {tmp[0].relative_to(root)}")
    orphans = [
        p
        for sub in (RGB_DIR, LABEL_DIR)
        for p in (root / sub).rglob("*.png")
        if p.relative_to(root).as_posix() not in named
    ]
    if orphans:
        report.warnings.append(
            f"{len(orphans)} PNG file(s) not named by the index, e.g. {orphans[0].relative_to(root)}"
        )
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI: validate one or more folders; exit 1 when any has a defect."""
    p = argparse.ArgumentParser(
        prog="python -m dataset.validate",
        description="Check recorded datasets: manifest vs index vs files.",
        epilog="example:\n  python -m dataset.validate data/town03 data/town10",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="dataset folder(s)")
    p.add_argument("--max-items", type=int, default=20, help="defects/warnings listed per folder (default 20)")
    args = p.parse_args(argv)
    bad = 0
    for d in args.dirs:
        report = validate(d)
        print(report.format(args.max_items))
        bad += not report.ok
    if bad:
        print(
            f"error: {bad} of {len(args.dirs)} dataset(s) have defects (see above; re-record or --resume)",
            file=sys.stderr,
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["ValidationReport", "main", "validate"]
