"""sd-scripts' sample_sampler names and where sample images go (no imports at load: the key table,
loaded on every `validate`, reads the names)."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
