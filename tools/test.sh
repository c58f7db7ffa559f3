#!/usr/bin/env bash
# The README's test command, for contributors: installs what the whole suite needs, then runs it.
#
#   tools/test.sh [pytest arguments...]      e.g. tools/test.sh -m "not slow"
#
# 1. A virtual environment: the active one, else ./.venv (created when missing).
# 2. The package with every extra (test tooling, notebook, optional optimizers, TensorBoard, the
#    MkDocs site that tests/test_docs_site.py builds), pinned
#    by constraints.txt (torch==2.13.0, the CPU wheel: a bare "torch" would pull CUDA packages).
# 3. Debian's Chromium for the notebook browser test (Playwright drives /usr/bin/chromium; it never
#    downloads a browser of its own). Installed with apt-get when missing (root, or through sudo).
#    LORA_SCHED_NO_BROWSER=1 opts out explicitly: the browser test then reports itself skipped.
# 4. python -m pytest -n 2 -q, plus any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    . .venv/bin/activate
fi

python -m pip install -q -c constraints.txt -e ".[all]"

if [ "${LORA_SCHED_NO_BROWSER:-0}" != "1" ] && [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "tools/test.sh: the browser test needs Debian's chromium (/usr/bin/chromium)." >&2
            echo "Install it as root (apt-get install -y chromium), or set LORA_SCHED_NO_BROWSER=1 to skip that test." >&2
            exit 1
        }
        SUDO="sudo"
    fi
    echo "tools/test.sh: installing Debian's chromium for the browser test (apt-get)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

python -m pytest -n 2 -q "$@"
