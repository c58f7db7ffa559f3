"""Version checks before training: one paragraph naming the package, the version found and the one
needed; the table they check equals pyproject's `train` extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lora_sched import dependencies
from lora_sched.dependencies import TRAIN_REQUIREMENTS, DependencyError, check_train_dependencies

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # tomli is a dependency of the package on 3.10
    import tomli as tomllib


def test_train_requirements_equal_the_train_extra():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    declared = {}
    for requirement in extra["train"]:
        name, _, floor = requirement.partition(">=")
        declared[name] = f">={floor}"
    assert list(declared) == list(TRAIN_REQUIREMENTS)
    assert declared == TRAIN_REQUIREMENTS


def _versions(monkeypatch: pytest.MonkeyPatch, **found: str | None) -> None:
    real = dependencies.installed_version
    monkeypatch.setattr(dependencies, "installed_version", lambda p: found[p] if p in found else real(p))


def _installed_train_stack() -> None:
    missing = [p for p in TRAIN_REQUIREMENTS if dependencies.installed_version(p) is None]
    if missing:
        pytest.skip(f"the train extra is not installed here (missing: {', '.join(missing)})")


def test_an_old_release_is_one_paragraph_with_found_and_needed(monkeypatch):
    _installed_train_stack()
    _versions(monkeypatch, transformers="4.44.2")
    with pytest.raises(DependencyError) as exc:
        check_train_dependencies()
    assert str(exc.value) == (
        "transformers: expected transformers >=4.57.1, got version 4.44.2\n"
        '    hint: pip install -c constraints.txt -e ".[train]" in a checkout, or pip install -U "transformers>=4.57.1"'
    )


def test_a_missing_package_is_named(monkeypatch):
    _installed_train_stack()
    _versions(monkeypatch, peft=None)
    with pytest.raises(DependencyError, match=r"^peft: expected peft >=0.17, got not installed\n"):
        check_train_dependencies()


def test_diffusers_that_cannot_import_its_pipelines_under_transformers_5_is_refused(monkeypatch):
    _installed_train_stack()
    _versions(monkeypatch, diffusers="0.35.1")
    with pytest.raises(DependencyError, match=r"^diffusers: expected diffusers >=0.35.2, got version 0.35.1\n"):
        check_train_dependencies()


def test_the_cli_prints_the_paragraph_and_exits_1(monkeypatch, capsys):
    _installed_train_stack()
    from lora_sched.cli import main

    _versions(monkeypatch, accelerate="0.33.0")
    assert main(["train", "--max-train-steps", "1"]) == 1
    err = capsys.readouterr().err
    assert "accelerate: expected accelerate >=1.10, got version 0.33.0" in err and "Traceback" not in err


def test_a_missing_optional_package_names_the_extra_that_installs_it(monkeypatch, tmp_path, capsys):
    from lora_sched.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    _versions(monkeypatch, matplotlib=None)
    config = tmp_path / "c.toml"
    config.write_text('lr_scheduler = "cosine"\nmax_train_steps = 10\n', encoding="utf-8")
    assert main(["preview", str(config), "--png", str(tmp_path / "lr.png")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        'matplotlib: expected matplotlib (the plot extra), got not installed\n'
        '    hint: pip install "lora_sched[plot]" (or pip install matplotlib)'
    )
    assert not (tmp_path / "lr.png").exists()
