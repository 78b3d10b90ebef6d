"""Test-wide settings: headless pygame and matplotlib, caches inside the test session."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(tempfile.gettempdir(), "laneloop-test-inductor"))
# runtime="auto" caches its choice under $LANELOOP_CACHE: keep test runs out of ~/.cache
os.environ["LANELOOP_CACHE"] = tempfile.mkdtemp(prefix="laneloop-test-cache-")


@pytest.fixture(scope="module")
def one_torch_thread(tmp_path_factory: pytest.TempPathFactory):
    """Compiled kernels go to this module's folder, not /tmp or $HOME; one intra-op thread
    (tiny tensors: a second thread only adds synchronisation, and on a busy 2-core box
    spinning OpenMP threads make every step several times slower)."""
    import torch  # here, not at the top: most test modules never need it

    old = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    threads = torch.get_num_threads()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path_factory.mktemp("inductor"))
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    if old is None:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    else:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = old
