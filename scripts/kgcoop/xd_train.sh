#!/usr/bin/env bash
# KgCoOp: Cross-dataset / domain generalization, one job: train on all classes of $XD_SOURCE (ImageNet).
# Usage: scripts/kgcoop/xd_train.sh [--data DIR] [--output DIR] SEED   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main xd_train "$@"
