"""ROS 2 bags (rosbag/): a closed-loop run written with --rosbag's recorder, read back by two
independent readers (mcap-ros2-support and rosbags), message by message: counts, stamps,
intrinsics, pixels equal to the simulator's frames, the lane masks, the tf chain, depth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("mcap_ros2", reason="laneloop[ros] not installed")

from harness.contracts import LoopConfig, ModelSlot
from harness.loop import run_loop
from harness.oracle import GroundTruthMaskPredictor, truth_backend
from perception.metrics import BinaryConfusion
from rosbag import messages as m
from rosbag.bag import METADATA_VERSION, BagWriter
from rosbag.export import main as export_main
from rosbag.msgdefs import MSGDEFS, ros_type, schema_text
from rosbag.recorder import TRUE_MARKINGS, BagRecorder, marker_topic, mask_topic
from scenarios import load_scenario
from sim.backend import make_backend
from sim.camera import optical_to_vehicle
from sim.depth import depth_image
from sim.tags import ROAD_LINE

FRAMES = 12
RGB = "/camera/rgb/image_rect_color"


def _read(bag: Path) -> dict[str, list]:
    """topic -> [(log_time, decoded message)] with mcap-ros2-support's reader."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out: dict[str, list] = {}
    files = list(bag.glob("*.mcap"))
    assert len(files) == 1
    with open(files[0], "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, msg in reader.iter_decoded_messages():
            assert channel.message_encoding == "cdr" and schema.encoding == "ros2msg"
            assert "offered_qos_profiles" in channel.metadata
            out.setdefault(channel.topic, []).append((message.log_time, msg))
    return out


@pytest.fixture(scope="module")
def run_bag(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    tmp = tmp_path_factory.mktemp("rosbag")
    scenario = load_scenario("town03_clear")
    pred = GroundTruthMaskPredictor("truth")
    cfg = LoopConfig(scenario=scenario, out=tmp / "run", frames=FRAMES, strip_size=0)
    rec = BagRecorder(tmp / "bag")
    run_loop(cfg, [ModelSlot(pred.name, pred)], BinaryConfusion, backend_factory=truth_backend(pred), recorder=rec)
    return tmp / "bag", scenario


def test_message_definitions_match_ros2_humble() -> None:
    rosbags = pytest.importorskip("rosbags.typesys")
    store = rosbags.get_typestore(rosbags.Stores.ROS2_HUMBLE)
    for name, text in MSGDEFS.items():
        full = ros_type(name)
        ours = rosbags.get_types_from_msg(text, full)[full]
        assert ours == store.fielddefs[full], name
    assert schema_text("nav_msgs/Odometry").count("\nMSG: ") == 9  # every nested type once


def test_counts_stamps_and_metadata(run_bag) -> None:
    bag, scenario = run_bag
    topics = _read(bag)
    per_frame = [RGB, "/camera/rgb/camera_info", "/camera/semantic/image_raw", "/camera/depth_registered/image_raw",
                 "/camera/depth_registered/camera_info", mask_topic("truth"), "/odom", "/tf", TRUE_MARKINGS,
                 marker_topic("truth")]  # fmt: skip
    assert sorted(topics) == sorted([*per_frame, "/tf_static"])
    assert len(topics["/tf_static"]) == 1
    for t in per_frame:
        stamps = [lt for lt, _ in topics[t]]
        assert len(stamps) == FRAMES, t
        assert stamps == [round(k * scenario.dt * 1e9) for k in range(FRAMES)], t  # sim time, 20 Hz
        for lt, msg in topics[t]:
            head = msg.transforms[0].header if t == "/tf" else msg.markers[0].header if "markings" in t else msg.header
            assert head.stamp.sec * 10**9 + head.stamp.nanosec == lt
    text = (bag / "metadata.yaml").read_text()
    assert "\\\n" not in text  # one line per scalar (no folded double-quoted lines), as rosbag2 writes them
    meta = yaml.safe_load(text)["rosbag2_bagfile_information"]
    assert meta["version"] == METADATA_VERSION and meta["storage_identifier"] == "mcap"
    assert meta["message_count"] == sum(len(v) for v in topics.values())
    assert meta["relative_file_paths"] == [f"{bag.name}_0.mcap"]
    assert meta["duration"]["nanoseconds"] == round((FRAMES - 1) * scenario.dt * 1e9)
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    assert counts == {t: len(v) for t, v in topics.items()}
    latched = yaml.safe_load(next(t for t in meta["topics_with_message_count"] if t["topic_metadata"]["name"] ==
                                  "/tf_static")["topic_metadata"]["offered_qos_profiles"])  # fmt: skip
    assert latched[0]["durability"] == 1  # transient local: RTAB-Map subscribing late still gets the mounting


def test_rosbags_reads_the_folder_and_every_message(run_bag) -> None:
    rosbag2 = pytest.importorskip("rosbags.rosbag2")
    typesys = pytest.importorskip("rosbags.typesys")
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    bag, _ = run_bag
    ours = _read(bag)
    with rosbag2.Reader(bag) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == {t: len(v) for t, v in ours.items()}
        seen: dict[str, int] = {}
        for conn, stamp, raw in reader.messages():  # every message, with ROS 2 Humble's own layouts
            msg = store.deserialize_cdr(raw, conn.msgtype)
            k = seen[conn.topic] = seen.get(conn.topic, 0) + 1
            assert stamp == ours[conn.topic][k - 1][0]
            if conn.topic == RGB:
                assert msg.encoding == "rgb8" and bytes(msg.data) == bytes(ours[RGB][k - 1][1].data)
            elif conn.topic == "/odom":
                assert msg.pose.pose.position.x == ours["/odom"][k - 1][1].pose.pose.position.x
        assert seen == {t: len(v) for t, v in ours.items()}


def test_images_and_masks_equal_the_simulators_frames(run_bag) -> None:
    bag, scenario = run_bag
    topics = _read(bag)
    with make_backend("embedded") as backend:
        obs = backend.reset(scenario)
        for k in range(FRAMES):
            if k:
                obs = backend.step(None)
            cam = obs.camera
            assert np.array_equal(m.image_array(topics[RGB][k][1]), cam.rgb)
            assert np.array_equal(m.image_array(topics["/camera/semantic/image_raw"][k][1]), cam.labels)
            mask = m.image_array(topics[mask_topic("truth")][k][1])
            assert np.array_equal(mask == 255, cam.labels == ROAD_LINE) and set(np.unique(mask)) <= {0, 255}
            odom = topics["/odom"][k][1].pose.pose
            assert (odom.position.x, odom.position.y) == pytest.approx((obs.ego.x, obs.ego.y))
            assert 2 * math.atan2(odom.orientation.z, odom.orientation.w) == pytest.approx(obs.ego.yaw)
            assert topics[RGB][k][1].header.frame_id == "front_camera_optical_frame"


def test_camera_info_intrinsics(run_bag) -> None:
    bag, scenario = run_bag
    spec = scenario.cameras[0]
    info = _read(bag)["/camera/rgb/camera_info"][-1][1]
    k = np.array(info.k).reshape(3, 3)
    f = spec.width / (2 * math.tan(math.radians(spec.fov_deg) / 2))  # from the FOV, not from CameraSpec.focal
    assert (info.width, info.height) == (spec.width, spec.height)
    assert k == pytest.approx(np.array([[f, 0, spec.width / 2 - 0.5], [0, f, spec.height / 2 - 0.5], [0, 0, 1]]))
    assert np.array(info.p).reshape(3, 4)[:, :3] == pytest.approx(k)
    assert list(info.d) == [0.0] * 5 and info.distortion_model == "plumb_bob"


def _matrix(tf) -> np.ndarray:
    q, t = tf.transform.rotation, tf.transform.translation
    x, y, z, w = q.x, q.y, q.z, q.w
    r = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = r, (t.x, t.y, t.z)
    return out


def test_tf_chain_reaches_the_camera_and_depth_lands_on_the_ground(run_bag) -> None:
    bag, scenario = run_bag
    spec = scenario.cameras[0]
    topics = _read(bag)
    static = {tf.child_frame_id: tf for tf in topics["/tf_static"][0][1].transforms}
    parents = {c: tf.header.frame_id for c, tf in static.items()}
    assert parents == {
        "odom": "map",
        "front_camera_link": "base_link",
        "front_camera_optical_frame": "front_camera_link",
    }
    k = FRAMES - 1
    (odom_tf,) = topics["/tf"][k][1].transforms
    assert (odom_tf.header.frame_id, odom_tf.child_frame_id) == ("odom", "base_link")
    map_to_optical = (
        _matrix(static["odom"]) @ _matrix(odom_tf) @ _matrix(static["front_camera_link"])
        @ _matrix(static["front_camera_optical_frame"])
    )  # fmt: skip
    yaw = 2 * math.atan2(odom_tf.transform.rotation.z, odom_tf.transform.rotation.w)
    rz = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
    assert map_to_optical[:3, :3] == pytest.approx(rz @ optical_to_vehicle(spec.pitch_deg, spec.yaw_deg), abs=1e-9)
    # Back-project ground pixels with the bag's depth and intrinsics: they must land on z = 0.
    depth = m.image_array(topics["/camera/depth_registered/image_raw"][k][1])
    labels = m.image_array(topics["/camera/semantic/image_raw"][k][1])
    kk = np.array(topics["/camera/rgb/camera_info"][k][1].k).reshape(3, 3)
    v, u = np.nonzero(np.isin(labels, [1, 24]))
    d = depth[v, u].astype(float)
    pts = np.stack([(u - kk[0, 2]) / kk[0, 0] * d, (v - kk[1, 2]) / kk[1, 1] * d, d, np.ones_like(d)])
    world = map_to_optical @ pts
    assert len(d) > 1000 and np.abs(world[2]).max() < 1e-3
    assert np.isinf(depth[labels == 11]).all()
    assert np.array_equal(depth, depth_image(spec, labels), equal_nan=True)


def test_image_fast_path_equals_the_librarys_encoding(tmp_path: Path) -> None:
    from mcap_ros2._dynamic import serialize_dynamic

    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    msg = m.image(m.sim_ns(12.35), "cam_optical", rgb)
    encode = serialize_dynamic("sensor_msgs/msg/Image", schema_text("sensor_msgs/Image"))["sensor_msgs/msg/Image"]
    with BagWriter(tmp_path / "b") as w:
        w.write("/img", "sensor_msgs/Image", m.image(0, "cam_optical", rgb), 0)  # fills the cache
        from rosbag.bag import _encode_image

        assert _encode_image(w._topics["/img"], msg) == encode(msg)


def test_export_cli_errors(run_bag, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bag, _ = run_bag
    assert export_main([str(tmp_path), "--out", str(tmp_path / "x"), "--no-progress"]) == 1
    assert "neither a dataset" in capsys.readouterr().err
    run = bag.parent / "run"
    assert export_main([str(run), "--out", str(bag), "--no-progress"]) == 1  # exists, no --overwrite
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--overwrite" in err and err.count("\n") == 1


def test_dataset_export_concatenates_episodes_with_monotonic_stamps(tmp_path: Path) -> None:
    from collect.record import main as record_main
    from dataset.format import read_index, read_labels, read_rgb

    data = tmp_path / "data"
    args = ["--episodes", "2", "--episode-frames", "4", "--width", "96", "--height", "48", "--seed", "7"]
    assert record_main(["--out", str(data), "--no-progress", *args]) == 0
    assert export_main([str(data), "--out", str(tmp_path / "bag"), "--no-progress"]) == 0
    topics = _read(tmp_path / "bag")
    rows = sorted(read_index(data), key=lambda r: (r["episode"], r["frame"]))
    stamps = [lt for lt, _ in topics[RGB]]
    assert len(stamps) == len(rows) == 8 and all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    for (_, msg), r in zip(topics[RGB], rows, strict=True):
        assert np.array_equal(m.image_array(msg), read_rgb(data / r["rgb"]))
    assert _read(tmp_path / "bag")["/camera/rgb/camera_info"][0][1].width == 96
    assert export_main([str(data), "--out", str(tmp_path / "jpeg"), "--compressed", "--no-progress"]) == 0
    small = _read(tmp_path / "jpeg")
    labels = small["/camera/semantic/image_raw/compressed"]
    assert RGB not in small and len(small[f"{RGB}/compressed"]) == 8 and len(labels) == 8
    assert np.array_equal(m.compressed_array(labels[3][1]), read_labels(data / rows[3]["label"]))


def test_run_export_simulates_the_same_frames_again(run_bag, tmp_path: Path) -> None:
    import json

    bag, _ = run_bag
    run = bag.parent / "run"
    summary = json.loads((run / "summary.json").read_text())
    summary["command"] = f"python run_sim.py --frames {FRAMES}"  # the loop above was not started from the CLI
    (run / "summary.json").write_text(json.dumps(summary))
    from rosbag.export import export_run

    export_run(run, tmp_path / "again", workers=2)  # two simulator processes rendering frames in turn
    live, again = _raw(bag), _raw(tmp_path / "again")
    assert mask_topic("truth") not in again  # masks only with --masks (the models run again)
    for t in (RGB, "/camera/depth_registered/image_raw", "/odom", "/tf"):
        assert len(again[t]) == FRAMES and again[t] == live[t], t  # the same CDR bytes at the same times


def _raw(bag: Path) -> dict[str, list[tuple[int, bytes]]]:
    from mcap.reader import make_reader

    out: dict[str, list] = {}
    with open(next(bag.glob("*.mcap")), "rb") as f:
        for _, channel, message in make_reader(f).iter_messages():
            out.setdefault(channel.topic, []).append((message.log_time, message.data))
    return out


def test_camera_mounting_is_recovered_from_the_bag(run_bag) -> None:
    from rosbag.lanemap import camera_from_bag

    bag, scenario = run_bag
    topics = _read(bag)
    spec = camera_from_bag(topics["/tf_static"][0][1], topics["/camera/rgb/camera_info"][0][1])
    want = scenario.cameras[0]
    assert spec.name == want.name and (spec.width, spec.height) == (want.width, want.height)
    got = (spec.fov_deg, spec.x, spec.y, spec.z, spec.pitch_deg, spec.yaw_deg)
    assert got == pytest.approx((want.fov_deg, want.x, want.y, want.z, want.pitch_deg, want.yaw_deg), abs=1e-9)


def test_lane_map_of_true_masks_scores_high_and_a_shifted_pose_scores_low(run_bag, tmp_path: Path) -> None:
    import json

    from harness.lanemap import LaneMap, score
    from rosbag.lanemap import build_maps
    from rosbag.lanemap import main as lanemap_main
    from sim.embedded.town import load_town

    bag, scenario = run_bag
    assert lanemap_main([str(bag), "--out", str(tmp_path / "lm")]) == 0  # the town comes from the bag
    res = json.loads((tmp_path / "lm" / "lanemap.json").read_text())["models"]["truth"]
    assert res["frames"] == FRAMES and res["precision"] > 0.95 and res["recall"] > 0.8
    assert (tmp_path / "lm" / "lanemap_truth.png").stat().st_size > 0
    geo = json.loads((tmp_path / "lm" / "lanemap_truth.geojson").read_text())
    assert len(geo["features"][0]["geometry"]["coordinates"]) > 100
    # The same masks placed 0.6 m to the side: few mapped cells are within 0.2 m of a marking.
    maps, town = build_maps(bag)
    good = maps["truth"]
    shifted = LaneMap(good.grid, good.projector)
    topics = _read(bag)
    for (_, odom), (_, mask), (_, lab) in zip(
        topics["/odom"], topics[mask_topic("truth")], topics["/camera/semantic/image_raw"], strict=True
    ):
        p = odom.pose.pose
        yaw = 2 * math.atan2(p.orientation.z, p.orientation.w)
        shifted.add(p.position.x - 0.6 * math.sin(yaw), p.position.y + 0.6 * math.cos(yaw), yaw,
                    m.image_array(mask) > 0, m.image_array(lab))  # fmt: skip
    truth = load_town(town).ground.data[..., 0] == ROAD_LINE
    assert score(shifted, truth)["precision"] < 0.3 < res["precision"]


def test_run_sim_rosbag_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    torch = pytest.importorskip("torch")
    import run_sim
    from perception.checkpoint import CheckpointMeta, save_checkpoint
    from perception.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", base_width=4, depth=3)
    ckpt = save_checkpoint(tmp_path / "tiny.pth", model, CheckpointMeta.for_model(model, command="test"))
    fast = ["--model", str(ckpt), "--frames", "3", "--no-compile", "--threads", "1", "--no-progress", "--no-report"]
    assert run_sim.main([*fast, "--out", str(tmp_path / "run"), "--rosbag", str(tmp_path / "bag")]) == 0
    topics = _read(tmp_path / "bag")
    assert len(topics[mask_topic("tiny")]) == 3 and len(topics[RGB]) == 3
    lanemap = json.loads((tmp_path / "run" / "lanemap" / "lanemap.json").read_text())  # on with --rosbag
    assert lanemap["models"]["tiny"]["frames"] == 3 and (tmp_path / "run" / "lanemap" / "lanemap_tiny.png").exists()
    from harness.report import _lanemap_section  # what write_report puts under "Lane map" (no plots: fast)

    section = _lanemap_section(tmp_path / "run")
    assert "recall (completeness) within 0.2 m" in section and "<td>tiny</td>" in section
    assert section.count("data:image/png;base64,") == 1  # the model's top-down map, inlined
    from harness.lanemap import LaneMapper

    alone = run_sim._recorder(run_sim.build_parser().parse_args([*fast, "--lanemap"]), tmp_path / "run3")
    assert isinstance(alone, LaneMapper) and alone.town.name == "Town03"  # --lanemap without a bag: the mapper alone
    capsys.readouterr()
    assert run_sim.main([*fast, "--out", str(tmp_path / "run2"), "--rosbag", str(tmp_path / "run2")]) == 1
    assert "is the run folder" in capsys.readouterr().err


def test_fast_encoders_equal_the_librarys_encoding() -> None:
    from mcap_ros2._dynamic import serialize_dynamic

    from rosbag import markers as mk
    from rosbag.cdr import encode_compressed_image, encode_marker_array, encode_odometry, encode_tf_message

    def library(msgtype: str):
        full = ros_type(msgtype)
        return serialize_dynamic(full, schema_text(msgtype))[full]

    rng = np.random.default_rng(1)
    pts = rng.normal(size=(5, 3))
    strip = mk.marker(m.sim_ns(3.05), "map", "solid", 17, mk.LINE_STRIP, pts, (1, 0.8, 0.1, 1), 0.15)
    strip["colors"] = rng.random((5, 4)).astype(np.float32)
    strip["uv_coordinates"] = [{"u": 0.25, "v": 0.5}]
    strip["text"], strip["mesh_file"] = "odd length", {"filename": "a", "data": b"xyz"}
    msg = {"markers": [mk.delete_all(7, "map"), strip, mk.marker(9, "base_link", "p", 0, mk.POINTS, np.zeros((0, 3)),
                                                                 (0, 1, 0, 1), 0.2)]}  # fmt: skip
    as_dicts = {"markers": [{**x, "points": [dict(zip("xyz", p, strict=True)) for p in x["points"].tolist()],
                             "colors": [dict(zip("rgba", c, strict=True)) for c in x["colors"].tolist()]}
                            for x in msg["markers"]]}  # fmt: skip
    assert encode_marker_array(msg) == library("visualization_msgs/MarkerArray")(as_dicts)
    from sim.embedded.town import load_town

    true = mk.TrueMarkings(load_town("Town03").network.markings)  # cached fragments, stamps written in place
    for ns, (x, y) in [(0, (0.0, 0.0)), (m.sim_ns(2.5), tuple(true.xy[40])), (m.sim_ns(7.75), tuple(true.xy[900]))]:
        assert true.encoded(ns, x, y) == encode_marker_array(true.message(ns, x, y))
    img = m.compressed_image(m.sim_ns(1.5), "cam", rng.integers(0, 256, (6, 9), dtype=np.uint8))
    assert encode_compressed_image(img) == library("sensor_msgs/CompressedImage")(img)
    odom = m.odometry(m.sim_ns(0.35), 1.5, -2.25, 0.0, 0.3, 8.0, -0.1)
    assert encode_odometry(odom) == library("nav_msgs/Odometry")(odom)
    spec = load_scenario("town03_clear").cameras[0]
    for tf in (m.static_transforms(5, [spec]), m.odom_transform(m.sim_ns(2.05), 3.0, 4.0, 0.0, -1.2)):
        assert encode_tf_message(tf) == library("tf2_msgs/TFMessage")(tf)


def test_marker_arrays_show_the_true_markings_and_the_models_points(run_bag) -> None:
    typesys = pytest.importorskip("rosbags.typesys")
    rosbag2 = pytest.importorskip("rosbags.rosbag2")
    from rosbag.markers import DELETEALL, LIFETIME_S, LINE_STRIP, POINTS
    from sim.embedded.town import load_town

    bag, scenario = run_bag
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    got: dict[str, list] = {}
    with rosbag2.Reader(bag) as reader:  # Humble's own MarkerArray layout
        conns = [c for c in reader.connections if c.msgtype == "visualization_msgs/msg/MarkerArray"]
        for conn, stamp, raw in reader.messages(connections=conns):
            got.setdefault(conn.topic, []).append((stamp, store.deserialize_cdr(raw, conn.msgtype)))
    assert sorted(got) == sorted([TRUE_MARKINGS, marker_topic("truth")])
    town = load_town(scenario.town)
    odom = {lt: msg.pose.pose for lt, msg in _read(bag)["/odom"]}
    for stamp, arr in got[TRUE_MARKINGS]:
        first, *strips = arr.markers
        assert first.action == DELETEALL and len(strips) >= 3
        ids = [(s.ns, s.id) for s in strips]
        assert len(set(ids)) == len(ids)  # (namespace, id) unique in a frame
        ego = odom[stamp].position
        for s in strips:
            assert s.type == LINE_STRIP and s.header.frame_id == "map" and s.ns in {"solid", "dashed", "double", "stop",
                                                                                    "crosswalk"}  # fmt: skip
            assert s.header.stamp.sec * 10**9 + s.header.stamp.nanosec == stamp
            assert s.lifetime.sec + s.lifetime.nanosec * 1e-9 == LIFETIME_S and s.scale.x > 0 and s.color.a == 1
            pts = np.array([(p.x, p.y) for p in s.points])
            assert np.array_equal(pts, town.network.markings[s.id].points[:, :2])  # id: the town's marking
            assert np.hypot(pts[:, 0] - ego.x, pts[:, 1] - ego.y).min() <= 30.0  # near the ego
        assert len({s.id for s in strips}) == len(strips)
    # The truth "model"'s points, in base_link, moved to the map: on the town's RoadLine raster.
    g = town.ground
    near = 0
    total = 0
    for stamp, arr in got[marker_topic("truth")]:
        _, pts_marker = arr.markers
        assert pts_marker.type == POINTS and pts_marker.header.frame_id == "base_link"
        p, pose = np.array([(q.x, q.y) for q in pts_marker.points]), odom[stamp]
        yaw = 2 * math.atan2(pose.orientation.z, pose.orientation.w)
        wx = pose.position.x + math.cos(yaw) * p[:, 0] - math.sin(yaw) * p[:, 1]
        wy = pose.position.y + math.sin(yaw) * p[:, 0] + math.cos(yaw) * p[:, 1]
        r, c = ((g.ymax - wy) / g.res).astype(int), ((wx - g.xmin) / g.res).astype(int)
        k = 3  # 0.18 m: a point is its 0.2 m cell's centre
        win = [g.data[max(a - k, 0) : a + k + 1, max(b - k, 0) : b + k + 1, 0] for a, b in zip(r, c, strict=True)]
        near += sum(bool((w == ROAD_LINE).any()) for w in win)
        total += len(p)
    assert total > 100 and near / total > 0.9


def test_compressed_images_decode_to_the_frames(tmp_path: Path) -> None:
    rosbag2 = pytest.importorskip("rosbags.rosbag2")
    typesys = pytest.importorskip("rosbags.typesys")
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    scenario = load_scenario("town03_clear")
    rec = BagRecorder(tmp_path / "bag", compressed=True)
    with make_backend("embedded") as backend:
        frames = [backend.reset(scenario)] + [backend.step(None) for _ in range(2)]
    for obs in frames:
        rec.record(obs, {"truth": obs.camera.labels == ROAD_LINE})
    rec.close()
    got: dict[str, list] = {}
    with rosbag2.Reader(tmp_path / "bag") as reader:
        for conn, _, raw in reader.messages():
            got.setdefault(conn.topic, []).append(store.deserialize_cdr(raw, conn.msgtype))
    assert RGB not in got and "/camera/semantic/image_raw" not in got  # compressed instead of raw
    assert "/camera/depth_registered/image_raw" in got  # depth stays raw 32FC1
    rgb, lab, mask = (got[f"{t}/compressed"] for t in (RGB, "/camera/semantic/image_raw", mask_topic("truth")))
    assert rgb[0].format == "rgb8; jpeg compressed bgr8" and lab[0].format == "mono8; png compressed "
    for k, obs in enumerate(frames):
        cam = obs.camera
        assert bytes(rgb[k].data[:2]) == b"\xff\xd8" and rgb[k].header.frame_id == "front_camera_optical_frame"
        diff = np.abs(m.compressed_array(rgb[k]).astype(int) - cam.rgb.astype(int))
        assert diff.mean() < 3 and np.percentile(diff, 99) < 24  # JPEG at quality 95
        assert np.array_equal(m.compressed_array(lab[k]), cam.labels)  # PNG: lossless
        assert np.array_equal(m.compressed_array(mask[k]) == 255, cam.labels == ROAD_LINE)


def test_preview_draws_the_images_and_the_markers(run_bag, tmp_path: Path) -> None:
    from rosbag.preview import TILE_W
    from rosbag.preview import main as preview_main

    bag, _ = run_bag
    assert preview_main([str(bag), "--out", str(tmp_path / "p.png")]) == 0
    import cv2

    img = cv2.imread(str(tmp_path / "p.png"))[..., ::-1]
    assert img.shape[1] == 2 * TILE_W
    panel = img[-320:, :TILE_W].astype(int)  # the top-down markers view, bottom left
    green = (panel[..., 1] > 180) & (panel[..., 0] < 120)  # the first model's predicted points
    white = (panel > 200).all(-1)  # the true markings (and the labels' text)
    assert green.sum() > 50 and white.sum() > 200
