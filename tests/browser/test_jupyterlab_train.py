"""The notebook's training cell in a real browser: JupyterLab and headless Chromium (as
test_jupyterlab_form.py) run the whole notebook with a short run; the live view shows one progress
bar, a plot redrawn while the run goes, and the sample images. The screenshot of the cell's output
is kept under test-artifacts/notebook_train_live_jupyterlab.png."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from notebook_kernel import NOTEBOOK
from test_jupyterlab_form import _KERNEL_READY, ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, RUN_S, STARTUP_S, jupyterlab

__all__ = ["jupyterlab"]  # the fixture, imported for pytest
#: Every cell has run: no prompt shows [*] (queued or running) and the training cell (cell n) has its number
#: (Shift+Enter on the last cell adds an empty one below it).
_ALL_RAN = """n => {
  const cells = document.querySelectorAll('.jp-Notebook .jp-Cell');
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-InputPrompt')].map(p => p.textContent);
  const train = cells[n - 1] && cells[n - 1].querySelector('.jp-InputPrompt');
  return !prompts.some(t => t.includes('*')) && !!train && /\\d/.test(train.textContent);
}"""


def _short_run_notebook(target: Path) -> None:
    """The notebook with a 30-step run, samples every 10 steps and the plot redrawn every 3 steps."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for field, value in (("max_train_steps", "30"), ("sample_every_n_steps", "10")):
        cell.source, n = re.subn(rf"^{field} = \d+", f"{field} = {value}", cell.source, flags=re.M)
        assert n == 1
    nb.cells[-1].source = nb.cells[-1].source.replace("plot_every=10", "plot_every=3")
    nbformat.write(nb, target)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("LORA_SCHED_NO_BROWSER") == "1", reason="LORA_SCHED_NO_BROWSER=1: browser test opted out"
)
def test_training_cell_shows_a_live_plot_and_samples(jupyterlab: str, tmp_path: Path) -> None:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run the suite with tools/test.sh, or apt-get install -y chromium"
    from playwright.sync_api import sync_playwright

    _short_run_notebook(tmp_path / "root" / NOTEBOOK.name)  # the served copy (the fixture's root folder)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "notebook_train_live_jupyterlab.png"
    failed_shot = ARTIFACTS / "notebook_train_live_jupyterlab_FAILED.png"
    for stale in (shot, failed_shot):
        stale.unlink(missing_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            try:
                plots, output = _run_notebook(page, jupyterlab)
                output.scroll_into_view_if_needed()
                output.screenshot(path=str(shot))
            except BaseException:
                page.screenshot(path=str(failed_shot))
                raise
        finally:
            browser.close()
    assert len(plots) >= 2, "the plot was never redrawn while the run went"
    assert shot.stat().st_size > 10_000
    samples = sorted((tmp_path / "root" / "output" / "sample").glob("lora_0000[123]0_00_*.png"))
    assert [s.name.split("_")[1] for s in samples] == ["000010", "000020", "000030"]


def _run_notebook(page: Any, jupyterlab: str) -> tuple[set[str], Any]:
    """Run every cell; until the last one is done, collect the plot's successive images (its src).
    Returns them and the training cell's output area."""
    page.goto(f"{jupyterlab}/lab/tree/{NOTEBOOK.name}", timeout=STARTUP_S * 1000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=STARTUP_S * 1000)
    page.wait_for_function(_KERNEL_READY, timeout=STARTUP_S * 1000)
    page.locator(".jp-Notebook .jp-Cell").first.click()
    page.keyboard.press("Escape")
    cells = page.locator(".jp-Notebook .jp-Cell").count()
    for _ in range(cells):
        page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-Notebook .jp-Cell").nth(cells - 1).locator(".jp-OutputArea")
    plot = output.locator("img").first
    plot.wait_for(timeout=RUN_S * 1000)
    seen: set[str] = set()
    deadline = time.monotonic() + RUN_S * 2
    while not page.evaluate(_ALL_RAN, cells):
        seen.add(plot.get_attribute("src") or "")
        assert time.monotonic() < deadline, "the training cell did not finish"
        page.wait_for_timeout(300)
    seen.add(plot.get_attribute("src") or "")
    assert output.locator("img").count() == 2  # the plot and the contact sheet, each updated in place
    assert output.locator(".widget-hprogress").count() == 1  # one progress bar (tqdm.auto's widget)
    assert "30/30" in output.inner_text()  # it reached the end
    assert "Traceback" not in output.inner_text()
    return seen, output
