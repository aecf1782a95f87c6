#!/usr/bin/env bash
# KgCoOp: Few-shot, one job: train on all classes with SHOTS images per class, test at the end.
# Usage: scripts/kgcoop/fewshot_train.sh [--data DIR] [--output DIR] DATASET SHOTS SEED   (settings: scripts/lib/protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main fewshot_job "$@"
