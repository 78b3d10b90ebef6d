"""The RPC methods of a CARLA 0.9.16 world port, dispatched onto a `World`.

Replies use CARLA's Response shape (rpc/Response.h): a value is `[[1, value]]`, an error
`[[0, [message]]]` (the client raises RuntimeError(message)), nothing `[[False]]`. Every request
gets an answer: an unknown method or a malformed argument is an error reply that names the
method, never an exception in the server.
"""

from __future__ import annotations

import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any

from sim.carla_server.blueprints import definitions
from sim.carla_server.framing import Connection
from sim.carla_server.lights import GREEN, RED, YELLOW
from sim.carla_server.mapdata import MapData, MapError, load_map_data
from sim.carla_server.settings import Settings, WorldError, weather_from_wire, weather_to_wire
from sim.carla_server.world import EPISODE_STREAM, World
from sim.embedded.towns import town_names

VERSION = "0.9.16"
VOID = object()

# Indices of rpc/Command.h's variant in 0.9.16 (checked against the client by a test).
CMD_SPAWN, CMD_DESTROY, CMD_VEHICLE_CONTROL = 0, 1, 2
CMD_NAMES = {
    0: "SpawnActor",
    1: "DestroyActor",
    2: "ApplyVehicleControl",
    3: "ApplyVehicleAckermannControl",
    4: "ApplyWalkerControl",
    5: "ApplyVehicleControlType",
    6: "ApplyTransform",
    7: "ApplyWalkerState",
    8: "ApplyTargetVelocity",
    9: "ApplyTargetAngularVelocity",
    10: "ApplyImpulse",
    11: "ApplyForce",
    12: "ApplyAngularImpulse",
    13: "ApplyTorque",
    14: "SetSimulatePhysics",
    15: "SetEnableGravity",
    16: "SetAutopilot",
    17: "ShowDebugTelemetry",
    18: "SetVehicleLightState",
    19: "ConsoleCommand",
    20: "SetTrafficLightState",
}
CMD_WALKER_CONTROL, CMD_TRANSFORM, CMD_VELOCITY, CMD_LIGHT_STATE = 4, 6, 8, 20
CMD_NOOPS = {14, 15, 16, 17, 18}
"""Accepted and ignored: physics and gravity are always on, the autopilot is the client's Traffic Manager."""


class Bare(list):
    """A result sent as is, not wrapped in a Response (apply_batch's list of CommandResponses)."""


def ok(value: Any) -> list:
    if isinstance(value, Bare):
        return list(value)
    return [[False]] if value is VOID else [[1, value]]


def error(message: str) -> list:
    return [[0, [message]]]


def unsupported(method: str) -> str:
    return f"{method}: not supported by the laneloop CARLA server (embedded world; see docs/carla_server.md)"


