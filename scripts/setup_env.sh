#!/usr/bin/env bash
# Create .venv (if missing) and install the project with its dependencies into it.
# Idempotent: a second run only checks that the install is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "Creating virtual environment in .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import clip, torch, torchvision, yacs, e2mim_engine, pytest, matplotlib" >/dev/null 2>&1; then
  echo "Installing the project and its dependencies into .venv (PyTorch is a large download the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
fi
