#!/usr/bin/env bash
# ZeroshotCLIP: Cross-dataset / domain generalization, one job: evaluate zero-shot CLIP on all classes of $XD_SOURCE (ImageNet).
# Usage: scripts/zsclip/xd_train.sh [--data DIR] [--output DIR] SEED   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main xd_train "$@"
