"""A rosbag2 folder written without ROS: `metadata.yaml` plus one MCAP file of CDR messages.

    OUT/metadata.yaml     rosbag2 bag information, format version 5 (see `METADATA_VERSION`)
    OUT/OUT_0.mcap        MCAP, profile ros2, schemas ros2msg, messages CDR, zstd chunks

MCAP records are written with `mcap` and messages encoded to CDR with `mcap-ros2-support`
(the encoder its own writer uses, called directly because its writer cannot attach the
`offered_qos_profiles` every rosbag2 channel carries). The MCAP file is written to a
temporary name and the folder is complete only once `close()` renamed it and wrote
`metadata.yaml`: a killed export leaves no folder that looks like a finished bag.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plumbing import atomic_write_bytes
from rosbag.cdr import FAST_ENCODERS
from rosbag.msgdefs import ros_type, schema_text

#: rosbag2's metadata format version 5 is what ROS 2 Humble writes; Iron, Jazzy and later read
#: it too (they decode by version: 6 added custom_data, 7 type_description_hash, 8 ros_distro,
#: 9 QoS as a YAML list), while Humble's reader knows only versions up to 5.
METADATA_VERSION = 5
STORAGE_ID = "mcap"


class BagError(ValueError):
    """A bag that cannot be written (the message says what to do)."""


@dataclass(frozen=True)
class Qos:
    """The QoS a topic is offered with; ros2 bag play republishes with it."""

    depth: int = 10
    transient_local: bool = False  # latched: late subscribers still get it (/tf_static)

    def to_yaml(self) -> str:
        """offered_qos_profiles as rosbag2 (<= 8) writes it: a YAML string of a one-profile list.

        Enum values are rmw's: history KEEP_LAST 1, reliability RELIABLE 1, durability
        TRANSIENT_LOCAL 1 / VOLATILE 2, liveliness AUTOMATIC 1; durations 0 mean rmw's default.
        """
        profile = {
            "history": 1,
            "depth": self.depth,
            "reliability": 1,
            "durability": 1 if self.transient_local else 2,
            "deadline": {"sec": 0, "nsec": 0},
            "lifespan": {"sec": 0, "nsec": 0},
            "liveliness": 1,
            "liveliness_lease_duration": {"sec": 0, "nsec": 0},
            "avoid_ros_namespace_conventions": False,
        }
        return yaml.safe_dump([profile], sort_keys=False).strip()


DEFAULT_QOS = Qos()
LATCHED_QOS = Qos(depth=1, transient_local=True)


@dataclass
class _Topic:
    name: str
    msgtype: str  # pkg/Type
    qos: Qos
    channel_id: int
    encode: Any
    count: int = 0
    prefixes: dict[tuple, bytes] = field(default_factory=dict)  # sensor_msgs/Image: CDR up to `data`


class BagWriter:
    """Writes one rosbag2 folder; `write(topic, msgtype, message, stamp_ns)` then `close()`.

    Messages are plain dicts shaped like the .msg (see `rosbag.messages`); topics are created on
    first use. Log time is the message's stamp (simulation time), so `ros2 bag play --clock`
    replays the simulator's clock.
    """

    def __init__(self, out: str | Path, overwrite: bool = False, chunk_size: int = 4 << 20) -> None:
        from mcap.writer import CompressionType, Writer

        self.out = Path(out)
        if self.out.exists():
            if not overwrite:
                raise BagError(f"{self.out} exists (pass --overwrite to replace it, or choose another folder)")
            if not (self.out / "metadata.yaml").exists() and any(self.out.iterdir()):
                raise BagError(f"{self.out} is not a bag folder (it has no metadata.yaml): not replacing it")
            for p in self.out.iterdir():
                p.unlink()
        self.out.mkdir(parents=True, exist_ok=True)
        self.file_name = f"{self.out.name}_0.mcap"
        self._tmp = self.out / (self.file_name + ".partial")
        self._fh = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()
        self._mcap = Writer(self._fh, chunk_size=chunk_size, compression=CompressionType.ZSTD)
        self._mcap.start(profile="ros2", library="laneloop rosbag (mcap, mcap-ros2-support)")
        self._schemas: dict[str, int] = {}
        self._encoders: dict[str, Any] = {}
        self._topics: dict[str, _Topic] = {}
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.count = 0
        self.closed = False

    def _topic(self, topic: str, msgtype: str, qos: Qos) -> _Topic:
        from mcap_ros2._dynamic import serialize_dynamic

        t = self._topics.get(topic)
        if t is not None:
            if t.msgtype != msgtype:
                raise BagError(f"topic {topic} has type {t.msgtype}, not {msgtype}")
            return t
        if msgtype not in self._schemas:
            full = ros_type(msgtype)
            text = schema_text(msgtype)
            self._schemas[msgtype] = self._mcap.register_schema(full, "ros2msg", text.encode())
            self._encoders[msgtype] = serialize_dynamic(full, text)[full]
        cid = self._mcap.register_channel(
            topic, "cdr", self._schemas[msgtype], metadata={"offered_qos_profiles": qos.to_yaml()}
        )
        t = _Topic(topic, msgtype, qos, cid, self._encoders[msgtype])
        self._topics[topic] = t
        return t

    def write(
        self,
        topic: str,
        msgtype: str,
        message: dict[str, Any],
        stamp_ns: int,
        qos: Qos = DEFAULT_QOS,
        same_but_stamp: object = None,
    ) -> None:
        """Encode `message` (a dict) as `msgtype` (`pkg/Type`) and append it at `stamp_ns`.

        `same_but_stamp`: a key promising that every message written with it on this topic
        equals the first but for its header stamp (a camera's info): encoded once, then the
        stamp is written in place.
        """
        if self.closed:
            raise BagError(f"bag {self.out} is closed")
        t = self._topic(topic, msgtype, qos)
        if same_but_stamp is not None:
            cached = t.prefixes.get(("same", same_but_stamp))
            if cached is None:
                cached = t.prefixes[("same", same_but_stamp)] = t.encode(message)
            data = _with_stamp(cached, message["header"]["stamp"])
        elif msgtype == "sensor_msgs/Image":
            data = _encode_image(t, message)
        elif msgtype in FAST_ENCODERS:
            data = FAST_ENCODERS[msgtype](message)
        else:
            data = t.encode(message)
        self._append(t, data, stamp_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes, stamp_ns: int, qos: Qos = DEFAULT_QOS) -> None:
        """Append a message already encoded as CDR (with its encapsulation header) at `stamp_ns`."""
        if self.closed:
            raise BagError(f"bag {self.out} is closed")
        self._append(self._topic(topic, msgtype, qos), data, stamp_ns)

    def _append(self, t: _Topic, data: bytes, stamp_ns: int) -> None:
        self._mcap.add_message(t.channel_id, log_time=stamp_ns, data=data, publish_time=stamp_ns, sequence=t.count)
        t.count += 1
        self.count += 1
        self.first_ns = stamp_ns if self.first_ns is None else min(self.first_ns, stamp_ns)
        self.last_ns = stamp_ns if self.last_ns is None else max(self.last_ns, stamp_ns)

    def add_metadata(self, name: str, data: dict[str, str]) -> None:
        """An MCAP metadata record (string pairs): what ROS messages do not carry, e.g. the town."""
        self._mcap.add_metadata(name, data)

    def metadata(self) -> dict[str, Any]:
        """metadata.yaml's content (rosbag2 bag information, version `METADATA_VERSION`)."""
        start = self.first_ns or 0
        duration = (self.last_ns or 0) - start
        topics = [
            {
                "topic_metadata": {
                    "name": t.name,
                    "type": ros_type(t.msgtype),
                    "serialization_format": "cdr",
                    "offered_qos_profiles": t.qos.to_yaml(),
                },
                "message_count": t.count,
            }
            for t in self._topics.values()
        ]
        return {
            "rosbag2_bagfile_information": {
                "version": METADATA_VERSION,
                "storage_identifier": STORAGE_ID,
                "duration": {"nanoseconds": duration},
                "starting_time": {"nanoseconds_since_epoch": start},
                "message_count": self.count,
                "topics_with_message_count": topics,
                "compression_format": "",
                "compression_mode": "",
                "relative_file_paths": [self.file_name],
                "files": [
                    {
                        "path": self.file_name,
                        "starting_time": {"nanoseconds_since_epoch": start},
                        "duration": {"nanoseconds": duration},
                        "message_count": self.count,
                    }
                ],
            }
        }

    def close(self) -> Path:
        """Finish the MCAP file, move it into place and write metadata.yaml; returns the folder."""
        if self.closed:
            return self.out
        self.closed = True
        try:
            self._mcap.finish()
        finally:
            self._fh.close()
        os.replace(self._tmp, self.out / self.file_name)
        text = yaml.safe_dump(self.metadata(), sort_keys=False, width=1 << 20)  # no folded lines, as rosbag2
        atomic_write_bytes(self.out / "metadata.yaml", text.encode())
        for p in (self.out / "metadata.yaml", self.out / self.file_name):
            p.chmod(0o644)
        return self.out

    def abort(self) -> None:
        """Drop a bag that failed half-way (no metadata.yaml, no MCAP file is left)."""
        if self.closed:
            return
        self.closed = True
        self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


_CDR_LE = b"\x00\x01\x00\x00"


def _encode_image(t: _Topic, msg: dict[str, Any]) -> bytes:
    """CDR of a sensor_msgs/Image without passing its pixels through the generic encoder.

    `data` is the last field and a uint8 sequence needs no alignment, so the message is the
    library's encoding of the same image with empty `data` (cached per topic and image shape,
    its length prefix dropped), the frame's stamp written in place (right after the 4-byte
    encapsulation header: int32 sec, uint32 nanosec), then the pixels' length and bytes.
    The test checks it against the library's own encoding, byte for byte.
    """
    hdr = msg["header"]
    key = (hdr["frame_id"], msg["height"], msg["width"], msg["encoding"], msg["is_bigendian"], msg["step"])
    prefix = t.prefixes.get(key)
    if prefix is None:
        empty = t.encode(
            {**msg, "header": {"stamp": {"sec": 0, "nanosec": 0}, "frame_id": hdr["frame_id"]}, "data": b""}
        )
        if empty[:4] != _CDR_LE or empty[-4:] != b"\0\0\0\0":
            return t.encode(msg)
        prefix = t.prefixes[key] = empty[:-4]
    data = msg["data"]
    return b"".join((_with_stamp(prefix, hdr["stamp"]), struct.pack("<I", len(data)), data))


def _with_stamp(cdr: bytes, st: dict[str, int]) -> bytes:
    """`cdr` (a message whose first field is a std_msgs/Header) with its stamp replaced."""
    return b"".join((cdr[:4], struct.pack("<iI", st["sec"], st["nanosec"]), cdr[12:]))


__all__ = ["DEFAULT_QOS", "LATCHED_QOS", "METADATA_VERSION", "BagError", "BagWriter", "Qos"]
