"""ROS 2 message definitions (.msg text) of every type the bags use, and their MCAP schemas.

Written out here, field for field as in ROS 2 Humble and Jazzy (the same for these types),
because no ROS installation is available to read them from; `tests/test_rosbag.py` checks
each against the independent type store of `rosbags`. A schema is the type's own text, then
every type it uses after a line of 80 '=' and `MSG: pkg/Type`: the `ros2msg` encoding of
MCAP's ros2 profile, which `ros2 bag`, Foxglove and `mcap-ros2-support` read.
"""

from __future__ import annotations

import re

_PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
    "int32", "uint32", "int64", "uint64", "string", "wstring",
}  # fmt: skip

#: Message type (`pkg/Type`) -> its fields, one `type name [default]` a line.
MSGDEFS: dict[str, str] = {
    "builtin_interfaces/Time": "int32 sec\nuint32 nanosec\n",
    "std_msgs/Header": "builtin_interfaces/Time stamp\nstring frame_id\n",
    "sensor_msgs/Image": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
        "uint8 is_bigendian\nuint32 step\nuint8[] data\n"
    ),
    "sensor_msgs/RegionOfInterest": "uint32 x_offset\nuint32 y_offset\nuint32 height\nuint32 width\nbool do_rectify\n",
    "sensor_msgs/CameraInfo": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring distortion_model\nfloat64[] d\n"
        "float64[9] k\nfloat64[9] r\nfloat64[12] p\nuint32 binning_x\nuint32 binning_y\n"
        "sensor_msgs/RegionOfInterest roi\n"
    ),
    "geometry_msgs/Vector3": "float64 x\nfloat64 y\nfloat64 z\n",
    "geometry_msgs/Point": "float64 x\nfloat64 y\nfloat64 z\n",
    "geometry_msgs/Quaternion": "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n",
    "geometry_msgs/Pose": "geometry_msgs/Point position\ngeometry_msgs/Quaternion orientation\n",
    "geometry_msgs/PoseWithCovariance": "geometry_msgs/Pose pose\nfloat64[36] covariance\n",
    "geometry_msgs/Twist": "geometry_msgs/Vector3 linear\ngeometry_msgs/Vector3 angular\n",
    "geometry_msgs/TwistWithCovariance": "geometry_msgs/Twist twist\nfloat64[36] covariance\n",
    "geometry_msgs/Transform": "geometry_msgs/Vector3 translation\ngeometry_msgs/Quaternion rotation\n",
    "geometry_msgs/TransformStamped": (
        "std_msgs/Header header\nstring child_frame_id\ngeometry_msgs/Transform transform\n"
    ),
    "nav_msgs/Odometry": (
        "std_msgs/Header header\nstring child_frame_id\ngeometry_msgs/PoseWithCovariance pose\n"
        "geometry_msgs/TwistWithCovariance twist\n"
    ),
    "tf2_msgs/TFMessage": "geometry_msgs/TransformStamped[] transforms\n",
    "sensor_msgs/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data\n",
    "builtin_interfaces/Duration": "int32 sec\nuint32 nanosec\n",
    "std_msgs/ColorRGBA": "float32 r\nfloat32 g\nfloat32 b\nfloat32 a\n",
    "visualization_msgs/UVCoordinate": "float32 u\nfloat32 v\n",
    "visualization_msgs/MeshFile": "string filename\nuint8[] data\n",
    "visualization_msgs/Marker": (
        "int32 ARROW=0\nint32 CUBE=1\nint32 SPHERE=2\nint32 CYLINDER=3\nint32 LINE_STRIP=4\nint32 LINE_LIST=5\n"
        "int32 CUBE_LIST=6\nint32 SPHERE_LIST=7\nint32 POINTS=8\nint32 TEXT_VIEW_FACING=9\nint32 MESH_RESOURCE=10\n"
        "int32 TRIANGLE_LIST=11\nint32 ADD=0\nint32 MODIFY=0\nint32 DELETE=2\nint32 DELETEALL=3\n"
        "std_msgs/Header header\nstring ns\nint32 id\nint32 type\nint32 action\ngeometry_msgs/Pose pose\n"
        "geometry_msgs/Vector3 scale\nstd_msgs/ColorRGBA color\nbuiltin_interfaces/Duration lifetime\n"
        "bool frame_locked\ngeometry_msgs/Point[] points\nstd_msgs/ColorRGBA[] colors\nstring texture_resource\n"
        "sensor_msgs/CompressedImage texture\nvisualization_msgs/UVCoordinate[] uv_coordinates\nstring text\n"
        "string mesh_resource\nvisualization_msgs/MeshFile mesh_file\nbool mesh_use_embedded_materials\n"
    ),
    "visualization_msgs/MarkerArray": "visualization_msgs/Marker[] markers\n",
}

SEPARATOR = "=" * 80


def ros_type(name: str) -> str:
    """`pkg/Type` -> `pkg/msg/Type`, the name rosbag2 writes in metadata.yaml and MCAP schemas."""
    pkg, _, typ = name.partition("/")
    return f"{pkg}/msg/{typ}"


def dependencies(name: str) -> list[str]:
    """Every message type `name` uses, nested ones included, depth first, each once."""
    seen: list[str] = []

    def visit(n: str) -> None:
        for line in MSGDEFS[n].splitlines():
            if "=" in line:  # a constant (`int32 NAME=1`), not a field
                continue
            typ = re.sub(r"\[.*\]$", "", line.split()[0])
            if typ not in _PRIMITIVES and typ not in seen:
                seen.append(typ)
                visit(typ)

    visit(name)
    return seen


def schema_text(name: str) -> str:
    """The ros2msg schema of `name` (`pkg/Type`): its fields, then each dependency's."""
    if name not in MSGDEFS:
        raise KeyError(f"no message definition for {name!r} (known: {', '.join(sorted(MSGDEFS))})")
    parts = [MSGDEFS[name]]
    for dep in dependencies(name):
        parts.append(f"{SEPARATOR}\nMSG: {dep}\n{MSGDEFS[dep]}")
    return "\n".join(parts)


__all__ = ["MSGDEFS", "SEPARATOR", "dependencies", "ros_type", "schema_text"]
