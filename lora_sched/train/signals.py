"""SIGINT / SIGTERM during training: noted, acted on after the current step (a checkpoint, then a stop)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("lora_sched.train")
#: The StopSignals of the run going on in this process (sampling asks it between denoising steps).
_ACTIVE: list[StopSignals] = []


def stop_requested() -> bool:
    """Whether a signal asked the run in this process to stop: long work inside a step (sampling)
    checks it to give the step boundary back within a denoising step rather than after every image."""
    return any(stop.signum is not None for stop in _ACTIVE)


def acknowledgement(signum: int) -> str:
    """What the run says at once when a signal arrives: that it heard, what it does, and how to force it."""
    again = "Ctrl-C again" if signum == signal.SIGINT else f"{signal.Signals(signum).name} again"
    return f"stopping at the next step boundary, after saving a checkpoint ({again} to stop at once)"


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM stopped the run after saving a checkpoint at step `step` (exit 128 + signum)."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


class StopSignals:
    """SIGINT and SIGTERM during the loop are noted, not acted on at once: the loop saves a checkpoint
    at the end of the current step, then stops. A second signal gets the previous behaviour back
    (an immediate stop; checkpoints are atomic, so even a kill mid-save loses nothing saved)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._note)
        _ACTIVE.append(self)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.signum = signum
        self._restore()
        # Said from a thread: a handler that writes to stderr itself can interrupt a write to it in
        # progress (the progress bar's) and fail with "reentrant call"; the thread waits for it.
        threading.Thread(target=log.info, args=(acknowledgement(signum),), daemon=True).start()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def __exit__(self, *exc: Any) -> None:
        self._restore()
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def requested(self, accelerator: Any) -> bool:
        """Whether to stop after this step (in a multi-process run: when any process got a signal)."""
        if accelerator.num_processes == 1:
            return self.signum is not None
        if self.signum is not None:
            accelerator.set_trigger()
        if accelerator.check_trigger():
            self.signum = self.signum or signal.SIGTERM
            return True
        return False
