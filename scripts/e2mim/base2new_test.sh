#!/usr/bin/env bash
# E2MIM: Base-to-new, one job: evaluate the base-trained model on the new classes.
# Usage: scripts/e2mim/base2new_test.sh [--data DIR] [--output DIR] DATASET SEED   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main b2n_test "$@"
