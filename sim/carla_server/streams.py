"""CARLA's streaming side: a TCP port where clients subscribe to a stream id and get frames pushed.

A client connects to the address and port in a stream token, sends the 4-byte stream id, and
from then on receives `[u32 little-endian length][payload]` frames (LibCarla streaming/detail/tcp).
Publishing happens on the ticking thread, in order, so sensor data of frame F always leaves
before the episode state of F, which is what `world.tick()` waits for.
"""

from __future__ import annotations

import socket
import struct
import threading

TOKEN = struct.Struct("<IHBB16s")
"""streaming/detail/Token.h: stream id, port, protocol (1 = TCP), address type (1 = IPv4), address."""
SEND_TIMEOUT_S = 5.0
"""A subscriber that cannot take a frame within this long is dropped, so one stuck client cannot stall the world."""


def make_token(stream_id: int, host: str, port: int) -> bytes:
    """The 24-byte token the client needs to subscribe to `stream_id`."""
    return TOKEN.pack(stream_id, port, 1, 1, socket.inet_aton(host) + bytes(12))


class StreamHub:
    """Accepts stream subscriptions and pushes frames to every subscriber of a stream id."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self._subs: dict[int, list[socket.socket]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="carla-streams", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def token(self, stream_id: int) -> bytes:
        return make_token(stream_id, self.host if self.host != "0.0.0.0" else "127.0.0.1", self.port)

    def subscribed(self, stream_id: int) -> bool:
        with self._cond:
            return bool(self._subs.get(stream_id))

    def wait_for(self, stream_ids: list[int], timeout: float) -> None:
        """Block until each stream id has a subscriber or `timeout` passes (data sent earlier is lost)."""
        with self._cond:
            self._cond.wait_for(lambda: all(self._subs.get(i) for i in stream_ids), timeout)

    def publish(self, stream_id: int, payload: bytes | memoryview) -> None:
        with self._cond:
            subs = list(self._subs.get(stream_id, ()))
        if not subs:
            return
        head = struct.pack("<I", len(payload))
        for s in subs:
            try:
                s.sendall(head)
                s.sendall(payload)
            except OSError:
                self._drop(stream_id, s)

    def drop_stream(self, stream_id: int) -> None:
        """Close every subscription of a stream (its sensor was destroyed)."""
        with self._cond:
            subs = self._subs.pop(stream_id, [])
        for s in subs:
            try:
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self._cond:
            ids = list(self._subs)
        for i in ids:
            self.drop_stream(i)

    def _drop(self, stream_id: int, s: socket.socket) -> None:
        with self._cond:
            lst = self._subs.get(stream_id, [])
            if s in lst:
                lst.remove(s)
        try:
            s.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handshake, args=(s,), daemon=True).start()

    def _handshake(self, s: socket.socket) -> None:
        s.settimeout(SEND_TIMEOUT_S)
        try:
            data = b""
            while len(data) < 4:
                chunk = s.recv(4 - len(data))
                if not chunk:
                    s.close()
                    return
                data += chunk
        except OSError:
            s.close()
            return
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        (stream_id,) = struct.unpack("<I", data)
        with self._cond:
            self._subs.setdefault(stream_id, []).append(s)
            self._cond.notify_all()
