"""What the CARLA backend does with actors and sensor data, as functions of the client's objects.

Ids are appended to the caller's lists one batch at a time, so an interrupt in the middle of
spawning still leaves every spawned actor where the backend's cleanup finds it.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import numpy as np

from sim.backend import BackendError

__all__ = ["connect", "frame_matched", "spawn_vehicles", "spawn_walkers"]


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
