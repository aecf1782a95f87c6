#!/usr/bin/env bash
# E2MIM: Few-shot, one job: train on all classes with SHOTS images per class, test at the end.
# Usage: scripts/e2mim/fewshot_train.sh [--data DIR] [--output DIR] DATASET SHOTS SEED   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main fewshot_job "$@"
