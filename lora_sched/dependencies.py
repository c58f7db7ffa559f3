"""The versions training needs, checked before it starts: a missing package or a release outside
the supported range is one paragraph naming the package, the version found and the version needed,
never a traceback from deep inside a library.

TRAIN_REQUIREMENTS mirrors the `train` extra of pyproject.toml (tests/test_dependencies.py keeps the
two equal); tools/check_envs.py tests its floors and the newest releases.
"""

from __future__ import annotations

import importlib
import logging
from importlib import metadata
from typing import Any

from lora_sched.errors import ConfigError, problem, raw

#: pip name -> the range the `train` extra declares.
TRAIN_REQUIREMENTS = {
    "torch": ">=2.1",
    "diffusers": ">=0.35.2",  # 0.35.1 and older cannot import their pipelines under transformers 5
    "transformers": ">=4.57.1",
    "peft": ">=0.17",
    "accelerate": ">=1.10",
    "safetensors": ">=0.4.3",
    "tqdm": ">=4.60",
    "pillow": ">=10",
    "tensorboard": ">=2.21",  # log_with = "tensorboard" / logging_dir
    "matplotlib": ">=3.7",  # the loss + LR plot written at the end of a run
}
INSTALL_HINT = 'pip install -c constraints.txt -e ".[train]" in a checkout, or pip install -U "{req}"'


class DependencyError(ConfigError):
    """A package missing or at an unsupported version (a ConfigError: the CLI prints it, no traceback)."""

    def __init__(self, package: str, found: str | None, needed: str, hint: str = "") -> None:
        self.package = package
        found_text = f"version {found}" if found else "not installed"
        super().__init__(problem(package, f"{package} {needed}", raw(found_text), hint or _hint(package, needed)))


def _hint(package: str, needed: str) -> str:
    return INSTALL_HINT.format(req=f"{package}{needed}") if needed.startswith((">", "<", "=", "~", "!")) else ""


def installed_version(package: str) -> str | None:
    """The installed version of a pip package, or None."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def require(package: str, needed: str, hint: str = "") -> str:
    """The installed version of `package` if it satisfies the specifier `needed`; else DependencyError."""
    from packaging.specifiers import SpecifierSet

    found = installed_version(package)
    if found is None or not SpecifierSet(needed).contains(found, prereleases=True):
        raise DependencyError(package, found, needed, hint)
    return found


def import_optional(module: str, package: str, extra: str) -> Any:
    """`module`, or a DependencyError naming its package and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        found = installed_version(package)
        hint = f'pip install "lora_sched[{extra}]" (or pip install {package})'
        if found:  # installed, yet it does not import: usually a release built for something else
            hint = f"importing {module} failed: {exc}; reinstall it: {hint}"
        raise DependencyError(package, found, f"(the {extra} extra)", hint) from None


def check_train_dependencies() -> None:
    """Every package of the `train` extra installed at a supported version."""
    for package, needed in TRAIN_REQUIREMENTS.items():
        require(package, needed)


def quiet_optional_imports() -> None:
    """bitsandbytes' CPU backend warns at import (libraries such as peft import it whenever it is
    installed) about a 4-bit kernel package that 8-bit optimizers never use: keep that line out of
    every training run's output. Its errors still show."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
