"""TEST AND BENCHMARK ONLY: a 'model' that returns the true lane mask.

`GroundTruthMaskPredictor` answers each frame with ``labels == RoadLine`` of that very
frame, at a stated latency. It is the ceiling a perfect model would reach: it validates
the loop, the ground geometry and the lane keeper without any trained model, and tells a
trained model's driving apart from the controller's own limits. It reads ground truth, so
it is never a real predictor; `truth_backend` wraps a backend factory to hand it each
observation's labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.backend import make_backend
from sim.tags import ROAD_LINE
from sim.types import Control, Observation


@dataclass(frozen=True)
class StatedTiming:
    """A latency split that is stated, not measured (so runs with it are repeatable)."""

    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float


class GroundTruthMaskPredictor:
    """The true lane mask of the frame it is given (see the module doc); not a model."""

    scheme = "float"

    def __init__(self, name: str = "ground_truth_mask", latency_ms: float = 0.0) -> None:
        self.name = name
        self.latency_ms = float(latency_ms)
        self.input_size: tuple[int, int] = (0, 0)
        self._labels: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def see(self, obs: Observation) -> Observation:
        """Remember this observation's labels (keyed by its RGB array) and pass it on.

        A few recent frames are kept: the loop may step the next tick while this one is
        being predicted. The RGB is kept too, so its id cannot be reused meanwhile.
        """
        cam = obs.camera
        self._labels[id(cam.rgb)] = (cam.rgb, cam.labels)
        while len(self._labels) > 4:
            self._labels.pop(next(iter(self._labels)))
        self.input_size = cam.rgb.shape[:2]
        return obs

    def warmup(self) -> None:
        pass

    def predict_timed(self, rgb: np.ndarray) -> tuple[np.ndarray, StatedTiming]:
        try:
            labels = self._labels[id(rgb)][1]
        except KeyError:
            raise RuntimeError("GroundTruthMaskPredictor needs its backend wrapped by truth_backend") from None
        return labels == ROAD_LINE, StatedTiming(0.0, self.latency_ms, 0.0)


def truth_backend(
    predictor: GroundTruthMaskPredictor, factory: Callable[..., Any] = make_backend
) -> Callable[..., Any]:
    """A backend factory whose backends show every observation to `predictor` first."""

    def build(name: str, **kwargs: Any) -> Any:
        return _Showing(factory(name, **kwargs), predictor)

    return build


class _Showing:
    def __init__(self, backend: Any, predictor: GroundTruthMaskPredictor) -> None:
        self._backend = backend
        self._predictor = predictor

    def reset(self, scenario: Any, seed: int | None = None) -> Observation:
        return self._predictor.see(self._backend.reset(scenario, seed=seed))

    def step(self, control: Control | None = None, **kwargs: Any) -> Observation:
        return self._predictor.see(self._backend.step(control, **kwargs))

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> _Showing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["GroundTruthMaskPredictor", "StatedTiming", "truth_backend"]
