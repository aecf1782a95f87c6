#!/usr/bin/env bash
# E2MIM: Cross-dataset / domain generalization, one job: evaluate the ImageNet model on DATASET.
# Usage: scripts/e2mim/xd_test.sh [--data DIR] [--output DIR] DATASET SEED   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main xd_test "$@"
