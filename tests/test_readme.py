"""The README is assembled from docs/sections; a stale README means someone edited the wrong file."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_is_assembled_from_sections():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "build_readme.py"), "--check"], cwd=ROOT)
    assert result.returncode == 0, "README.md is stale: run `python tools/build_readme.py`"


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in first_block.splitlines() if line.strip()]


def test_readme_opens_with_install_and_test_commands():
    install, test = _readme_commands()
    # the main job installs the train extra only (no JupyterLab / Playwright just to train)
    assert 'pip install -c constraints.txt -e ".[train]"' in install
    assert install.endswith("lora-sched train")
    assert test == "tools/test.sh"
    script = (ROOT / "tools" / "test.sh").read_text(encoding="utf-8")
    assert 'pip install -q -c constraints.txt -e ".[all]"' in script
    assert "apt-get install -y -qq chromium" in script  # the browser test's setup is part of the command
    assert script.rstrip().endswith('python -m pytest -n 2 -q "$@"')


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _readme_commands()[1] in ci.splitlines()


def test_the_docs_stand_alone():
    """The docs, docstrings and comments name no internal spec and no path of the machine they were
    written on."""
    sources = [p for folder in ("lora_sched", "bench", "tools", "notebooks") for p in (ROOT / folder).rglob("*.*")]
    sources = [p for p in sources if p.suffix in (".py", ".md", ".ipynb", ".toml")]
    for page in [ROOT / "README.md", *sorted((ROOT / "docs" / "sections").glob("*.md")), *sorted(sources)]:
        text = page.read_text(encoding="utf-8")
        for outside in ("DESIGN.md", "/work/"):
            assert outside not in text, f"{page.relative_to(ROOT)} mentions {outside}"


def test_the_config_python_example_runs(tmp_path, monkeypatch):
    """The README's Python example of the config layer runs as written (and its LR is the group's)."""
    import shutil

    blocks = (ROOT / "README.md").read_text(encoding="utf-8").split("```python")[1:]
    (example,) = [b.split("```", 1)[0] for b in blocks if 'load_config("configs/quickstart.toml")' in b]
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "quickstart.toml", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)
    assert (scope["lr_unet"] == scope["cfg"].group_lrs()["unet"] * scope["rs"].multipliers()).all()
    assert (tmp_path / "my.toml").is_file()
