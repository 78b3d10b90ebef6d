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
