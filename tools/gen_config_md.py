"""Print the config reference page of the docs (docs/config.md), generated from the key table
(lora_sched/config/keys.py) and the schedule specs.

    python tools/gen_config_md.py            # print it
    python tools/gen_config_md.py --write    # write docs/config.md (atomically)

tests/test_config_docs.py fails when the file differs from this output, so the reference cannot
drift from the code. Run --write (or tools/regenerate.py) after editing a key or a spec.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "config.md"

sys.path.insert(0, str(ROOT))

from lora_sched.config.keys import GLOBAL_SCHEDULER_KEYS, KEYS, SECTIONS, Key  # noqa: E402
from lora_sched.config.kohya_keys import kohya_key_names  # noqa: E402
from lora_sched.schedules.spec import all_specs  # noqa: E402

INTRO = """\
# The config file (kohya-ss compatible TOML)

A config is a flat kohya-ss `sd-scripts` TOML file: existing kohya-ss and kohya-colab files load as
they are, and files `lora_sched` writes still run in sd-scripts. Sections are for humans: any
section name is accepted on read (kohya flattens them), but a key written in two sections with
different values is an error naming both lines (kohya silently keeps the last one); with the same
value it is a notice. We write the sections below, plus
`[lora_sched]` for the keys sd-scripts does not have.

Rules, in the order the loader applies them:

- Not UTF-8, not TOML: one error with the line (`file:line: expected valid TOML, got ...`). An empty
  file is valid (every key takes its default, sd-scripts' where it has one: constant LR 2e-6 for 1600
  steps on `builtin:shapes`) but gives a notice, since it is rarely what was meant.
- Keys are sorted three ways. The {n_unused} keys the kohya tools know and this project does not use
  load with one notice listing them, and are written back where they were, so the file stays
  portable: every option of sd-scripts' and musubi-tuner's training scripts, their dataset config
  keys, and what the kohya_ss GUI, kohya-colab and LoRA_Easy write (`noise_offset`, `min_snr_gamma`,
  `epoch`, `noise_offset_type`, ...). The table is generated from those projects' sources by
  `tools/gen_kohya_keys.py` into `lora_sched/data/kohya_keys.json`, with the commit of each.
  A key within a slip of a known one (case, `-` for `_`, one edit, two in a name of 8+ characters)
  is an error with a did-you-mean hint: `learning_rat` would silently leave sd-scripts at its
  default. Any other key is a warning (sd-scripts drops it silently; so does `lora_sched`, and an
  export writes it back), an error with `lora-sched validate --strict`.
- Types are checked strictly, as sd-scripts converts nothing a config file holds (argparse's
  `type=` applies to the command line only): `learning_rate = "1e-4"` reaches its training code as
  text and stops it, so it is an error with the hint "remove the quotes"; an int key given `8.0`
  says "write 8". A quoted number is accepted only where sd-scripts still reads it right (see
  [Deliberate differences from sd-scripts](differences.md)). NaN, infinity, negative and absurd values are
  rejected with the allowed range; the bounds admit what sd-scripts runs (`network_dim = 100000`,
  LyCORIS' "full rank").
- Values as the kohya tools write them: `text_encoder_lr = [a, b]` (the kohya_ss GUI writes one per
  SDXL text encoder) gives every text encoder `a`, as sd-scripts' `networks.lora` does (a notice
  says so when the values differ); `network_train_unet_only = true` (the GUI's way of writing a
  text-encoder LR of 0) sets the text-encoder LR to 0. An absent key takes sd-scripts' default:
  `learning_rate` 2e-6, `lr_decay_steps` 0 (so `warmup_stable_decay` without it holds to the end,
  as in sd-scripts).
- Durations (`lr_warmup_steps`, `lr_decay_steps`, `schedule_steps` and duration arguments) take
  steps (int), a fraction of the horizon in [0, 1), `"5%"`, or `"100ba"`, `"2ep"`, `"512sp"`,
  `"0.3dur"`. A float >= 1 such as `lr_warmup_steps = 50.0` is an error: kohya reads it as 50 x the
  whole run.
- `lr_scheduler_args` is kohya's list `["key=value", ...]` (split on the first `=`, the value read
  as a Python literal, never evaluated; a bare word such as `cos` is a string) or a table
  `[optimizer_arguments.lr_scheduler_args]` with typed values. Every argument is checked against
  the chosen schedule: one it does not take is an error naming the schedules that do.
- kohya's global scheduler keys feed the schedule's parameter when it has one (table below).
  When it has none, sd-scripts' default value loads silently and any other value gives a warning
  naming the key and the schedule; `lora-sched validate --strict` turns warnings into errors. The
  kohya_ss GUI writes `lr_scheduler_num_cycles` equal to its `epoch` field for every schedule when
  the cycles field is blank: that value is a notice, so `--strict` accepts what the GUI writes. The
  same parameter in `lr_scheduler_args` and in a global key is an error.
