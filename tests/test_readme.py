"""README.md is the documentation's front page (docs/index.md, links pointed into docs/): short, the two
opening commands exact, and current."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_is_the_docs_front_page():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "build_readme.py"), "--check"], cwd=ROOT)
    assert result.returncode == 0, "README.md is stale: edit docs/index.md, then run `python tools/build_readme.py`"


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
    for page in [ROOT / "README.md", ROOT / "mkdocs.yml", *sorted((ROOT / "docs").glob("*.md")), *sorted(sources)]:
        text = page.read_text(encoding="utf-8")
        for outside in ("DESIGN.md", "/work/"):
            assert outside not in text, f"{page.relative_to(ROOT)} mentions {outside}"


def test_the_config_python_example_runs(tmp_path, monkeypatch):
    """The docs' Python example of the config layer runs as written (and its LR is the group's)."""
    import shutil

    blocks = (ROOT / "docs" / "kohya-users.md").read_text(encoding="utf-8").split("```python")[1:]
    (example,) = [b.split("```", 1)[0] for b in blocks if 'load_config("configs/quickstart.toml")' in b]
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "quickstart.toml", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(example, "docs/kohya-users.md", "exec"), scope)
    assert (scope["lr_unet"] == scope["cfg"].group_lrs()["unet"] * scope["resolved"].multipliers()).all()
    assert (tmp_path / "my.toml").is_file()


def test_the_front_page_is_short_and_leads_to_the_docs():
    """A reader sees what it is, the two commands, the kohya quick path, how fast and where to read on: the
    long material lives on the docs pages, each of which the README links to."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 120
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [
        "# lora_sched",
        "## Install and train",
        "## Kohya users start here",
        "## How fast",  # the budgets, as ratios measured by bench/
        "## The documentation",
    ]
    assert "The second line is for contributors" in text
    linked = set(re.findall(r"\]\(docs/([^)#]+)", text))
    assert linked == {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"}
