"""The Colab notebook: its #@param fields come from the catalogue, and it runs top to bottom on a real kernel."""

from __future__ import annotations

import ast
import base64
import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat (the test extra) is not installed")

from notebook_kernel import NOTEBOOK, install_kernel  # noqa: E402

from lora_sched.config import load_config  # noqa: E402
from lora_sched.notebook import quick_settings  # noqa: E402
from lora_sched.schedules import all_specs  # noqa: E402


def _cells() -> list:
    return nbformat.read(NOTEBOOK, as_version=4).cells


def _parameters_cell() -> nbformat.NotebookNode:
    (cell,) = [c for c in _cells() if "parameters" in c.metadata.get("tags", [])]
    return cell


def test_notebook_is_valid_and_needs_no_colab() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    # Colab's module only where Drive is asked for, and its absence only prints a line
    assert source.count("google.colab") == 1
    drive = r"if use_google_drive:\n\s+try:\n\s+from google.colab import drive.*\n\s+except ImportError:"
    assert re.search(drive, source)
    assert 'use_google_drive = False  #@param {type:"boolean"}' in source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    # the install only happens when lora_sched cannot be imported
    setup = next(c.source for c in nb.cells if "%pip" in c.source)
    assert re.search(r"try:\n\s+import lora_sched\nexcept ImportError:\n\s+%pip install", setup)


def _run_setup_cell(monkeypatch: pytest.MonkeyPatch, cwd: Path, package_source: str) -> list[str]:
    """Run the setup cell as if lora_sched were not installed; return the pip command lines it ran."""
    from IPython.core.inputtransformer2 import TransformerManager

    setup = next(c.source for c in _cells() if "%pip" in c.source)
    setup, n = re.subn(r'^package_source = ""', f"package_source = {package_source!r}", setup, flags=re.M)
    assert n == 1
    namespace: dict = {}
    commands: list[str] = []

    class Shell:  # what %pip does here: expand {expressions} in the namespace, record, "install"
        def run_line_magic(self, magic: str, line: str) -> None:
            commands.append(re.sub(r"\{(.+?)\}\"", lambda m: str(eval(m.group(1), namespace)) + '"', line))
            monkeypatch.delitem(sys.modules, "lora_sched")  # installed: importable again

    namespace["get_ipython"] = Shell
    monkeypatch.setitem(sys.modules, "lora_sched", None)  # not installed: `import lora_sched` fails
    monkeypatch.chdir(cwd)
    exec(TransformerManager().transform_cell(setup), namespace)
    return commands


def test_setup_cell_installs_from_the_repository_copy_or_its_git_url(monkeypatch, tmp_path, capsys) -> None:
    pytest.importorskip("IPython", reason="IPython (the test extra's ipykernel) transforms the %pip line")
    repo = NOTEBOOK.parents[1]
    # in the checkout's notebooks/ folder, nothing set: the checkout itself
    assert _run_setup_cell(monkeypatch, repo / "notebooks", "") == [f'install -q "{repo}[notebook,train]"']
    url = "git+https://example.invalid/owner/lora_sched.git"
    assert _run_setup_cell(monkeypatch, tmp_path, url) == [f'install -q "lora_sched[notebook,train] @ {url}"']
    with pytest.raises(SystemExit, match="set package_source to its git URL"):
        _run_setup_cell(monkeypatch, tmp_path, "")
    assert "lora_sched 0.1.0" in capsys.readouterr().out


#: Quick-settings fields the form cell turns into sd-scripts' sample keys (not quick_settings arguments).
SAMPLE_FIELDS = ("sample_prompt", "sample_every_n_steps")


