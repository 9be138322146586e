#!/usr/bin/env bash
# Sets up a fresh machine for vrvq_hf: system tools (when run as root with apt), a virtual environment in
# .venv with the package and all its extras, pinned for CPU machines by constraints.txt.
#   scripts/setup.sh            # everything, browser included
#   VRVQ_SKIP_APT=1 scripts/setup.sh   # Python only
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VRVQ_SKIP_APT:-}" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    need=""
    for tool in ffmpeg sox espeak-ng chromium; do command -v "$tool" >/dev/null 2>&1 || need="$need $tool"; done
    if [ -n "$need" ]; then
        echo "setup: installing system packages:$need"
        pkgs="${need/chromium/chromium chromium-driver}"
        apt-get install -y -q $pkgs >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $pkgs >/dev/null; }
    fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -c constraints.txt -e ".[all]"
echo "setup: ready (.venv/bin/python, $(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
