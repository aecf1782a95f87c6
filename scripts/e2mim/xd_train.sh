#!/usr/bin/env bash
# E2MIM: Cross-dataset / domain generalization, one job: train on all classes of $XD_SOURCE (ImageNet).
# Usage: scripts/e2mim/xd_train.sh [--data DIR] [--output DIR] SEED   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main xd_train "$@"
