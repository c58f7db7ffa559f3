"""`lora-sched list` and `lora-sched describe`: the catalogue as text, generated from the specs."""

from __future__ import annotations

import argparse
import sys
import textwrap

from lora_sched.errors import ConfigError
from lora_sched.schedules.spec import ScheduleSpec, all_specs, lookup


def cmd_list(args: argparse.Namespace) -> int:
    specs = all_specs()
    width = max(len(s.name) for s in specs)
    for spec in specs:
        aliases = f"  (aliases: {', '.join(spec.aliases)})" if spec.aliases else ""
        print(f"{spec.name:<{width}}  {spec.summary}{aliases}")
    print("\nCustom torch classes: set lr_scheduler_type (e.g. CosineAnnealingLR) with lr_scheduler_args.")
    print("`lora-sched describe NAME` shows parameters, formula and gotchas.")
    return 0


def describe_text(spec: ScheduleSpec, alias_defaults: dict | None = None) -> str:
    """The full description of a schedule, as `describe` prints it."""
    lines = [f"{spec.name}: {spec.summary}"]
    if spec.aliases:
        lines.append("aliases: " + ", ".join(spec.aliases))
    lines.append("")
    lines.append("parameters (in lr_scheduler_args, or the kohya key shown):")
    if not spec.params:
        lines.append("  (none)")
    for p in spec.params:
        default = p.default_text()
        if alias_defaults and p.name in alias_defaults:
            default = f"{alias_defaults[p.name]} (this alias)"
        rng = p.range_text()
        extra = [f"default {default}"]
        if rng:
            extra.append(rng)
        if p.kohya_key:
            extra.append(f"kohya key {p.kohya_key}")
        if p.aliases:
            extra.append("also " + ", ".join(p.aliases))
        lines.append(f"  {p.name} ({p.field.kind}): {p.doc}")
        lines.append(f"      {'; '.join(extra)}")
    lines.append("")
    lines.append(
        "warmup: "
        + (
            "lr_warmup_steps, rising from warmup_start to the curve's value at W"
            if spec.accepts_warmup
            else f"none ({spec.warmup_note})"
        )
    )
    lines.append("")
    lines.append("formula (s step, W warmup, T horizon, p = (s - W) / max(1, T - W) in [0, 1], r floor):")
    lines.extend("  " + line for line in spec.formula.splitlines())
    lines.append("")
    lines.append(f"reference: {spec.reference}")
    if spec.gotchas:
        lines.append("")
        lines.append("gotchas:")
        for g in spec.gotchas:
            lines.extend(textwrap.wrap(g, width=96, initial_indent="  - ", subsequent_indent="    "))
    return "\n".join(lines)


def cmd_describe(args: argparse.Namespace) -> int:
    try:
        spec, alias_defaults = lookup(args.name, key="NAME")
    except ConfigError as exc:  # a wrong name on the command line is a usage error (exit 2), not a config
        print(f"lora-sched describe: {exc}", file=sys.stderr)
        return 2
    if args.name != spec.name:
        print(f"{args.name} is an alias of {spec.name}\n")
    print(describe_text(spec, dict(alias_defaults)))
    return 0
