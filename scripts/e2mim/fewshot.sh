#!/usr/bin/env bash
# E2MIM: The whole few-shot protocol: every dataset x shots in $SHOTS_LIST x seed, all classes.
# Usage: scripts/e2mim/fewshot.sh [--data DIR] [--output DIR]   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main fewshot_all "$@"
