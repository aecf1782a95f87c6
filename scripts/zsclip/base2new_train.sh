#!/usr/bin/env bash
# ZeroshotCLIP: Base-to-new, one job: evaluate zero-shot CLIP on the base classes (DATASET.SUBSAMPLE_CLASSES base).
# Usage: scripts/zsclip/base2new_train.sh [--data DIR] [--output DIR] DATASET SEED   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main b2n_train "$@"
