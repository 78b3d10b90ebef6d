"""python -m sim.carla_server [--port 2000] [--town Town03 | --map FILE.xodr]"""

from __future__ import annotations

import argparse
import sys
import time

EXAMPLE = """example:
  python -m sim.carla_server --port 2000 --town Town03 &
  python -c "import carla; print(carla.Client('127.0.0.1', 2000).get_world().get_map().name)"
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sim.carla_server",
        description="The embedded world behind CARLA 0.9.16's wire protocol: the real carla client connects to it.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    ap.add_argument("--port", type=int, default=2000, help="world (RPC) port; streams use a free port")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--town", default=None, help="procedural town (default Town03)")
    where.add_argument("--map", default=None, metavar="FILE", help="OpenDRIVE file (.xodr)")
    ap.add_argument("--seed", type=int, default=0, help="renderer seed (sky, rain)")
    ap.add_argument(
        "--no-traffic-lights",
        action="store_true",
        help="no traffic light actors and no stop signs: every vehicle's light state is Green",
    )
    ap.add_argument("--debug", action="store_true", help="log every RPC call on stderr")
    args = ap.parse_args(argv)

    try:
        import msgpack  # noqa: F401
    except ImportError:
        print("error: the CARLA server needs msgpack (pip install 'laneloop[carla]')", file=sys.stderr)
        return 1

    from sim.carla_server.mapdata import MapError
    from sim.carla_server.server import CarlaServer

    try:
        server = CarlaServer(
            args.host,
            args.port,
            town=args.town,
            xodr=args.map,
            seed=args.seed,
            debug=args.debug,
            traffic_lights=not args.no_traffic_lights,
        ).start()
    except MapError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port} ({e.strerror}; choose another --port)", file=sys.stderr)
        return 1
    print(
        f"carla server: {server.world.map.carla_name} on {server.host}:{server.port} "
        f"(streams on {server.hub.port}, {len(server.world.lights)} traffic lights); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
