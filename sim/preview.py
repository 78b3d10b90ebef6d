"""Contact sheet of the embedded simulator: one row per weather, RGB | labels | overlay.

python -m sim.preview --town Town03 --out docs/sim_preview.png
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from scenarios import Scenario
from sim import tags
from sim.backend import BackendError, make_backend
from sim.types import PRESET_NAMES, CameraSpec, Weather


def sheet(
    town: str, seed: int, weathers: list[str], warmup: int, camera: CameraSpec, map_file: str | None = None
) -> np.ndarray:
    """Rows of RGB | labels | overlay, one per weather, from the same place and time."""
    rows = []
    for name in weathers:
        sc = Scenario(
            name=f"preview_{name}",
            town=town,
            map=map_file,
            seed=seed,
            weathers=(Weather.preset(name),),
            cameras=(camera,),
            frames=None,
        )
        with make_backend("embedded") as sim:
            obs = sim.reset(sc)
            for _ in range(warmup):
                obs = sim.step()
        cam = obs.camera
        row = np.hstack([cam.rgb, tags.colorize(cam.labels), tags.overlay(cam.rgb, cam.labels)])
        label = np.zeros((18, row.shape[1], 3), np.uint8)
        cv2.putText(label, name, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(np.vstack([label, row]))
    return np.vstack(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sim.preview",
        description=__doc__.splitlines()[0],
        epilog="example: python -m sim.preview --town Town10HD --weather ClearNoon,HardRainNight --out sheet.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--town", default="Town03")
    ap.add_argument("--map", metavar="FILE", help="OpenDRIVE road network (.xodr) instead of the procedural town")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weather", default="all", help="comma-separated preset names, or 'all' (default)")
    ap.add_argument("--warmup", type=int, default=80, help="autopilot steps before the picture")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=160)
    ap.add_argument("--out", default="results/sim_preview.png")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    names = [n for n in PRESET_NAMES if n != "Default"] if args.weather == "all" else args.weather.split(",")
    out = Path(args.out)
    try:
        for n in names:
            Weather.preset(n)
        camera = replace(CameraSpec(), width=args.width, height=args.height)
        if out.exists() and not args.overwrite:
            raise ValueError(f"{out} exists (use --overwrite to replace it)")
        img = sheet(args.town, args.seed, names, args.warmup, camera, args.map)
    except (ValueError, BackendError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), img[..., ::-1])
    print(f"wrote {out} ({len(names)} weathers, {img.shape[1]}x{img.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
