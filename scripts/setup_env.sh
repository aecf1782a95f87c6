#!/usr/bin/env bash
# Create .venv (if missing) and install the project with its dependencies into it, at the
# versions pinned in constraints.txt. Idempotent: the install is redone only when setup.py or
# constraints.txt changed since the last one (or it is incomplete).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "Creating virtual environment in .venv"
  "$PY" -m venv .venv
fi
STAMP=.venv/.e2mim-install-stamp
WANT=$(cat setup.py constraints.txt | "$PY" -c "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())")
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] || \
   ! .venv/bin/python -c "import clip, torch, torchvision, yacs, e2mim_engine, e2mim_trainers, pytest, matplotlib" >/dev/null 2>&1; then
  echo "Installing the project and its pinned dependencies into .venv (PyTorch is a large download the first time)"
  # pip's own chatter (index warnings, build-backend notices) goes to a log that is shown
  # only when the install fails.
  LOG=.venv/install.log
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
         .venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"; } > "$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    echo "Installing into .venv failed (full log: $LOG)." >&2
    exit 1
  fi
  echo "$WANT" > "$STAMP"
fi
