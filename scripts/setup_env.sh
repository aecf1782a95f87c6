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
# E2MIM_CPU_ONLY=1 (Linux, a fresh .venv): torch and torchvision come from PyTorch's CPU wheel
# index, so none of the CUDA wheels (nvidia-*, triton) are downloaded; PyPI's Linux torch is the
# CUDA build, and other platforms get CPU wheels from PyPI anyway. The pins still apply (a pin
# torch==2.14.1 matches 2.14.1+cpu). Unset, nothing changes.
CPU_ONLY=${E2MIM_CPU_ONLY:-0}
CPU_INDEX=https://download.pytorch.org/whl/cpu
STAMP=.venv/.e2mim-install-stamp
WANT=$({ cat setup.py constraints.txt; [ "$CPU_ONLY" != 1 ] || echo "cpu-only $CPU_INDEX"; } |
       "$PY" -c "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())")
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] || \
   ! .venv/bin/python -c "import clip, torch, torchvision, yacs, e2mim_engine, e2mim_trainers, pytest, matplotlib" >/dev/null 2>&1; then
  echo "Installing the project and its pinned dependencies into .venv (PyTorch is a large download the first time)"
  # pip's own chatter (index warnings, build-backend notices) goes to a log that is shown
  # only when the install fails.
  LOG=.venv/install.log
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
         if [ "$CPU_ONLY" = 1 ] && [ "$(uname -s)" = Linux ]; then
           .venv/bin/python -m pip install -q -c constraints.txt torch torchvision --index-url "$CPU_INDEX"
         fi &&
         .venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"; } > "$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    if grep -q "No space left on device" "$LOG"; then
      # The CUDA build of torch alone unpacks to about 5.5 GB; say so rather than leave the
      # reader to guess from pip's last line.
      echo "The disk filled up: the pinned stack needs about 6 GB in .venv and pip's temporary folder" \
           "(${TMPDIR:-/tmp}); $(df -h . | awk 'NR == 2 {print $4}') is free here now. Free some space," \
           "or on Linux set E2MIM_CPU_ONLY=1 (CPU wheels, about 1 GB), and run again." >&2
    fi
    echo "Installing into .venv failed (full log: $LOG)." >&2
    exit 1
  fi
  echo "$WANT" > "$STAMP"
fi
