#!/usr/bin/env bash
# Quick start: set up .venv, then run zero-shot CLIP, CoOp and E2MIM base-to-new on CompWorld
# with a tiny CLIP pretrained on it on this CPU (first run), and print the base/new/HM table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m e2mim_tools.demo "$@"
