"""The ipywidgets input of a field's control kind (lora_sched.schedules.fields.Control)."""

from __future__ import annotations

from typing import Any

#: control kind -> the ipywidgets class that holds its value
_WIDGETS = {"float": "FloatText", "int": "IntText", "bool": "Checkbox", "choice": "Dropdown"}


def build(control: Any, widgets: Any, value: Any, placeholder: str, **common: Any) -> Any:
    """The widget for `control` holding `value` (`widgets`: the ipywidgets module the form uses)."""
    if control.kind == "bool":
        return widgets.Checkbox(value=value, indent=True, **common)
    if control.kind == "choice":
        return widgets.Dropdown(options=list(control.options), value=value, **common)
    if control.kind in _WIDGETS:
        return getattr(widgets, _WIDGETS[control.kind])(value=value, **common)
    return widgets.Text(value=value, placeholder=placeholder, **common)  # text and lists
