#!/usr/bin/env bash
# CoOp: Base-to-new, one job: evaluate the base-trained model on the new classes.
# Usage: scripts/coop/base2new_test.sh [--data DIR] [--output DIR] DATASET SEED   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main b2n_test "$@"
