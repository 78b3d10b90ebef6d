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


@pytest.mark.slow  # about 30-40 s on a loaded 2-core box
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
