#!/usr/bin/env bash
# CoOp: The whole base-to-new protocol: every dataset in $DATASETS x seed in $SEEDS, train then test.
# Usage: scripts/coop/base2new.sh [--data DIR] [--output DIR]   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main base2new_all "$@"
