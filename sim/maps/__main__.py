"""OpenDRIVE maps for the embedded simulator: check a file, draw it, export a town, pull a server's map.

python -m sim.maps check ../shared/data/opendrive/Town03.xodr
python -m sim.maps picture ../shared/data/opendrive/Town03.xodr --out town03.png
python -m sim.maps export Town03 --out town03.xodr
python -m sim.maps pull --host 127.0.0.1 --port 2000 --out live.xodr
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


class MapCliError(Exception):
    """A bad argument or input: printed as one line, exit code 1."""


def _check(args: argparse.Namespace) -> int:
    from sim.maps.load import load_map

    t0 = time.perf_counter()
    town, md = load_map(args.file, use_cache=not args.no_cache)
    net = town.network
    n_junction = sum(ln.road is None for ln in net.lanes)
    print(
        f"{args.file}: {len(net.lanes)} lanes ({n_junction} in junctions), {len(net.junctions)} junctions, "
        f"{len(net.markings)} markings, {len(md.curbs)} curbs, {len(net.spawn_points)} spawn points; "
        f"{md.outside_graph} drivable pieces outside the connected network; {time.perf_counter() - t0:.2f} s"
    )
    return 0


def _picture(args: argparse.Namespace) -> int:
    from sim.maps.picture import top_view

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise MapCliError(f"{out} exists (use --overwrite to replace it)")
    img = top_view(args.file, args.px)
    import cv2

    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), img[..., ::-1])
    print(f"wrote {out} ({img.shape[1]}x{img.shape[0]})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from sim.embedded.towns import town_names
    from sim.maps.export import export_town

    if args.town not in town_names():
        raise MapCliError(f"unknown town {args.town!r} (choose one of: {', '.join(town_names())})")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise MapCliError(f"{out} exists (use --overwrite to replace it)")
    text = export_town(args.town)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out} ({len(text) / 1e6:.1f} MB)")
    return 0


def _pull(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise MapCliError(f"{out} exists (use --overwrite to replace it)")
    try:
        import carla
    except ImportError:
        raise MapCliError("the carla package is not installed (pip install 'laneloop[carla]')") from None
    try:
        client = carla.Client(args.host, args.port)
        client.set_timeout(args.timeout)
        text = client.get_world().get_map().to_opendrive()
    except RuntimeError as e:
        raise MapCliError(
            f"CARLA server at {args.host}:{args.port}: {str(e).splitlines()[0]} (is it running?)"
        ) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(text) / 1e6:.1f} MB)")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sim.maps",
        description=__doc__.splitlines()[0],
        epilog="\n".join(line.strip() for line in __doc__.splitlines()[2:] if line.strip()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="read and convert a file (and cache the build); one line of figures")
    c.add_argument("file")
    c.add_argument("--no-cache", action="store_true", help="build from scratch and do not store the build")
    c.set_defaults(run=_check)
    c = sub.add_parser("picture", help="top-down picture of a file's ground (lanes, marks, junctions)")
    c.add_argument("file")
    c.add_argument("--out", required=True)
    c.add_argument("--px", type=int, default=2000, help="width of the picture in pixels (default 2000)")
    c.add_argument("--overwrite", action="store_true")
    c.set_defaults(run=_picture)
    c = sub.add_parser("export", help="write a procedural town as OpenDRIVE 1.4 (readable by carla.Map)")
    c.add_argument("town")
    c.add_argument("--out", required=True)
    c.add_argument("--overwrite", action="store_true")
    c.set_defaults(run=_export)
    c = sub.add_parser("pull", help="save a CARLA server's current map (world.get_map().to_opendrive())")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=2000)
    c.add_argument("--timeout", type=float, default=10.0)
    c.add_argument("--out", required=True)
    c.add_argument("--overwrite", action="store_true")
    c.set_defaults(run=_pull)
    return p


def main(argv: list[str] | None = None) -> int:
    from sim.maps.opendrive import OpenDriveError

    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (MapCliError, OpenDriveError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
