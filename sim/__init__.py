"""The world: backend interface, CARLA semantic tags, the embedded simulator, the CARLA adapter.

`sim` knows nothing of perception and never imports torch.
"""

from sim.backend import Backend, BackendError, make_backend
from sim.types import CameraFrame, CameraSpec, Control, EgoState, Observation, Weather

__all__ = [
    "Backend",
    "BackendError",
    "CameraFrame",
    "CameraSpec",
    "Control",
    "EgoState",
    "Observation",
    "Weather",
    "make_backend",
]
