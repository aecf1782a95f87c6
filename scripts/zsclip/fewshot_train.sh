#!/usr/bin/env bash
# ZeroshotCLIP: Few-shot, one job: evaluate zero-shot CLIP on all classes (SHOTS is ignored: shots_0).
# Usage: scripts/zsclip/fewshot_train.sh [--data DIR] [--output DIR] DATASET SHOTS SEED   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main fewshot_job "$@"
