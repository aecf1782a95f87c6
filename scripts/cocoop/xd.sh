#!/usr/bin/env bash
# CoCoOp: The whole cross-dataset protocol: train on ImageNet per seed, evaluate on $XD_DATASETS.
# Usage: scripts/cocoop/xd.sh [--data DIR] [--output DIR]   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main xd_all "$@"
