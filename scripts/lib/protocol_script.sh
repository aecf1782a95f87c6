#!/usr/bin/env bash
# Every protocol script scripts/<method>/<script>.sh is a link to this file. The method is
# the folder's name (its line in the methods table of e2mim_tools/protocols.py), the job the
# script's name (SCRIPTS there); settings and options: scripts/lib/protocols.sh.
# Usage: scripts/<method>/base2new.sh [--data DIR] [--output DIR]            (also xd.sh dg.sh fewshot.sh)
#        scripts/<method>/base2new_train.sh [--data DIR] [--output DIR] DATASET SEED   (base2new_test.sh, xd_test.sh)
#        scripts/<method>/xd_train.sh [--data DIR] [--output DIR] SEED
#        scripts/<method>/fewshot_train.sh [--data DIR] [--output DIR] DATASET SHOTS SEED
source "$(dirname "${BASH_SOURCE[0]}")/../lib/protocols.sh"
main "$@"
