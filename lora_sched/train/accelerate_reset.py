"""A second run in one process (a notebook) with another mixed_precision: accelerate's state cleared."""

from __future__ import annotations


def forget_previous_run() -> None:
    """Let a second run in the same single process (a notebook) choose another mixed_precision.

    The one use of accelerate's private API, and unavoidable: accelerate keeps its settings in a
    process-wide singleton (AcceleratorState) that refuses a changed setting and offers no public way
    to clear it (its own tests call the same private `_reset_state`). Only a single-process run
    resets it; a torchrun process is one run and never gets here twice."""
    from accelerate.state import AcceleratorState, PartialState

    if AcceleratorState._shared_state and PartialState().num_processes == 1:
        AcceleratorState._reset_state()
