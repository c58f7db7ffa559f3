"""The notebook form: ipywidgets that write validated kohya TOML.

`SchedulerForm` is the widget; `lora_sched.notebook.translate` holds the plain functions behind it (form values ->
flat kohya keys -> validated config -> TOML text) that the Colab quick-settings cell uses too. `train_live`
trains with a live view (progress bar, LR + loss plot, sample images).
Importing this package imports neither ipywidgets nor matplotlib: they load when a form is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lora_sched.notebook.live import train_live
from lora_sched.notebook.run import run_cli
from lora_sched.notebook.translate import flat_to_form, form_to_flat, quick_settings

if TYPE_CHECKING:
    from lora_sched.notebook.form import SchedulerForm

__all__ = ["SchedulerForm", "flat_to_form", "form_to_flat", "quick_settings", "run_cli", "train_live"]


def __getattr__(name: str) -> Any:
    if name == "SchedulerForm":
        from lora_sched.notebook.form import SchedulerForm

        return SchedulerForm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
