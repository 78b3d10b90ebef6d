"""summary.json: one run's outcome and each model's accuracy, latency and lane keeping, from the loop's state."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from harness.contracts import LoopConfig, LoopTimes, ModelSlot
from harness.track import ModelTrack


def planned_frames(cfg: LoopConfig) -> int | None:
    """Frames an episode is meant to run: --frames, else the scenario's (None: it ends by distance)."""
    return cfg.frames if cfg.frames is not None else cfg.scenario.frames


def model_summary(cfg: LoopConfig, slot: ModelSlot, tr: ModelTrack | None) -> dict[str, Any]:
    """One model's entry of summary.json: accuracy, latency, deadlines, episode end, lane keeping."""
    info = {
        "name": slot.name,
        "path": slot.path,
        "scheme": slot.scheme,
        "size_bytes": slot.size_bytes,
        "size_mb": slot.size_bytes / 1e6,
        **slot.info,
    }
    if tr is None:
        return {**info, "frames": 0, "episode": {"frames": 0, "end_reason": "not_run", "ended_early": False}}
    scores = tr.scorer.compute()
    lat = np.asarray(tr.latency, float)
    split = np.asarray(tr.split, float).reshape(-1, 3)

    def pct(q: float) -> float:
        return float(np.percentile(lat, q)) if lat.size else math.nan

    budget_ms = cfg.scenario.dt * 1000.0
    planned = planned_frames(cfg)
    target = (
        cfg.scenario.metres
        if cfg.frames is None and cfg.scenario.metres is not None
        else cfg.scenario.target_speed * (planned or tr.frames) * cfg.scenario.dt
    )
    lane = tr.meter.summary(target)
    return {
        **info,
        "frames": tr.frames,
        "inferred_frames": int(lat.size),
        "mean_iou": scores.get("mean_frame_iou"),
        "dataset_iou": scores.get("iou"),
        "iou_lane_frames": tr.lane_iou_sum / tr.lane_iou_frames if tr.lane_iou_frames else math.nan,
        "precision": scores.get("precision"),
        "recall": scores.get("recall"),
        "empty_frames": scores.get("empty_frames"),
        "latency_ms": {
            "p50": pct(50),
            "p90": pct(90),
            "p99": pct(99),
            "max": float(lat.max()) if lat.size else math.nan,
            "mean": float(lat.mean()) if lat.size else math.nan,
            "preprocess_mean": float(split[:, 0].mean()) if lat.size else math.nan,
            "inference_mean": float(split[:, 1].mean()) if lat.size else math.nan,
            "postprocess_mean": float(split[:, 2].mean()) if lat.size else math.nan,
        },
        "fps": 1000.0 / float(lat.mean()) if lat.size and lat.mean() > 0 else math.nan,
        "frame_budget_ms": budget_ms,
        "deadline_misses": tr.misses,
        "deadline_miss_rate": tr.misses / tr.frames if tr.frames else math.nan,
        "episode": {
            "frames": tr.frames,
            "sim_time_s": tr.sim_time,
            "end_reason": tr.end_reason,
            "ended_early": tr.end_reason not in ("completed",),
        },
        "lane_keeping": lane if cfg.drive == "model" else None,
        "autopilot_lane_keeping": lane if cfg.drive == "autopilot" else None,
    }


def run_summary(
    cfg: LoopConfig,
    run_name: str,
    started: str,
    end: str,
    strip: list[dict[str, Any]],
    rows: int,
    times: LoopTimes,
    models: list[dict[str, Any]],
) -> dict[str, Any]:
    """summary.json of a run: what ran, how it ended, where the time went, and each model's entry."""
    sc = cfg.scenario
    cam = sc.cameras[0]
    return {
        "run": run_name,
        "created": started,
        "command": cfg.command,
        "scenario": sc.name,
        "scenario_source": sc.source,
        "town": sc.town,
        "map": sc.map,
        "weathers": [w.name for w in sc.weathers],
        "seed": cfg.seed_value,
        "drive": cfg.drive,
        "realtime": cfg.realtime,
        "junctions": cfg.junctions if cfg.drive == "model" else None,
        "backend": cfg.backend,
        "dt": sc.dt,
        "target_speed": sc.target_speed,
        "frames_planned": planned_frames(cfg),
        "camera": asdict(cam),
        "threads": cfg.threads,
        "runtime": cfg.runtime,
        "end": end,
        "interrupted": end in ("interrupted", "quit"),
        "rows": rows,
        "loop_fps": times.ticks / max(times.wall_s - times.reset_s, 1e-9),
        "loop_ms_per_tick": times.per_tick_ms(),
        "loop_ticks": times.ticks,
        "strip": len(strip),
        "models": models,
    }


__all__ = ["model_summary", "planned_frames", "run_summary"]