class Dispatcher:
    """Maps method names to handlers; one lock serialises them against the world."""

    def __init__(self, world: World, debug: bool = False) -> None:
        self.world = world
        self.debug = debug
        self.tm: dict[int, tuple[str, int]] = {}
        self.maps: dict[str, MapData] = {}
        self.methods: dict[str, Callable[..., Any]] = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith("rc_")
        }

    def __call__(self, method: str, params: list, conn: Connection) -> Any:
        if params and isinstance(params[0], list) and len(params[0]) == 1 and isinstance(params[0][0], bool):
            params = params[1:]  # 0.9.16's Metadata: [async?]
        fn = self.methods.get(method)
        if self.debug:
            print(f"rpc {method} {str(params)[:200]}", file=sys.stderr)
        if fn is None:
            if self.debug:
                print(f"error reply: {unsupported(method)}", file=sys.stderr)
            return error(unsupported(method))
        try:
            with self.world.lock:
                return ok(fn(conn, *params))
        except (WorldError, MapError) as e:
            if self.debug:
                print(f"error reply: {method}: {e}", file=sys.stderr)
            return error(f"{method}: {e}")
        except (TypeError, ValueError, IndexError, KeyError) as e:
            if self.debug:
                traceback.print_exc()
            return error(f"{method}: malformed request ({type(e).__name__}: {e})")
        except Exception as e:  # a bug of ours: report it to the client, keep serving
            traceback.print_exc()
            return error(f"{method}: internal error of the laneloop CARLA server ({type(e).__name__}: {e})")

    def disconnected(self, conn: Connection) -> None:
        """A client went away: if it had put the world in synchronous mode, undo that and its actors."""
        with self.world.lock:
            if conn.state.get("sync_owner") and self.world.settings.synchronous_mode:
                self.world.settings = Settings()
                for aid in [a.id for a in self.world.actors.values() if a.owner is conn]:
                    self.world.destroy(aid)

    # -- world ------------------------------------------------------------------------------
    def rc_version(self, conn):
        return VERSION

    def rc_get_episode_info(self, conn):
        return [self.world.episode_id, [self.world.hub.token(EPISODE_STREAM)]]

    def rc_get_sensor_token(self, conn, stream_id):
        stream_id = int(stream_id)
        if stream_id != EPISODE_STREAM:
            a = self.world.get(stream_id)
            if not a.is_sensor:
                raise WorldError(f"actor {stream_id} is not a sensor")
            if a.is_camera:
                self.world.expected_streams.add(stream_id)
        return [self.world.hub.token(stream_id)]

    def rc_get_episode_settings(self, conn):
        return self.world.settings.wire()

    def rc_set_episode_settings(self, conn, settings):
        s = Settings.from_wire(settings)
        self.world.settings = s
        conn.state["sync_owner"] = s.synchronous_mode
        return self.world.frame

    def rc_tick_cue(self, conn):
        return self.world.tick()

    def rc_get_required_files(self, conn, folder="", *rest):
        return []

    def rc_query_lights_state(self, conn, *args):
        return []

    def rc_update_lights_state(self, conn, *args):
        return VOID

    def rc_get_actor_definitions(self, conn):
        return definitions()

    def rc_get_map_info(self, conn):
        m = self.world.map
        return [m.carla_name, m.spawn_points]

    def rc_get_map_data(self, conn):
        return self.world.map.xodr

    def rc_get_available_maps(self, conn):
        return [f"/Game/Carla/Maps/{t}" for t in town_names()]

    def rc_load_new_episode(self, conn, map_name, *rest):
        name = str(map_name).rsplit("/", 1)[-1]
        if name not in self.maps:  # a town is the same whenever it is built: build it once
            self.maps[name] = load_map_data(town=name)
        self.world.load(self.maps[name])
        if not (rest and rest[0] is False):
            self.world.settings = Settings()
        return VOID

    def rc_get_weather_parameters(self, conn):
        return weather_to_wire(self.world.weather)

    def rc_set_weather_parameters(self, conn, weather):
        self.world.weather = weather_from_wire(weather)
        return VOID

    def rc_get_spectator(self, conn):
        return self.world.actors[1].wire(self.world.hub)

    def rc_get_actors_by_id(self, conn, ids):
        return [self.world.actors[int(i)].wire(self.world.hub) for i in ids if int(i) in self.world.actors]

    def rc_get_actor_bounding_box(self, conn, actor_id):
        # The client's Traffic Manager asks for actors it has not yet seen destroyed, and an
        # error reply on its thread aborts the client process: answer an empty box.
        a = self.world.actors.get(int(actor_id))
        return a.wire(self.world.hub)[3] if a is not None else [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]

    def rc_get_vehicle_light_states(self, conn):
        return [[a.id, 0] for a in self.world.vehicles()]

    def rc_get_traffic_lights_from_waypoint(self, conn, *args):
        return []

    def rc_get_environment_objects(self, conn, *args):
        return []

    def rc_set_pedestrians_seed(self, conn, seed):
        return VOID

    # -- traffic lights (sim/carla_server/lights.py) -------------------------------------------
    def _light(self, actor_id) -> int:
        light_id = int(actor_id)
        if light_id not in self.world.lights.lights:
            raise WorldError(f"actor {light_id} is not a traffic light")
        return light_id

    def rc_set_traffic_light_state(self, conn, actor_id, state):
        self.world.lights.set_state(self._light(actor_id), int(state))
        return VOID

    def rc_set_traffic_light_green_time(self, conn, actor_id, seconds):
        self.world.lights.set_time(self._light(actor_id), GREEN, float(seconds))
        return VOID

    def rc_set_traffic_light_yellow_time(self, conn, actor_id, seconds):
        self.world.lights.set_time(self._light(actor_id), YELLOW, float(seconds))
        return VOID

    def rc_set_traffic_light_red_time(self, conn, actor_id, seconds):
        self.world.lights.set_time(self._light(actor_id), RED, float(seconds))
        return VOID

    def rc_freeze_traffic_light(self, conn, actor_id, frozen):
        self.world.lights.freeze(self._light(actor_id), bool(frozen))
        return VOID

    def rc_reset_traffic_light_group(self, conn, actor_id):
        self.world.lights.reset_group(self._light(actor_id))
        return VOID

    def rc_get_group_traffic_lights(self, conn, actor_id):
        return [light.id for light in self.world.lights.group(self._light(actor_id)).lights]

    def rc_freeze_all_traffic_lights(self, conn, frozen):
        self.world.lights.freeze_all(bool(frozen))
        return VOID

    def rc_reset_all_traffic_lights(self, conn):
        self.world.lights.reset_all()
        return VOID

    # -- actors -----------------------------------------------------------------------------
    def rc_spawn_actor(self, conn, description, transform):
        return self.world.spawn(description, transform, owner=conn).wire(self.world.hub)

    def rc_spawn_actor_with_parent(self, conn, description, transform, parent, *rest):
        return self.world.spawn(description, transform, parent=int(parent), owner=conn).wire(self.world.hub)

    def rc_destroy_actor(self, conn, actor_id):
        return self.world.destroy(int(actor_id))

    def rc_apply_control_to_vehicle(self, conn, actor_id, control):
        self.world.apply_control(actor_id, control)
        return VOID

    def rc_apply_control_to_walker(self, conn, actor_id, control):
        self.world.apply_walker_control(actor_id, control)
        return VOID

    def rc_set_actor_transform(self, conn, actor_id, transform):
        self.world.set_transform(actor_id, transform)
        return VOID

    def rc_set_actor_location(self, conn, actor_id, location):
        a = self.world.get(actor_id)
        tf = self.world.world_transform(a)
        self.world.set_transform(actor_id, [location, tf[3:]])
        return VOID

    def rc_set_actor_target_velocity(self, conn, actor_id, velocity):
        self.world.set_velocity(actor_id, velocity)
        return VOID

    def rc_set_actor_simulate_physics(self, conn, actor_id, enabled):
        self.world.get(actor_id)
        return VOID

    def rc_set_actor_enable_gravity(self, conn, actor_id, enabled):
        self.world.get(actor_id)
        return VOID

    def rc_set_actor_autopilot(self, conn, actor_id, enabled, *rest):
        raise WorldError(
            "the server-side autopilot is not supported (use vehicle.set_autopilot: the client's "
            "Traffic Manager drives)"
        )

    def rc_set_vehicle_light_state(self, conn, actor_id, state):
        self.world.get(actor_id)
        return VOID

    def rc_apply_batch(self, conn, commands, do_tick_cue=False):
        responses = [self._command(conn, c) for c in commands]
        if do_tick_cue:
            self.world.tick()
        return Bare(responses)

    def _command(self, conn, command: list, future: int = 0) -> list:
        """One batch command -> CommandResponse ([[1, actor id]] or [[0, [message]]])."""
        try:
            index, payload = command[0]
            index = int(index)
            if index == CMD_SPAWN:
                # 0.9.16: description, transform, optional parent, attachment type, socket, do_after
                desc, tf, parent, after = payload[0], payload[1], payload[2], payload[-1]
                pid = int(parent[1]) if isinstance(parent, list) and len(parent) == 2 and parent[0] else 0
                actor = self.world.spawn(desc, tf, parent=pid, owner=conn)
                for sub in after:
                    r = self._command(conn, sub, future=actor.id)
                    if r[0][0] == 0:
                        return r
                return [[1, actor.id]]
            actor_id = int(payload[0]) or future
            if index == CMD_DESTROY:
                if not self.world.destroy(actor_id):
                    raise WorldError(f"actor {actor_id} not found")
            elif index == CMD_VEHICLE_CONTROL:
                self.world.apply_control(actor_id, payload[1])
            elif index == CMD_TRANSFORM:
                self.world.set_transform(actor_id, payload[1])
            elif index == CMD_VELOCITY:
                self.world.set_velocity(actor_id, payload[1])
            elif index == CMD_WALKER_CONTROL:
                self.world.apply_walker_control(actor_id, payload[1])
            elif index == CMD_LIGHT_STATE:
                self.world.lights.set_state(self._light(actor_id), int(payload[1]))
            elif index in CMD_NOOPS:
                self.world.get(actor_id)
            else:
                raise WorldError(unsupported(f"command {CMD_NAMES.get(index, index)}"))
            return [[1, actor_id]]
        except WorldError as e:
            if self.debug:
                print(f"batch command error: {e}", file=sys.stderr)
            return [[0, [str(e)]]]
        except (TypeError, ValueError, IndexError) as e:
            return [[0, [f"malformed batch command ({type(e).__name__}: {e})"]]]

    # -- Traffic Manager registry (the TM itself runs in the client) --------------------------
    def rc_is_traffic_manager_running(self, conn, port):
        entry = self.tm.get(int(port))
        if entry is None:
            return False
        try:  # a TM whose process has gone is not running, whatever was registered
            with socket.create_connection(entry, timeout=0.3):
                return True
        except OSError:
            del self.tm[int(port)]
            return False

    def rc_get_traffic_manager_running(self, conn, port):
        return list(self.tm.get(int(port), ("", 0)))

    def rc_add_traffic_manager_running(self, conn, info):
        ip, port = str(info[0]), int(info[1])
        self.tm[port] = (ip or "127.0.0.1", port)
        return True

    def rc_destroy_traffic_manager(self, conn, port):
        return self.tm.pop(int(port), None) is not None
