"""Custom torch scheduler classes named by ``lr_scheduler_type`` (sd-scripts' custom path, made safe).

* `policy`: importing the class, once lora_sched.config.class_policy lets it (torch's and
  lora_sched's modules by default, other modules only with ``--trust-scheduler-code``, dangerous
  modules never); the target must be an LR scheduler class.
* `annotations` and `signature`: the arguments are checked against the class signature at
  validation time (missing, unknown with did-you-mean, wrong type against the annotation or the
  default).
* `checks`: every problem of a class with its arguments; the class is built once on a
  one-parameter dummy optimizer so that its own value checks run before any model loads, then
  stepped through the run.
* `warmup`: `WarmupThen` composes the warmup in front: during the first W updates the LR of each
  group rises from ``warmup_start x base`` to the class's LR at its own step 0, then the class runs
  from its step 0 (so with W = 0 it is exactly the class). ReduceLROnPlateau is fed through
  ``step_update(loss)``: the mean loss of each window of ``plateau_every`` updates.

The scheduler itself is built by `lora_sched.torch.factory`; `lora_sched.torch.preview` steps it
over a dummy optimizer for the previews.
"""

from __future__ import annotations

from lora_sched.torch.custom.checks import EXPORT_DRY_RUN_STEPS, check_run, check_scheduler_type, class_steps
from lora_sched.torch.custom.policy import resolve_class, split_path
from lora_sched.torch.custom.signature import check_signature
from lora_sched.torch.custom.warmup import WarmupThen

__all__ = [
    "EXPORT_DRY_RUN_STEPS",
    "WarmupThen",
    "check_run",
    "check_scheduler_type",
    "check_signature",
    "class_steps",
    "resolve_class",
    "split_path",
]
