"""The server object: RPC port, stream port, world, and the ticker of asynchronous mode."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sim.carla_server.framing import RpcListener
from sim.carla_server.mapdata import load_map_data
from sim.carla_server.rpc import Dispatcher
from sim.carla_server.streams import StreamHub
from sim.carla_server.world import World


class CarlaServer:
    """`with CarlaServer(port=0, town='Town03') as s:` serves on `s.port` until closed.

    port=0 picks a free port. In asynchronous mode (CARLA's default until a client asks for
    synchronous) a thread ticks the world every dt of wall-clock time.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 2000,
        town: str | None = None,
        xodr: str | Path | None = None,
        seed: int = 0,
        debug: bool = False,
        traffic_lights: bool = True,
    ) -> None:
        self.hub = StreamHub(host)
        self.world = World(load_map_data(town=town, xodr=xodr), self.hub, seed=seed, traffic_lights=traffic_lights)
        self.dispatcher = Dispatcher(self.world, debug=debug)
        try:
            self.rpc = RpcListener(host, port, self.dispatcher, self.dispatcher.disconnected)
        except OSError:
            self.hub.close()
            raise
        self.host, self.port = host, self.rpc.port
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._async_ticks, name="carla-async-ticker", daemon=True)

    def start(self) -> CarlaServer:
        self.hub.start()
        self.rpc.start()
        self._ticker.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.rpc.close()
        self.hub.close()

    def __enter__(self) -> CarlaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _async_ticks(self) -> None:
        while not self._stop.wait(self.world.dt):
            with self.world.lock:
                if not self.world.settings.synchronous_mode:
                    self.world.tick()
            if self.world.settings.synchronous_mode:
                time.sleep(0.05)
