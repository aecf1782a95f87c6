#!/usr/bin/env bash
# Quick start: set up .venv, then run zero-shot CLIP and CoOp base-to-new on the built-in
# demo data with a tiny randomly initialised CLIP on CPU, and print the base/new/HM table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python scripts/demo.py "$@"
