"""msgpack-RPC over TCP as rpclib speaks it: requests `[0, id, method, params]`, notifications
`[2, method, params]`, replies `[1, id, error, result]`.

One thread per connection; the handler is called with the method name, the params and the
connection, and returns the result object (already in CARLA's Response shape, see `rpc`).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import msgpack

REQUEST, RESPONSE, NOTIFY = 0, 1, 2
MAX_BUFFER = 64 * 1024 * 1024
"""A request larger than this is a broken client: drop the connection rather than grow."""


class Connection:
    """One client's RPC socket; `state` is free for the dispatcher (who spawned what, sync owner)."""

    def __init__(self, sock: socket.socket, peer: tuple) -> None:
        self.sock = sock
        self.peer = peer
        self.state: dict[str, Any] = {}
        self._send_lock = threading.Lock()

    def reply(self, msgid: int, result: Any) -> None:
        data = msgpack.packb([RESPONSE, msgid, None, result], use_bin_type=True)
        with self._send_lock:
            self.sock.sendall(data)


Handler = Callable[[str, list, Connection], Any]


class RpcListener:
    """Accepts RPC connections on (host, port) and serves each in its own thread."""

    def __init__(
        self, host: str, port: int, handler: Handler, on_close: Callable[[Connection], None] | None = None
    ) -> None:
        self.handler = handler
        self.on_close = on_close
        self.sock = socket.create_server((host, port), reuse_port=False)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="carla-rpc-accept", daemon=True)
        self._conns: set[Connection] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, peer = self.sock.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock, peer)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name=f"carla-rpc-{peer[1]}", daemon=True).start()

    def _serve(self, conn: Connection) -> None:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_BUFFER, strict_map_key=False)
        try:
            while True:
                data = conn.sock.recv(1 << 16)
                if not data:
                    break
                unpacker.feed(data)
                for msg in unpacker:
                    self._one(conn, msg)
        except (OSError, ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            pass  # a broken or vanished client: end this connection only
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.sock.close()
            except OSError:
                pass
            if self.on_close is not None:
                self.on_close(conn)

    def _one(self, conn: Connection, msg: Any) -> None:
        if not isinstance(msg, list) or not msg:
            return
        if msg[0] == REQUEST and len(msg) == 4:
            _, msgid, method, params = msg
            conn.reply(msgid, self.handler(str(method), params if isinstance(params, list) else [], conn))
        elif msg[0] == NOTIFY and len(msg) == 3:
            _, method, params = msg
            self.handler(str(method), params if isinstance(params, list) else [], conn)
