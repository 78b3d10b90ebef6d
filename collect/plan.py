"""The plan of a recording: its episodes with their seeds, weathers, lengths and splits.

A plan is pure data (the manifest), made before any frame is simulated, so that a resumed
recording re-simulates exactly the episodes an uninterrupted run would have.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import numpy as np

from dataset.format import SPLITS, EpisodePlan, Manifest
from scenarios import Scenario
from sim.types import PRESET_NAMES, CameraSpec, Weather

#: `--weather cycle` walks the presets in this order, one per episode: noon, sunset and night
#: alternate, so that even a few episodes cover the light conditions.
WEATHER_CYCLE: tuple[str, ...] = (
    "ClearNoon",
    "WetSunset",
    "ClearNight",
    "CloudyNoon",
    "HardRainSunset",
    "WetNight",
    "SoftRainNoon",
    "ClearSunset",
    "CloudyNight",
    "HardRainNoon",
    "CloudySunset",
    "SoftRainNight",
    "WetNoon",
    "SoftRainSunset",
    "WetCloudyNight",
    "MidRainyNoon",
    "WetCloudySunset",
    "MidRainyNight",
    "WetCloudyNoon",
    "MidRainSunset",
    "HardRainNight",
    "DustStorm",
)
DEFAULT_FRAMES = 600
DEFAULT_EPISODES = 6
DEFAULT_EVERY = 2
DEFAULT_SPLIT = "train=0.8,val=0.1,test=0.1"


def parse_split(spec: str) -> dict[str, float]:
    """'train=0.8,val=0.1,test=0.1' -> normalised fractions (ValueError on a bad spec)."""
    out: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in SPLITS:
            raise ValueError(f"bad split {part!r} (write e.g. {DEFAULT_SPLIT}; names: {', '.join(SPLITS)})")
        try:
            frac = float(value)
        except ValueError:
            raise ValueError(f"bad split fraction {value!r} in {part!r} (a number such as 0.8)") from None
        if frac < 0 or name in out:
            raise ValueError(f"bad split {part!r} (fractions are >= 0, each split named once)")
        out[name] = frac
    total = sum(out.values())
    if total <= 0:
        raise ValueError(f"split {spec!r} has no positive fraction (write e.g. {DEFAULT_SPLIT})")
    return {k: v / total for k, v in out.items()}


def assign_splits(n_episodes: int, fractions: dict[str, float], seed: int) -> list[str]:
    """Split of each episode: counts by largest remainder, every named split gets one episode
    when there are enough, and which episode goes where is a seeded shuffle."""
    names = [s for s in SPLITS if fractions.get(s, 0) > 0]
    raw = {s: fractions[s] * n_episodes for s in names}
    counts = {s: int(raw[s]) for s in names}
    for s in sorted(names, key=lambda s: raw[s] - counts[s], reverse=True)[: n_episodes - sum(counts.values())]:
        counts[s] += 1
    if n_episodes >= len(names):
        for s in names:
            if counts[s] == 0:
                donor = max(names, key=lambda d: counts[d])
                counts[donor] -= 1
                counts[s] += 1
    labels = [s for s in names for _ in range(counts[s])]
    order = np.random.default_rng([seed, 0x5B117]).permutation(n_episodes)
    return [labels[i] for i in order]


def episode_seed(seed: int, episode: int) -> int:
    """Seed of one episode, derived from the recording seed (independent streams per episode)."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def _scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    return asdict(scenario)


def _scenario_from_dict(data: dict[str, Any]) -> Scenario:
    """Inverse of `scenario_to_dict` (the manifest keeps the scenario to resume from it)."""
    d = dict(data)
    d["weathers"] = tuple(Weather(**w) for w in d["weathers"])
    d["cameras"] = tuple(CameraSpec(**c) for c in d["cameras"])
    return Scenario(**d)


def plan_recording(
    scenario: Scenario,
    *,
    backend: str = "embedded",
    episodes: int = DEFAULT_EPISODES,
    frames: int | None = DEFAULT_FRAMES,
    episode_frames: int | None = None,
    every: int = DEFAULT_EVERY,
    weather: str | None = "cycle",
    seed: int | None = None,
    split: str | dict[str, float] = DEFAULT_SPLIT,
    lane_labels: bool = False,
) -> Manifest:
    """The manifest of a new recording: the episodes with their seeds, weathers and splits.

    `frames` is the total, spread over `episodes`; `episode_frames` (if given) is per episode.
    `weather`: a preset name, "cycle" (one preset per episode, WEATHER_CYCLE), or None for the
    scenario's own weather(s). Only the scenario's first camera is recorded.
    `lane_labels`: every frame also carries its lane boundaries (sim/lane_instances.py; the
    embedded backend only, which knows the road geometry).
    """
    if lane_labels and backend != "embedded":
        raise ValueError("--lane-labels needs the embedded backend (it reads the road network's geometry)")
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    if episode_frames is not None:
        if episode_frames < 1:
            raise ValueError(f"--episode-frames must be >= 1, got {episode_frames}")
        per_episode = [episode_frames] * episodes
    else:
        total = DEFAULT_FRAMES if frames is None else frames
        if total < 1:
            raise ValueError(f"--frames must be >= 1, got {total}")
        episodes = min(episodes, total)
        per_episode = [total // episodes + (1 if e < total % episodes else 0) for e in range(episodes)]
    if weather not in (None, "cycle") and weather not in PRESET_NAMES:
        raise ValueError(f"unknown weather {weather!r} (choose cycle or one of: {', '.join(PRESET_NAMES)})")
    fractions = parse_split(split) if isinstance(split, str) else dict(split)
    seed = scenario.seed if seed is None else seed
    scenario = replace(scenario, seed=seed, cameras=scenario.cameras[:1])
    splits = assign_splits(episodes, fractions, seed)
    plans = []
    for e in range(episodes):
        if weather == "cycle":
            w = WEATHER_CYCLE[e % len(WEATHER_CYCLE)]
        elif weather is None:
            w = ",".join(x.name for x in scenario.weathers)
        else:
            w = weather
        plans.append(
            EpisodePlan(episode=e, seed=episode_seed(seed, e), split=splits[e], weather=w, frames=per_episode[e])
        )
    return Manifest(
        backend=backend,
        town=scenario.place,
        scenario=_scenario_to_dict(scenario),
        seed=seed,
        every=every,
        camera=asdict(scenario.cameras[0]),
        episodes=plans,
        split_fractions=fractions,
        lane_instances=lane_instance_spec(scenario.cameras[0]) if lane_labels else None,
    )


def lane_instance_spec(camera: Any) -> dict[str, Any]:
    """The manifest's `lane_instances` entry: TuSimple's rows at this camera's height."""
    from sim.lane_instances import RANGE_M, frame_rows

    return {"format": "tusimple", "h_samples": frame_rows(camera.height).tolist(), "range_m": RANGE_M}


def episode_scenario(manifest: Manifest, plan: EpisodePlan) -> Scenario:
    """The scenario one episode runs: the recording's, with this episode's seed, length, weather."""
    base = _scenario_from_dict(manifest.scenario)
    ticks = (plan.frames - 1) * manifest.every + 1
    kw: dict[str, Any] = {"seed": plan.seed, "frames": ticks, "metres": None}
    if plan.weather in PRESET_NAMES:
        kw["weathers"] = (Weather.preset(plan.weather),)
    return replace(base, **kw)
