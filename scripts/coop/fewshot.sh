#!/usr/bin/env bash
# CoOp: The whole few-shot protocol: every dataset x shots in $SHOTS_LIST x seed, all classes.
# Usage: scripts/coop/fewshot.sh [--data DIR] [--output DIR]   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main fewshot_all "$@"
