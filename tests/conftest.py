"""Shared helpers for the catalogue tests: our curve, a reference curve from a stepped torch optimizer."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from lora_sched.schedules import ResolvedSchedule, ScheduleRequest, resolve


class _CurrentStderr:
    """Writes to whatever sys.stderr is now. diffusers and transformers give their loggers a
    StreamHandler bound to sys.stderr (and its flush) when first used; under capsys that is one test's capture,
    closed by the next test, whose output would then hold logging's own "--- Logging error ---"."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture(autouse=True)
def _library_logs_follow_stderr() -> None:
    for name in ("diffusers", "transformers"):
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler and not isinstance(handler.stream, _CurrentStderr):
                handler.stream = _CurrentStderr()  # not setStream: it flushes the closed capture
                handler.__dict__.pop("flush", None)  # diffusers binds the first stderr's flush too


@pytest.fixture(autouse=True)
def _train_logger_as_a_library_leaves_it():
    """`lora-sched train` run in-process (main([...])) gives the lora_sched.train logger its own
    stderr handler, without propagation; a later test calling the library directly then reads the
    records with caplog, as a library user's logging would: each test starts from a plain logger."""
    logger = logging.getLogger("lora_sched.train")
    yield
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


#: Parity tolerance on the learning rate, absolute and relative.
TOL = 1e-9
#: The horizons of the parity grid, and the warmups tried for each (W = T - 1 needs T >= 2).
HORIZONS = (1, 2, 7, 100, 10007)


def warmups(T: int) -> list[int]:
    """W in {0, 1, 10% of T, T - 1}, deduplicated, each < T (W >= T is an error in our resolution)."""
    return sorted({w for w in (0, 1, T // 10, T - 1) if 0 <= w < T})


def grid(params: Sequence[dict[str, Any]]) -> list[Any]:
    """pytest params (T, W, args) over HORIZONS x warmups x the schedule's parameter sets."""
    cases = []
    for T in HORIZONS:
        for W in warmups(T):
            for i, args in enumerate(params):
                cases.append(pytest.param(T, W, dict(args), id=f"T{T}-W{W}-p{i}"))
    return cases


def ours(
    name: str, T: int, W: int = 0, args: dict[str, Any] | None = None, base_lr: float = 1.0, **request: Any
) -> ResolvedSchedule:
    """Our resolved schedule over horizon T with warmup W (run length T unless given)."""
    request.setdefault("max_train_steps", T)
    return resolve(ScheduleRequest(name, args=dict(args or {}), warmup=W, base_lr=base_lr, **request))


def our_lrs(rs: ResolvedSchedule, lrs: Sequence[float], n: int) -> np.ndarray:
    """base_lr_group x m(s) for s = 0..n-1, one column per group."""
    m = rs.multipliers(np.arange(n))
    return np.outer(m, np.asarray(lrs, dtype=np.float64))


def reference_lrs(make: Callable[[Any], Any], lrs: Sequence[float], n: int) -> np.ndarray:
    """LR of each param group at steps 0..n-1 from a real torch scheduler.

    The LR used by update s + 1 is get_last_lr() after s scheduler.step() calls. The optimizer steps
    once first (so torch sees the usual order and does not warn); it has no gradients, so its later
    steps would change nothing and are skipped to keep 10,000-step references fast.
    """
    import torch

    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    optimizer = torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)
    scheduler = make(optimizer)
    optimizer.step()
    out = np.empty((n, len(lrs)))
    for s in range(n):
        out[s] = scheduler.get_last_lr()
        if s + 1 < n:
            scheduler.step()
    return out


def assert_lr_close(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    np.testing.assert_allclose(actual, expected, rtol=TOL, atol=TOL, err_msg=what)


#: Arguments tuned for the edge cases (T = 1, W = T - 1, a huge T) where a schedule's own example
#: (``ScheduleSpec.example``) is not the interesting case; `edge_args` falls back to the example, so
#: a new schedule needs no entry here.
EDGE_ARGS: dict[str, dict[str, Any]] = {
    "linear": {"min_lr_ratio": 0.1},
    "cosine": {"num_cycles": 1.5},
    "cosine_with_restarts": {"num_cycles": 1, "cycle_warmup": 0},
    "cosine_annealing_warm_restarts": {"t_0": 1, "t_mult": 2},
    "polynomial": {"power": 2.0},
    "piecewise_constant": {"step_rules": "1:1,0.5:2,0.25"},
    "step": {"step_size": 1, "gamma": 0.5},
    "multistep": {"milestones": [0, 1], "gamma": 0.5},
    "exponential": {"gamma": 0.999},
    "warmup_stable_decay": {"decay": 1, "decay_type": "cosine"},
    "rex": {"num_cycles": 1, "restart_decay": 0.9},
    "cosine_warmup_restarts": {"num_cycles": 2, "restart_decay": 0.9, "min_lr": 1e-6},
    "sqrt": {"decay": 1},
}


def edge_args(name: str) -> dict[str, Any]:
    """The arguments the generic tests run schedule `name` with."""
    from lora_sched.schedules import get_spec

    return dict(EDGE_ARGS.get(name, get_spec(name).example))
