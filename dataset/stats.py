"""Counts over a dataset's index rows: frames per split, pixels per tag, the summary a
recording ends with. Shared by the writer (the manifest's counts), the importers and record.py."""

from __future__ import annotations

from typing import Any

import numpy as np

from dataset.format import N_TAGS, SPLITS
from sim.tags import NAMES, ROAD_LINE


def split_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Frames per split (every split of SPLITS listed, zeros included)."""
    counts = dict.fromkeys(SPLITS, 0)
    for r in rows:
        counts[r["split"]] = counts.get(r["split"], 0) + 1
    return counts


def tag_totals(rows: list[dict[str, Any]]) -> np.ndarray:
    """Pixels per tag id summed over rows."""
    if not rows:
        return np.zeros(N_TAGS, dtype=np.int64)
    return np.asarray([r["tag_pixels"] for r in rows], dtype=np.int64).sum(axis=0)


def summarize(rows: list[dict[str, Any]], top: int = 8) -> str:
    """Frames per split, class pixel shares, RoadLine share, frames without lane marking."""
    counts = split_counts(rows)
    episodes: dict[str, set[int]] = {s: set() for s in counts}
    for r in rows:
        episodes.setdefault(r["split"], set()).add(r["episode"])
    lines = [f"{'split':<6} {'frames':>7} {'episodes':>9}"]
    for s, n in counts.items():
        lines.append(f"{s:<6} {n:>7} {len(episodes[s]):>9}")
    totals = tag_totals(rows)
    pixels = int(totals.sum())
    if pixels:
        order = np.argsort(totals)[::-1][:top]
        shares = ", ".join(f"{NAMES[int(i)]} {100 * totals[i] / pixels:.1f}%" for i in order if totals[i])
        lines.append(f"class pixel shares: {shares}")
        lines.append(f"RoadLine share: {100 * totals[ROAD_LINE] / pixels:.2f}% of pixels")
    no_lane = sum(1 for r in rows if r["lane_pixels"] == 0)
    share = 100 * no_lane / len(rows) if rows else 0.0
    lines.append(f"frames without any lane marking: {no_lane} of {len(rows)} ({share:.1f}%)")
    return "\n".join(lines)


__all__ = ["split_counts", "summarize", "tag_totals"]
