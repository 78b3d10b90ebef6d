"""The embedded world behind CARLA 0.9.16's wire protocol, so the real `carla` client runs against it.

`python -m sim.carla_server --port 2000 --town Town03` serves one world on loopback: msgpack-RPC
on the world port (`rpc`, `framing`), sensor and episode-state streams on a second port
(`streams`), byte layouts of what goes down those streams (`layouts`), the blueprint library
(`blueprints`), the map data (`mapdata`) and the world itself (`world`), which moves vehicles
with the embedded simulator's kinematics and renders cameras with its renderer.
See docs/carla_server.md for what is supported.
"""

from sim.carla_server.server import CarlaServer

__all__ = ["CarlaServer"]
