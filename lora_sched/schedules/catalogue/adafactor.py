"""Adafactor's own relative step size (the optimizer schedules itself; this curve previews it)."""

from __future__ import annotations

from typing import Any

from lora_sched._lazy import np
from lora_sched.schedules.fields import Bool
from lora_sched.schedules.spec import Param, ScheduleSpec, register

#: Adafactor(relative_step=True) caps its relative step size at this value (transformers, fairseq).
RELATIVE_STEP_CAP = 1e-2


def adafactor_curve(steps: Any, resolved: Any) -> Any:
    """m(s) = rho(s) / lr0, lr0 = learning_rate, so the previewed LR of the base group is rho(s):
    rho(s) = min(1e-2, 1 / sqrt(s + 1)), or with warmup_init min(1e-6 (s + 1), 1 / sqrt(s + 1))
    (Adafactor counts updates from 1). The optimizer multiplies rho by max(1e-3, RMS(param)) per
    tensor when scale_parameter = true; the preview cannot know RMS(param) before training."""
    t = np.add(steps, 1.0, out=steps)
    cap = 1e-6 * t if resolved.params["warmup_init"] else RELATIVE_STEP_CAP
    rho = np.divide(1.0, np.sqrt(t, out=t), out=t)
    np.minimum(cap, rho, out=rho)
    rho /= resolved.base_lr
    return rho


def _adafactor_to_kohya(resolved: Any, n: int) -> dict[str, Any]:
    """Adafactor counts its own updates: the number of processes does not matter."""
    return {"lr_scheduler": "adafactor", "lr_warmup_steps": 0}


register(
    ScheduleSpec(
        name="adafactor",
        summary="Adafactor's own relative step size (optimizer_type Adafactor with relative_step=True)",
        params=(
            Param(
                "warmup_init",
                Bool(),
                "the optimizer's warmup_init: the step size rises as 1e-6 x step before 1/sqrt(step)",
                default=False,
            ),
        ),
        curve=adafactor_curve,
        reference="transformers Adafactor._get_lr and AdafactorSchedule; sd-scripts lr_scheduler = adafactor",
        accepts_warmup=False,
        warmup_note="Adafactor(relative_step=True) sets its own step size; set lr_warmup_steps = 0",
        gotchas=(
            "Only valid with optimizer_type = Adafactor and relative_step=True in optimizer_args.",
            "The preview shows the relative step size rho(s) as the LR; with scale_parameter=True "
            "(Adafactor's default) each tensor's real step is rho(s) x max(1e-3, RMS(tensor)).",
            "Adafactor ignores learning_rate, unet_lr and text_encoder_lr when relative_step=True.",
        ),
        to_kohya=_adafactor_to_kohya,
        optimizer_sets_lr=True,
    )
)