- LoRA_Easy's scheduler classes are read as catalogue schedules, with a notice:
  `"...RexAnnealingWarmRestarts"` (kohya-colab's "rex") as `rex` and
  `"LoraEasyCustomOptimizer.CosineAnnealingWarmRestarts.CosineAnnealingWarmRestarts"` as
  `cosine_warmup_restarts` (a bare `CosineAnnealingWarmRestarts` is torch's class). Their arguments
  map as `gamma` -> `restart_decay`, `first_cycle_max_steps` -> `cycle_steps`, `warmup_steps` ->
  `cycle_warmup`, `min_lr` -> `min_lr` (an absolute LR that every param group falls to),
  `cycle_multiplier` and `d` (REX) as they are; what the file leaves out takes the class's default
  (`first_cycle_max_steps = 1`, `min_lr = 1e-6`, `warmup_steps = 0`, `cycle_multiplier = 1`,
  `d = 0.9`). As sd-scripts would fail to build the class, a missing `gamma`, an argument the class
  does not take, or a warmup not shorter than the first cycle is an error. Any other
  `lr_scheduler_type` is a torch class,
  checked against its signature by the torch adapter (only `torch.optim.lr_scheduler` and
  `lora_sched` are importable without `--trust-scheduler-code`).
- Epochs (`max_train_epochs`, `"2ep"`) are counted on the data the run reads: `dataset_config`,
  else `train_data_dir`, else a stated `samples_per_epoch` ([Data and run length](data.md)). Data that is not on this
  machine gives a notice, and an epoch-based run length is then unknown, never guessed; an image
  file that cannot be read is an error naming it.
- The `adafactor` schedule needs `optimizer_type = "Adafactor"` with `relative_step=True`, and that
  optimizer ignores any other schedule: both mismatches are errors.

Every problem of a file is reported at once, as `file:line: section.key: expected ..., got ...`
plus a `hint:` line; nothing ends in a traceback. `tests/invalid_configs/` holds {n_corpus} broken
files with the exact line and key each must produce.

Writing (`lora_sched.config.dump_config`) goes through tomli-w only, atomically (temp file +
`os.replace`), in the order of the table below, with `None` omitted and an optional
`#:schema` first line; `lr_scheduler_args` is written as a table, and as kohya's list only in the
kohya export. `lora-sched schema -o lora_sched.schema.json` writes the JSON Schema that taplo /
"Even Better TOML" use for completion and checks through that `#:schema` line (the configs in
`configs/` point at `configs/lora_sched.schema.json`).
"""


def cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def type_text(key: Key) -> str:
    return key.field.type_text()


def default_text(key: Key) -> str:
    if key.default is None:
        return key.default_doc or "unset"
    if key.default in ([], {}):
        return "empty"
    if isinstance(key.default, bool):
        return str(key.default).lower()
    if isinstance(key.default, str):
        return f'`"{key.default}"`'
    return f"`{key.default!r}`"


def render() -> str:
    corpus = ROOT / "tests" / "invalid_configs"
    n_corpus = len([p for p in corpus.glob("*.toml") if p.name != "expected.toml"])
    out = [INTRO.format(n_unused=len(kohya_key_names() - {k.name for k in KEYS}), n_corpus=n_corpus)]
    for section in SECTIONS:
        out.append(f"\n`[{section}]`\n")
        out.append("| key | type | default | meaning |")
        out.append("| --- | --- | --- | --- |")
        for key in KEYS:
            if key.section == section:
                out.append(f"| `{key.name}` | {cell(type_text(key))} | {cell(default_text(key))} | {cell(key.doc)} |")
    out.append("\nkohya's global scheduler keys and the parameter each one feeds:\n")
    out.append("| key | sd-scripts default | feeds |")
    out.append("| --- | --- | --- |")
    for gk, default in GLOBAL_SCHEDULER_KEYS.items():
        users = [f"{s.name}.`{p.name}`" for s in all_specs() for p in s.params if p.kohya_key == gk]
        shown = "none" if default is None else f"`{default}`"
        out.append(f"| `{gk}` | {shown} | {cell(', '.join(users) or '-')} |")
    out.append("\n`lr_scheduler_args` each schedule takes (`lora-sched describe NAME` for units and bounds):\n")
    out.append("| lr_scheduler | arguments (also accepted as) |")
    out.append("| --- | --- |")
    for spec in all_specs():
        parts = []
        for p in spec.params:
            also = f" ({', '.join(p.aliases)})" if p.aliases else ""
            parts.append(f"`{p.name}`{also}")
        names = ", ".join([spec.name, *spec.aliases])
        out.append(f"| {cell(names)} | {cell(', '.join(parts) or 'none')} |")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--write" in argv:
        from lora_sched.config.writer import atomic_write_text

        atomic_write_text(TARGET, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
