"""Write the catalogue into the Colab notebook's schedule dropdown.

Colab reads a form field's choices from the literal list after ``#@param`` in the cell's source, so
notebooks/lora_sched_colab.ipynb holds the schedule names as text; this rewrites that list from the
registered specs (the selected default is kept).

    python tools/gen_colab_catalogue.py            # exit 1 when the dropdown is stale
    python tools/gen_colab_catalogue.py --write    # rewrite it

tests/test_notebook_colab.py fails when the dropdown differs from the catalogue.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "lora_sched_colab.ipynb"

sys.path.insert(0, str(ROOT))

from lora_sched.config.writer import atomic_write_text  # noqa: E402
from lora_sched.schedules.spec import all_specs  # noqa: E402

#: The dropdown's line as it is stored in the notebook's JSON (quotes escaped): the list is group 2.
DROPDOWN = re.compile(r'("scheduler = \\"\w+\\"  #@param )(\[[^\]]*\])')


def render(text: str) -> str:
    """The notebook's JSON text with the dropdown listing every schedule, in catalogue order."""
    names = repr([spec.name for spec in all_specs()])
    new, count = DROPDOWN.subn(lambda m: m.group(1) + names, text)
    if count != 1:
        raise SystemExit(f"{NOTEBOOK}: expected one scheduler dropdown line, found {count}")
    return new


def main() -> int:
    text = NOTEBOOK.read_text(encoding="utf-8")
    new = render(text)
    if "--write" in sys.argv:
        if new != text:
            atomic_write_text(NOTEBOOK, new)
        return 0
    return 0 if new == text else 1


if __name__ == "__main__":
    raise SystemExit(main())
