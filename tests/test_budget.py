"""Training to a CPU-time budget (train.budget, train/train.py --budget-cpu-min): the schedule's
shape, the accounting, and a run that stops when its budget is spent, however many epochs it may take."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

import train.train as train_mod
from collect.record import main as record_main
from train import budget as budget_mod
from train.budget import BudgetSchedule, CpuBudget, lr_at

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_onecycle_and_cosine_shapes() -> None:
    lr = 1e-2
    assert lr_at("onecycle", 0.0, lr) == pytest.approx(lr / 25)
    assert lr_at("onecycle", 0.15, lr) == pytest.approx(lr)  # peak at the end of the warm-up
    assert lr_at("onecycle", 1.0, lr) == pytest.approx(lr / 25 / 1e4)
    assert lr_at("onecycle", 0.05, lr) < lr_at("onecycle", 0.10, lr) < lr  # rising
    assert lr > lr_at("onecycle", 0.5, lr) > lr_at("onecycle", 0.9, lr)  # annealing
    assert lr_at("cosine", 0.0, lr) == pytest.approx(lr)
    assert lr_at("cosine", 0.5, lr) == pytest.approx(lr / 2)
    assert lr_at("cosine", 2.0, lr) == pytest.approx(0.0)  # past the end: clamped
    with pytest.raises(KeyError, match="available: cosine, onecycle"):
        lr_at("linear", 0.5, lr)


def test_budget_charges_process_time_and_drives_the_lr(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([10.0, 13.0, 100.0, 104.0, 110.0])  # start, charge | (validation, not charged) start, charge, charge
    monkeypatch.setattr(budget_mod.time, "process_time", lambda: next(clock))
    budget = CpuBudget(10.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = BudgetSchedule(opt, "cosine", 1.0, budget)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)
    budget.start()
    sched.step()
    assert budget.used_s == pytest.approx(3.0) and not budget.exhausted
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.3)))
    budget.start()  # after validation: its 87 s are not charged
    sched.step()
    assert budget.used_s == pytest.approx(7.0)
    sched.step()
    assert budget.used_s == pytest.approx(13.0) and budget.exhausted and budget.fraction == 1.0
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)
    fresh = BudgetSchedule(opt, "cosine", 1.0, CpuBudget(10.0))
    fresh.load_state_dict(sched.state_dict())  # a resume continues from the spent time
    assert fresh.budget.used_s == pytest.approx(13.0)
    with pytest.raises(ValueError, match="> 0"):
        CpuBudget(0.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("budget") / "tiny"
    args = ["--episodes", "4", "--episode-frames", "8", "--every", "3", "--width", "128", "--height", "64"]
    args += ["--seed", "5", "--split", "train=0.5,val=0.25,test=0.25", "--out", str(out), "--no-progress"]
    assert record_main(args) == 0
    return out


def test_budget_run_stops_when_spent(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = ["--arch-kwargs", '{"base_width": 4, "depth": 3}', "--batch-size", "4", "--threads", "1"]
    out = tmp_path / "run"
    args = ["--data", str(data), "--out", str(out), "--no-progress", *tiny]
    # 0.01 CPU-min = 0.6 s: a handful of 4-frame steps of a width-4 U-Net, far fewer than 500 epochs
    assert train_mod.main([*args, "--budget-cpu-min", "0.01", "--epochs", "500"]) == 0
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert 1 <= len(rows) < 500
    spent = float(rows[-1]["train_cpu_s"])
    assert 0.6 <= spent < 0.6 + 5.0  # stops at the first step past the budget
    assert int(rows[-1]["steps"]) >= 1
    assert float(rows[-1]["lr"]) < 1e-5  # the schedule ran to its end with the budget
    # not enough epochs for the budget: it says so
    capsys.readouterr()
    out2 = tmp_path / "capped"
    argv = ["--data", str(data), "--out", str(out2), "--no-progress", *tiny, "--budget-cpu-min", "5", "--epochs", "1"]
    assert train_mod.main(argv) == 0
    assert "raise --epochs to spend the budget" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_mod.main([*args, "--overwrite", "--budget-cpu-min", "0"])
