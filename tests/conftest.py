"""Test-wide settings: headless pygame and matplotlib, caches inside the test session."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(tempfile.gettempdir(), "laneloop-test-inductor"))
# runtime="auto" caches its choice under $LANELOOP_CACHE: keep test runs out of ~/.cache
os.environ["LANELOOP_CACHE"] = tempfile.mkdtemp(prefix="laneloop-test-cache-")
