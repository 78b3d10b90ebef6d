"""What the CARLA backend does with actors and sensor data, as functions of the client's objects.

Ids are appended to the caller's lists one batch at a time, so an interrupt in the middle of
spawning still leaves every spawned actor where the backend's cleanup finds it.
"""

from __future__ import annotations

import hashlib
import queue
import time
from pathlib import Path
from typing import Any

import numpy as np

from sim.backend import BackendError

__all__ = [
    "connect",
    "ego_blueprint",
    "frame_matched",
    "generation_parameters",
    "import_carla",
    "lane_state",
    "read_opendrive",
    "spawn_first_free",
    "spawn_points",
    "spawn_vehicles",
    "spawn_walkers",
]


INSTALL_HINT = "pip install 'laneloop[carla]' (the carla==0.9.16 client, Python 3.10-3.12)"


def import_carla() -> Any:
    """The carla client module, imported only when asked for: the embedded default never needs it."""
    try:
        import carla
    except ImportError as e:
        raise BackendError(f"the CARLA client is not installed ({INSTALL_HINT})") from e
    return carla


def connect(carla: Any, host: str, port: int, timeout: float) -> tuple[Any, str, Any]:
    """(client, server version, world), or a BackendError that says how to start the server."""
    try:
        client = carla.Client(host, port)
        client.set_timeout(timeout)
        version = str(client.get_server_version())
        world = client.get_world()
    except (RuntimeError, OverflowError) as e:  # OverflowError: a port outside 0..65535
        raise BackendError(
            f"cannot reach the CARLA server at {host}:{port} within {timeout:g} s "
            "(start it, e.g. ./CarlaUE4.sh -RenderOffScreen, or check --host/--port/--timeout)"
        ) from e
    return client, version, world


