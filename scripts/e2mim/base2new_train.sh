#!/usr/bin/env bash
# E2MIM: Base-to-new, one job: train on the base classes (DATASET.SUBSAMPLE_CLASSES base).
# Usage: scripts/e2mim/base2new_train.sh [--data DIR] [--output DIR] DATASET SEED   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main b2n_train "$@"
