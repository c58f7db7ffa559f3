"""A Jupyter kernelspec named python3 that runs this interpreter, for the notebook tests.

A machine may have another `python3` kernel (a system Python without lora_sched); installing ours
into a temp prefix and putting it first on JUPYTER_PATH makes nbclient and JupyterLab use the
interpreter running the tests. The repository root goes on PYTHONPATH for the kernel as well.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "lora_sched_colab.ipynb"


def install_kernel(prefix: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install the python3 kernelspec for sys.executable under `prefix`; set JUPYTER_PATH and PYTHONPATH."""
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "python3"],
        check=True,
        capture_output=True,
    )
    share = prefix / "share" / "jupyter"
    assert (share / "kernels" / "python3" / "kernel.json").is_file()
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(share), os.environ.get("JUPYTER_PATH", "")]).rstrip(":"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(":"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return share
