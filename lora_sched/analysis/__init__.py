"""Schedule analysis: the convex-optimization bound (Schaipp et al. 2025, Thm. 1) and LR transfer.

>>> from lora_sched.analysis import bound_terms, schedule_bound
>>> bound_terms([1.0, 0.5, 0.25]).optimal_scale      # gamma* for step sizes gamma * m

(The module `lora_sched.analysis.bound` holds the array-level math; its `bound()` function is not
re-exported here, so the attribute `lora_sched.analysis.bound` stays the module.)
"""

from lora_sched.analysis.bound import (
    BoundTerms,
    bound_over_time,
    bound_terms,
    optimal_scale,
    sample_steps,
)
from lora_sched.analysis.schedule import (
    ScheduleBound,
    Transfer,
    bound_summary,
    schedule_bound,
    step_sizes,
    transfer_lr,
    transfer_request,
)

__all__ = [
    "BoundTerms",
    "ScheduleBound",
    "Transfer",
    "bound_over_time",
    "bound_summary",
    "bound_terms",
    "optimal_scale",
    "sample_steps",
    "schedule_bound",
    "step_sizes",
    "transfer_lr",
    "transfer_request",
]
