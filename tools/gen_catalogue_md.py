"""Print the README's catalogue section (a markdown table) generated from the schedule specs.

Columns: name, aliases (with their default overrides), params with defaults, the formula (the curve
docstring, joined onto one line) and the reference.

    python tools/gen_catalogue_md.py            # print it
    python tools/gen_catalogue_md.py --write    # write docs/sections/20-catalogue.md (atomically)

tests/test_cli_catalogue.py fails when docs/sections/20-catalogue.md differs from this output, so
the docs cannot drift from the specs. Run --write, then tools/build_readme.py, after editing a spec.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "sections" / "20-catalogue.md"

sys.path.insert(0, str(ROOT))

from lora_sched.schedules.spec import ScheduleSpec, all_specs, format_value  # noqa: E402

INTRO = """\
## The schedule catalogue

Every schedule is one spec in `lora_sched/schedules/catalogue/`; this table is generated from them
by `python tools/gen_catalogue_md.py` (`lora-sched describe NAME` shows bounds, units and gotchas).
Notation: s step, W warmup steps, T horizon, p = (s - W) / max(1, T - W) clipped to [0, 1], r the
floor ratio `min_lr_ratio`. Each curve is checked step by step over s = 0..T, to 1e-9, against its
reference (diffusers, transformers, torch) or against hand-computed values of its formula
(`tests/test_parity_*.py`, `tests/test_composer_formulas.py`, `tests/test_rex.py`).

Conventions that differ from a reference on purpose: `num_cycles` of the cosine schedules counts
half-cosine decays as sd-scripts does (diffusers' and transformers' own `num_cycles` is n / 2);
`cosine_with_restarts` with `num_cycles = 3` is three cycles, i.e. two restarts; every curve holds
its value at T past the horizon (diffusers' cosine climbs back up and its hard restarts drop to 0);
torch's absolute `eta_min` is the ratio `min_lr_ratio` here; the REX cycles fall to the same floor
r from peaks restart_decay^k, as LoRA_Easy's RexAnnealingWarmRestarts (kohya-colab's "rex") does.
"""


def cell(text: str) -> str:
    """Markdown-table-safe text on one line."""
    return " ".join(text.split()).replace("|", "\\|")


def params_text(spec: ScheduleSpec) -> str:
    if not spec.params:
        return "-"
    parts = []
    for p in spec.params:
        if p.required:
            parts.append(f"`{p.name}` (required)")
        else:
            parts.append(f"`{p.name}` = {p.default_text()}")
    return ", ".join(parts)


def aliases_text(spec: ScheduleSpec) -> str:
    parts = []
    for alias, defaults in spec.aliases.items():
        extra = ", ".join(f"{k} = {format_value(v)}" for k, v in defaults.items())
        parts.append(f"`{alias}`" + (f" ({extra})" if extra else ""))
    return ", ".join(parts) or "-"


def render() -> str:
    lines = [INTRO, "| name | aliases | params (default) | m(s) | reference |", "| --- | --- | --- | --- | --- |"]
    for spec in all_specs():
        formula = spec.formula  # whole, on one line: a first line alone can stop at "where"
        warmup = "" if spec.accepts_warmup else " (no warmup)"
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{spec.name}`{warmup}",
                    cell(aliases_text(spec)),
                    cell(params_text(spec)),
                    cell(formula),
                    cell(spec.reference),
                ]
            )
            + " |"
        )
    lines.append("")
    lines.append(
        'Custom torch classes: `lr_scheduler_type = "CosineAnnealingLR"` (or a dotted path) with '
        "`lr_scheduler_args`; the warmup is composed in front."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--write" in argv:
        tmp = TARGET.with_suffix(".md.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(TARGET)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
