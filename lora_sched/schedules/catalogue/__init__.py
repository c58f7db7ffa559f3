"""The schedule catalogue. Importing this package registers every spec.

Each module holds one family; each schedule is one `ScheduleSpec` whose curve docstring states its
formula. Notation: s step, W warmup steps, T horizon, p = (s - W) / max(1, T - W) clipped to
[0, 1], r the floor ratio (min_lr_ratio).
"""

from lora_sched.schedules.catalogue import adafactor, cosine, cyclic, decay, discrete  # noqa: F401
