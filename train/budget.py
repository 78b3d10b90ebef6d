"""Training to a budget of process CPU time, and the lr schedule that follows it.

Why CPU time: candidates of a design study must get the same compute, and on a shared machine
wall time is set by whoever else is running; `time.process_time()` counts only what this
process ran (all its threads), so a loaded machine stretches a run but does not shorten its
training. Only training steps are charged (loading, augmentation, forward, backward, optimiser,
a distillation teacher's forward); validation is not, so a model is not penalised for its
scoring. A budget run is not bit-reproducible (where it stops depends on the CPU's speed);
its record (`train_cpu_s`, steps) says exactly what it got.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

#: One-cycle's shape, as torch.optim.lr_scheduler.OneCycleLR draws it: warm-up share, start and end divisors.
WARMUP, DIV_START, DIV_END = 0.15, 25.0, 1e4


class CpuBudget:
    """Process CPU seconds charged to training against a limit; `start` before a stretch of
    training steps, `charge` after each step."""

    def __init__(self, limit_s: float, used_s: float = 0.0) -> None:
        if not limit_s > 0:
            raise ValueError(f"a CPU budget must be > 0 s, got {limit_s}")
        self.limit_s, self.used_s = float(limit_s), float(used_s)
        self._mark: float | None = None

    def start(self) -> None:
        """Begin charging from now (call after anything that should not count, e.g. validation)."""
        self._mark = time.process_time()

    def charge(self) -> float:
        """Add the CPU time since the last start/charge; returns the total used [s]."""
        now = time.process_time()
        if self._mark is not None:
            self.used_s += now - self._mark
        self._mark = now
        return self.used_s

    @property
    def fraction(self) -> float:
        """Share of the budget spent, 0..1 (capped)."""
        return min(self.used_s / self.limit_s, 1.0)

    @property
    def exhausted(self) -> bool:
        return self.used_s >= self.limit_s


def lr_at(schedule: str, fraction: float, lr: float) -> float:
    """The learning rate at `fraction` (0..1) of the run: the same curves as `make_scheduler`'s
    per-step schedules, drawn against spent budget instead of steps taken."""
    f = min(max(fraction, 0.0), 1.0)
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * f))
    if schedule == "onecycle":
        start, end = lr / DIV_START, lr / DIV_START / DIV_END
        if f < WARMUP:
            return start + (lr - start) * 0.5 * (1.0 - math.cos(math.pi * f / WARMUP))
        g = (f - WARMUP) / (1.0 - WARMUP)
        return end + (lr - end) * 0.5 * (1.0 + math.cos(math.pi * g))
    raise KeyError(f"unknown schedule {schedule!r}; available: cosine, onecycle")


class BudgetSchedule:
    """Sets the optimiser's lr from the budget's spent share at every `step()`: a drop-in for
    the per-batch schedulers of `train.train_one_epoch` (momentum is not cycled)."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: str, lr: float, budget: CpuBudget) -> None:
        self.optimizer, self.schedule, self.lr, self.budget = optimizer, schedule, lr, budget
        lr_at(schedule, 0.0, lr)  # unknown names fail here, not mid-run
        self._apply()

    def _apply(self) -> None:
        value = lr_at(self.schedule, self.budget.fraction, self.lr)
        for group in self.optimizer.param_groups:
            group["lr"] = value

    def step(self) -> None:
        self.budget.charge()
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"used_s": self.budget.used_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.budget.used_s = float(state["used_s"])
        self._apply()
