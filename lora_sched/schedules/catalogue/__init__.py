"""The schedule catalogue. Importing this package registers every spec.

Each module holds one family; each schedule is one `ScheduleSpec` whose curve docstring states its
formula. Notation: s step, W warmup steps, T horizon, p = (s - W) / max(1, T - W) clipped to
[0, 1], r the floor ratio (min_lr_ratio).

Every public module of this package is imported, in name order (the catalogue's order): a new
schedule is a new module here, and nothing else lists it. Modules starting with "_" hold shared
helpers and are imported by the modules that use them.
"""

import importlib
import os

# os.listdir, not pkgutil.iter_modules: that imports inspect, which validate does not pay for
for _file in sorted(os.listdir(__path__[0])):
    if _file.endswith(".py") and not _file.startswith("_"):
        importlib.import_module(f"{__name__}.{_file[:-3]}")
