"""sd-scripts' sample_sampler names, when a run samples and where sample images go (no imports at
load: the key table, loaded on every `validate`, reads the names)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from os import PathLike
    from pathlib import Path

#: sd-scripts' sample_sampler names (its --sample_sampler choices), "ddim" its default.
SAMPLERS = (
    "ddim",
    "pndm",
    "lms",
    "euler",
    "euler_a",
    "heun",
    "dpm_2",
    "dpm_2_a",
    "dpmsolver",
    "dpmsolver++",
    "dpmsingle",
    "k_lms",
    "k_euler",
    "k_euler_a",
    "k_dpm_2",
    "k_dpm_2_a",
)
DEFAULT_SAMPLER = "ddim"
#: Sample images go to output_dir/sample/, as in sd-scripts.
SAMPLE_DIR = "sample"


def contact_sheet_path(output_dir: str | PathLike[str], output_name: str) -> Path:
    """The run's contact sheet: every sample image of the run in one grid."""
    from pathlib import Path

    return Path(output_dir) / SAMPLE_DIR / f"{output_name}_contact_sheet.png"


def sample_interval(value: Any) -> int | None:
    """sample_every_n_steps / _epochs as sd-scripts reads them: 0 or less (or unset) is off (None)."""
    return int(value) if value is not None and int(value) > 0 else None


def samples_drawn(values: Any) -> bool:
    """Whether a run with these config values reads its sample prompt file: one is named, and
    sample_at_first or an interval says when to draw."""
    when = (
        values.get("sample_at_first"),
        sample_interval(values.get("sample_every_n_steps")),
        sample_interval(values.get("sample_every_n_epochs")),
    )
    return bool(values.get("sample_prompts")) and any(when)
