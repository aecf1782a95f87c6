#!/usr/bin/env bash
# CoCoOp: Cross-dataset / domain generalization, one job: evaluate the ImageNet model on DATASET.
# Usage: scripts/cocoop/xd_test.sh [--data DIR] [--output DIR] DATASET SEED   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main xd_test "$@"
