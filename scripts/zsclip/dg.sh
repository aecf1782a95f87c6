#!/usr/bin/env bash
# ZeroshotCLIP: The whole domain-generalization protocol: the ImageNet model (trained if needed) on $DG_DATASETS.
# Usage: scripts/zsclip/dg.sh [--data DIR] [--output DIR]   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main dg_all "$@"