def test_quick_settings_fields_follow_the_catalogue() -> None:
    cell = _parameters_cell()
    params = {}
    for line in cell.source.splitlines():
        match = re.match(r"^(\w+) = (.+?)\s+#@param (.+)$", line)
        if match:
            params[match.group(1)] = (ast.literal_eval(match.group(2)), match.group(3))
    assert set(params) >= {"scheduler", "warmup_ratio", "num_cycles", "power", "learning_rate", "unet_lr"}
    assert set(params) >= {"text_encoder_lr", "run_length_unit", "max_train_steps", "max_train_epochs"}
    # the dropdown is exactly the catalogue, and the default is one of them
    options = ast.literal_eval(params["scheduler"][1])
    assert options == [s.name for s in all_specs()]
    assert params["scheduler"][0] in options
    assert '"slider"' in params["warmup_ratio"][1]
    # the defaults make a valid config
    values = {k: v for k, (v, _) in params.items() if k not in ("scheduler", "config_file", *SAMPLE_FIELDS)}
    from lora_sched.notebook.translate import translate

    cfg, _ = translate(quick_settings(params["scheduler"][0], **values))
    assert cfg.values["lr_scheduler"] == params["scheduler"][0]


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_on_a_real_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    install_kernel(tmp_path / "kernel", monkeypatch)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # papermill-style parameter injection: a 4-step run, samples every 2 steps, keeps the cell short in CI
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for field, value in (("max_train_steps", "4"), ("sample_every_n_steps", "2")):
        cell.source, n = re.subn(rf"^{field} = \d+", f"{field} = {value}", cell.source, flags=re.M)
        assert n == 1
    nb.cells[-1].source = nb.cells[-1].source.replace("plot_every=10", "plot_every=2")
    work = tmp_path / "work"
    work.mkdir()
    client = NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(work)}}, allow_errors=False
    )
    client.execute()

    outputs = {i: c.get("outputs", []) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    assert not any(o.get("output_type") == "error" for outs in outputs.values() for o in outs)
    text = json.dumps(outputs)
    assert "application/vnd.jupyter.widget-view+json" in text  # the form cell displayed the widget
    assert "Successfully installed" not in text  # lora_sched was importable: no pip install ran

    saved = work / "lora_sched.toml"
    cfg = load_config(saved)
    assert cfg.values["lr_scheduler"] == "cosine_with_restarts"
    assert cfg.values["max_train_steps"] == 4
    assert cfg.values["lr_scheduler_num_cycles"] == 3
    assert "lr_scheduler_power" not in saved.read_text(encoding="utf-8")
    # the training cell ran the CLI on the saved file and wrote the LoRA
    out_dir = work / cfg.values["output_dir"]
    weights = list(out_dir.rglob("*.safetensors"))
    assert weights, f"no .safetensors under {out_dir}: {sorted(p.name for p in work.rglob('*'))}"
    _check_live_view(nb.cells[-1].get("outputs", []), out_dir, cfg.values)


def _check_live_view(outputs: list, out_dir: Path, values: dict) -> None:
    """The train cell: one progress bar widget (no line per step), the LR + loss plot and the sample
    images shown inline; the samples are the ones the run wrote (before step 0, after steps 2 and 4)."""
    assert values["sample_prompts"] == "sample_prompts.txt" and values["sample_every_n_steps"] == 2
    samples = sorted(p.name for p in (out_dir / "sample").glob("lora_0*.png")) + sorted(
        p.name for p in (out_dir / "sample").glob("lora_e*.png")
    )
    assert [name.split("_")[1] for name in samples] == ["000002", "000004", "e000000"]
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 1  # tqdm.auto's bar, updated in place
    stream = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "train:" not in stream and "it/s" not in stream  # the run's own text bar is off
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the plot and the contact sheet, each one output updated in place
    from PIL import Image

    sheet = out_dir / "sample" / "lora_contact_sheet.png"
    shown = base64.b64decode(images[1]["data"]["image/png"])
    assert shown == sheet.read_bytes()  # the last contact sheet: 3 rows (e000000, 000002, 000004)
    with Image.open(sheet) as image:
        assert image.size == (72 + 96 + 4, 50 + 3 * (64 + 4))  # a prompt-labelled column at least 96 wide
