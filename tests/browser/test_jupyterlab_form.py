"""The notebook form in a real browser: JupyterLab on localhost, headless Chromium driven by Playwright.

Needs Debian's chromium (/usr/bin/chromium; `tools/test.sh`, the README's test command, installs it)
and the test extra (jupyterlab, playwright); `playwright install` is never run. A missing browser
FAILS this test with the install command; LORA_SCHED_NO_BROWSER=1 is the explicit opt-out (reported
as a skip). The screenshot is kept under test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from notebook_kernel import NOTEBOOK, REPO, install_kernel

from lora_sched.schedules import all_specs

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts"
_KERNEL_READY = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === "connected" && kernel.status === "idle";
}"""
#: Seconds allowed for JupyterLab to start, and for the kernel to run the form cells.
STARTUP_S, RUN_S = 120, 180


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A JupyterLab server on 127.0.0.1 (token off) serving a copy of the notebook; yields its URL."""
    install_kernel(tmp_path / "kernel", monkeypatch)
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_RUNTIME_DIR", "rt"),
        ("JUPYTERLAB_SETTINGS_DIR", "settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    # no "get Jupyter news?" pop-up over the screenshot, no update checks
    notification = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text('{"fetchNews": "false", "checkForUpdates": false}', encoding="utf-8")
    port = _free_port()
    log = (tmp_path / "jupyterlab.log").open("w")
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",  # CI runs as root
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no extension look-ups on PyPI
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: lets the test see the kernel state
    ]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert server.poll() is None, f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "JupyterLab did not answer on /api/status"
            time.sleep(0.5)
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("LORA_SCHED_NO_BROWSER") == "1", reason="LORA_SCHED_NO_BROWSER=1: browser test opted out"
)
def test_form_in_jupyterlab_shows_dropdown_and_plot(jupyterlab: str) -> None:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: run the suite with tools/test.sh (it installs Debian's chromium), or "
        "`apt-get install -y chromium`; LORA_SCHED_NO_BROWSER=1 skips this test explicitly"
    )
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "notebook_form_jupyterlab.png"
    failed_shot = ARTIFACTS / "notebook_form_jupyterlab_FAILED.png"
    for stale in (shot, failed_shot):
        stale.unlink(missing_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            try:
                _run_form_and_check(page, jupyterlab, shot)
            except BaseException:
                page.screenshot(path=str(failed_shot))
                raise
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def _run_form_and_check(page: Any, jupyterlab: str, shot: Path) -> None:
    """Open the notebook, run its first cells, check the form's DOM and take the screenshot."""
    page.goto(f"{jupyterlab}/lab/tree/{NOTEBOOK.name}", timeout=STARTUP_S * 1000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=STARTUP_S * 1000)
    # wait until the kernel is connected and idle (keys pressed before that are lost), then run
    # the markdown, setup, quick-settings and form cells as a user would, with Shift+Enter
    page.wait_for_function(_KERNEL_READY, timeout=STARTUP_S * 1000)
    page.locator(".jp-Notebook .jp-Cell").first.click()
    page.keyboard.press("Escape")
    for _ in range(4):
        page.keyboard.press("Shift+Enter")
    dropdown = page.locator(".widget-dropdown select").first
    dropdown.wait_for(timeout=RUN_S * 1000)
    plot = page.locator(".widget-output img").first
    plot.wait_for(timeout=RUN_S * 1000)
    plot.scroll_into_view_if_needed()

    names = [s.name for s in all_specs()]
    options = [o.replace("\xa0", " ") for o in dropdown.locator("option").all_inner_texts()]
    assert [o.split(" — ")[0] for o in options] == names
    chosen = dropdown.evaluate("select => select.options[select.selectedIndex].textContent")
    assert chosen.replace("\xa0", " ").startswith("cosine_with_restarts — ")  # from the quick settings
    assert plot.evaluate("img => img.complete && img.naturalWidth > 100")
    first_src = plot.get_attribute("src")

    # the preview is live: choosing another schedule redraws the plot and swaps the fields
    dropdown.select_option(index=names.index("linear"))
    page.wait_for_function(
        "src => { const img = document.querySelector('.widget-output img');"
        " return img && img.getAttribute('src') !== src; }",
        arg=first_src,
        timeout=RUN_S * 1000,
    )
    labels = page.locator(".widget-label").all_inner_texts()
    assert "min_lr_ratio" in labels and "restart_decay" not in labels
    # JupyterLab scrolls inside the notebook panel: bring the form's top into view, then shoot
    dropdown.evaluate("select => select.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    for element in (dropdown, plot):
        box = element.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 1500, box
    page.screenshot(path=str(shot))
