"""The backend protocol every simulator implements, and the factory that picks one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sim.types import Control, Observation

if TYPE_CHECKING:
    from scenarios.schema import Scenario

BACKENDS = ("embedded", "carla")


class BackendError(RuntimeError):
    """An expected failure of a simulator (bad town, unreachable server, lost sensor)."""


@runtime_checkable
class Backend(Protocol):
    """Synchronous simulator: each `step` advances the world by one fixed dt.

    `step(None)` lets the backend's own autopilot drive the ego (used for recording and
    for scoring models on identical frames); `step(Control(...))` drives it by hand.
    `render=False` is a hint that nobody will look at this tick's images (a recorder keeping
    every K-th tick): a backend may then return no camera frames. It never changes the world.
    """

    def reset(self, scenario: Scenario, seed: int | None = None) -> Observation: ...

    def step(self, control: Control | None = None, *, render: bool = True) -> Observation: ...

    def close(self) -> None: ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...


class BackendBase:
    """Context-manager plumbing shared by the backends."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        pass


def make_backend(name: str = "embedded", **kwargs: Any) -> Backend:
    """Build a backend by name; the CARLA client is imported only when asked for."""
    if name == "embedded":
        from sim.embedded.backend import EmbeddedBackend

        return EmbeddedBackend(**kwargs)
    if name == "carla":
        from sim.carla_backend import CarlaBackend

        return CarlaBackend(**kwargs)
    raise BackendError(f"unknown backend {name!r} (choose one of: {', '.join(BACKENDS)})")
