"""The CARLA server's real-client tests (tests/carla_server_live.py), in a pytest of their own.

The carla library's threads abort the process that used a client once its server is gone, so
those tests must not share the suite's process. Their own output is shown when one fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # about 70 s on a loaded 2-core box (load average 12), 25 tests
def test_carla_server_with_the_real_client() -> None:
    pytest.importorskip("carla", reason="needs the real carla client (pip install 'laneloop[carla]')")
    pytest.importorskip("msgpack", reason="the CARLA server needs msgpack (pip install 'laneloop[carla]')")
    live = ROOT / "tests" / "carla_server_live.py"
    opts = ["-o", "addopts=", "-o", "python_files=carla_server_live.py", "-p", "no:cacheprovider"]
    cmd = [sys.executable, "-m", "pytest", "-q", *opts, str(live)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, report


def test_depth_encoding_is_carlas_24_bit_code() -> None:
    """CARLA decodes (R + 256 G + 65536 B) / (2**24 - 1) * 1000 m; sky and no-ground read as 1000 m."""
    import numpy as np

    from sim.carla_server import layouts

    step = 1000.0 / (2**24 - 1)
    depth = np.array([[0.0, step, 1.5, 999.9], [np.inf, np.nan, 2000.0, 255.0 * 256 * step]], np.float32)
    bgra = layouts.depth_bgra(depth)
    assert bgra.shape == (2, 4, 4) and bgra.dtype == np.uint8
    assert bgra[0, 1].tolist() == [0, 0, 1, 255]  # one step: low byte in R (BGRA order)
    assert bgra[1, 3].tolist() == [0, 255, 0, 255]  # 255 * 256 steps: all in G
    assert bgra[1, :3, :3].tolist() == [[255, 255, 255]] * 3  # inf, NaN, beyond the far plane
    back = layouts.depth_from_bgra(bgra)
    assert np.abs(back[0] - depth[0]).max() <= step / 2 + 1e-4
    assert back[1, :3].tolist() == [1000.0] * 3


def test_traffic_lights_of_a_town_govern_their_approaches() -> None:
    """Town03's lights: groups per junction green in turn; a car in an approach zone is at its light."""
    import numpy as np

    from sim.carla_server import lights as tl
    from sim.embedded.town import load_town

    town = load_town("Town03")
    lights = tl.TrafficLights(town, first_id=100)
    assert len(lights) == 24 and sorted(lights.lights) == list(range(100, 124))
    group = lights.groups[0]
    assert [light.state for light in group.lights] == [tl.GREEN] + [tl.RED] * (len(group.lights) - 1)
    states = []
    for _ in range(int(round(15.0 / 0.05))):  # one turn: green 10 s, yellow 3 s, all red 2 s
        lights.step(0.05)
        states.append(tuple(light.state for light in group.lights))
    first = [s[0] for s in states]
    assert first.count(tl.GREEN) == 199 and first.count(tl.YELLOW) == 60 and first.count(tl.RED) == 41
    assert states[-1][1] == tl.GREEN  # the next mouth's turn
    # A car on an approach zone, facing along it: at that light, with its state.
    k = int(np.nonzero(lights._key == group.lights[1].id)[0][3])
    x, y = lights._pts[k]
    yaw = float(lights._heading[k])
    assert lights.vehicle_signal(x, y, yaw) == (tl.GREEN, True, group.lights[1].id)
    assert lights.vehicle_signal(x, y, yaw + np.pi) == (tl.GREEN, False, 0)  # the other way: no light
    lights.set_state(group.lights[1].id, tl.RED)
    lights.freeze(group.lights[1].id, True)
    lights.step(1.0)
    assert lights.vehicle_signal(x, y, yaw) == (tl.RED, True, group.lights[1].id)
    # Town01 has stop signs, no lights: Red without a light at its junction mouths, as CARLA's stop signs.
    stops = tl.TrafficLights(load_town("Town01"), first_id=100)
    assert len(stops) == 0 and len(stops._pts) > 0
    assert stops.vehicle_signal(*stops._pts[0], float(stops._heading[0])) == (tl.RED, False, 0)
    assert tl.TrafficLights.none().vehicle_signal(0.0, 0.0, 0.0) == (tl.GREEN, False, 0)


def test_object_depth_is_the_range_of_its_foot() -> None:
    """sim/depth.py (the depth camera's source): an upright object takes the range where it meets the ground."""
    import numpy as np

    from sim.depth import depth_image
    from sim.types import CameraSpec

    spec = CameraSpec()
    labels = np.full((spec.height, spec.width), 1, np.uint8)  # road
    labels[:60] = 11  # sky
    labels[60:100, 150:170] = 14  # a car standing on the road at row 100
    depth = depth_image(spec, labels)
    foot = depth[100, 160]
    assert 4.0 < foot < 8.0 and depth[159, 160] < 3.0  # the bottom row's ground is much nearer
    assert abs(depth[99, 160] - foot) < 0.05  # the car's lowest pixel: its foot's range, not the bottom row's
    assert np.all(np.diff(depth[60:100, 160]) > 0)  # up the face optical z shrinks (the camera looks down)


def test_walker_walks_its_control_and_renders_as_pedestrian_boxes() -> None:
    """WalkerControl off the wire (CARLA frame) moves the walker in ours; its boxes are tagged Pedestrian."""
    import math

    import numpy as np
    import pytest

    from sim.carla_server.walkers import Walker, concat_boxes, walker_boxes
    from sim.embedded.props import Boxes

    w = Walker(1.0, 2.0, 0.0, (0.48, 0.58, 1.86), (70, 90, 140))
    w.apply([[0.0, 2.0, 0.0], 1.5, False])  # CARLA +y (right of +x) is our -y; the length is dropped
    for _ in range(10):
        w.step(0.05)
    assert (w.x, w.y) == pytest.approx((1.0, 2.0 - 0.75)) and w.yaw == pytest.approx(-math.pi / 2)
    assert w.velocity == pytest.approx((0.0, -1.5)) and w.control == ((0.0, 2.0, 0.0), 1.5, False)
    w.apply([[0.0, 0.0, 0.0], 1.5, False])  # no direction: standing
    w.step(1.0)
    assert (w.x, w.y) == pytest.approx((1.0, 1.25)) and w.speed == 0.0
    with pytest.raises(ValueError):
        w.apply([[1.0, 0.0, 0.0], -1.0, False])
    boxes = walker_boxes([w])
    assert boxes.tag.tolist() == [12, 12] and boxes.z0[1] + boxes.size[1, 2] == pytest.approx(1.86)
    both = concat_boxes(Boxes.from_rows([]), boxes)
    assert np.array_equal(both.xy, boxes.xy) and both.tag.dtype == np.uint8