def frame_matched(q: queue.Queue, frame: int, sensor: str, timeout: float) -> Any:
    """Drain one sensor's queue until it yields `frame`; older data is stale and dropped.

    As in CARLA's synchronous_mode example: each sensor has its own queue, and the data of a
    tick is the item whose frame id is the tick's.
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            data = q.get(timeout=max(remaining, 0.0)) if remaining > 0 else q.get_nowait()
        except queue.Empty:
            raise BackendError(
                f"sensor {sensor!r} sent no data for frame {frame} within {timeout:g} s "
                "(server overloaded or sensor lost; try a larger --timeout)"
            ) from None
        if data.frame == frame:
            return data
        if data.frame > frame:
            raise BackendError(
                f"sensor {sensor!r} skipped frame {frame} (got frame {data.frame}; "
                "is another client ticking this server?)"
            )


def spawn_vehicles(
    carla: Any,
    client: Any,
    world: Any,
    points: list[Any],
    count: int,
    rng: np.random.Generator,
    tm_port: int,
    ids: list[int],
) -> None:
    """Up to `count` four-wheeled NPCs on shuffled spawn points, each on the Traffic Manager."""
    library = world.get_blueprint_library()
    order = rng.permutation(len(points))
    cars = sorted(
        (
            b
            for b in library.filter("vehicle.*")
            if not b.has_attribute("number_of_wheels") or b.get_attribute("number_of_wheels").as_int() == 4
        ),
        key=lambda b: b.id,
    )
    n = min(count, len(points))
    if not (n and cars):
        return
    batch = []
    for i in range(n):
        bp = cars[int(rng.integers(len(cars)))]
        if bp.has_attribute("role_name"):
            bp.set_attribute("role_name", "autopilot")
        batch.append(
            carla.command.SpawnActor(bp, points[int(order[i])]).then(
                carla.command.SetAutopilot(carla.command.FutureActor, True, tm_port)
            )
        )
    for response in client.apply_batch_sync(batch, True):
        if not response.error:
            ids.append(response.actor_id)


def spawn_walkers(
    carla: Any,
    client: Any,
    world: Any,
    count: int,
    rng: np.random.Generator,
    seed: int,
    timeout: float,
    ids: list[int],
    controllers: list[Any],
) -> None:
    """`count` pedestrians on the navigation mesh, each walking with an AI controller."""
    library = world.get_blueprint_library()
    world.set_pedestrians_seed(int(seed))
    walkers = sorted(library.filter("walker.pedestrian.*"), key=lambda b: b.id)
    if not walkers:
        return
    batch = []
    for _ in range(count):
        loc = world.get_random_location_from_navigation()
        if loc is None:
            continue
        bp = walkers[int(rng.integers(len(walkers)))]
        if bp.has_attribute("is_invincible"):
            bp.set_attribute("is_invincible", "false")
        batch.append(carla.command.SpawnActor(bp, carla.Transform(loc)))
    walker_ids = [r.actor_id for r in client.apply_batch_sync(batch, True) if not r.error]
    ids.extend(walker_ids)
    ctrl_bp = library.find("controller.ai.walker")
    ctrl_batch = [carla.command.SpawnActor(ctrl_bp, carla.Transform(), wid) for wid in walker_ids]
    ctrl_ids = [r.actor_id for r in client.apply_batch_sync(ctrl_batch, True) if not r.error]
    ids.extend(ctrl_ids)
    world.tick(timeout)
    for ctrl in world.get_actors(ctrl_ids):
        controllers.append(ctrl)
        ctrl.start()
        target = world.get_random_location_from_navigation()
        if target is not None:
            ctrl.go_to_location(target)
        ctrl.set_max_speed(1.2 + 0.4 * float(rng.random()))


def read_opendrive(path: str | Path) -> tuple[str, str]:
    """(text, sha256) of an OpenDRIVE file checked by our reader, so a bad file fails in one
    line before a CARLA server is asked to build a world from it."""
    from sim.maps.opendrive import OpenDriveError, parse

    try:
        text = Path(path).read_text()
        parse(text, str(path))
    except OSError as e:
        raise BackendError(f"cannot read the map {path}: {e.strerror} (check the path)") from None
    except OpenDriveError as e:
        raise BackendError(f"{e} (fix the file or choose another map)") from None
    return text, hashlib.sha256(text.encode()).hexdigest()


def generation_parameters(carla: Any) -> Any:
    """How CARLA meshes a world from OpenDRIVE alone (`client.generate_opendrive_world`)."""
    return carla.OpendriveGenerationParameters(
        vertex_distance=2.0,
        max_road_length=50.0,
        wall_height=1.0,
        additional_width=0.6,
        smooth_junctions=True,
        enable_mesh_visibility=True,
        enable_pedestrian_navigation=True,
    )


def lane_state(
    carla: Any, town_map: Any, location: Any, x: float, y: float, yaw: float
) -> tuple[int | None, float | None, float | None, float | None, bool]:
    """(lane id, lane width, lateral offset, heading error, in junction) of a pose in our frame,
    from the driving lane's waypoint nearest `location` (Nones off the road)."""
    from sim.carla_convert import from_carla, lane_errors

    wp = town_map.get_waypoint(location, True, carla.LaneType.Driving)
    if wp is None:
        return None, None, None, None, False
    wtf = wp.transform
    lx, ly, _, lyaw = from_carla(wtf.location.x, wtf.location.y, wtf.location.z, wtf.rotation.yaw)
    offset, heading = lane_errors(x, y, yaw, lx, ly, lyaw)
    return int(wp.lane_id), float(wp.lane_width), offset, heading, bool(wp.is_junction)


def spawn_points(carla: Any, town_map: Any, from_lanes: bool = False) -> list[Any]:
    """The map's spawn points; a world built from a file may have none, then (`from_lanes`)
    one every 25 m of lane, 0.5 m above the road."""
    points = list(town_map.get_spawn_points())
    if not points and from_lanes:
        points = [
            carla.Transform(
                carla.Location(w.transform.location.x, w.transform.location.y, w.transform.location.z + 0.5),
                w.transform.rotation,
            )
            for w in town_map.generate_waypoints(25.0)
        ]
    return points


def ego_blueprint(library: Any, name: str) -> Any:
    """The ego's blueprint `name` (else the first vehicle by id), with role_name "hero"."""
    found = library.filter(name)
    bp = found[0] if len(found) else sorted(library.filter("vehicle.*"), key=lambda b: b.id)[0]
    if bp.has_attribute("role_name"):
        bp.set_attribute("role_name", "hero")
    return bp


def spawn_first_free(world: Any, bp: Any, points: list[Any], first: int) -> tuple[Any, int | None]:
    """(actor, index) at the first free point from `first` on, wrapping; (None, None) if all are taken."""
    for k in range(len(points)):
        index = (first + k) % len(points)
        actor = world.try_spawn_actor(bp, points[index])
        if actor is not None:
            return actor, index
    return None, None
