#!/usr/bin/env bash
# The GPU check, for a bare GPU machine that has PyTorch but no network: installs what it lacks
# from wheels carried beside the checkout (scripts/gpu_wheels.sh builds the folder), then runs
#   1. e2mim-doctor --device cuda       every trainer x precision on random tiny and ViT-B/16 CLIPs
#   2. pytest -m cuda                   the tests only a GPU can run (tests/test_cuda.py)
#   3. e2mim-benchmark on ViT-B/16 at 10, 100 and 1000 classes for CoOp, E2MIM, MaPLe and
#      PromptSRC in fp16, amp and bf16 (step time and the CUDA allocator's peak)
# writing every log, table and JSON into one folder, with summary.txt (each phase's exit
# status and seconds). Each phase runs under a time limit taken from one budget (default
# 470 s), so the whole script ends in under 8 minutes; a phase cut by it says TIMEOUT.
# The exit status is 0 only if every phase passed.
#
#   bash scripts/gpu_wheels.sh                      # here, with PyPI: the .whl folder to carry
#   bash scripts/gpu_check.sh [--out DIR] [--wheels DIR] [--quick] [--skip-install] [--dry-run]
#
# --quick runs the doctor's --quick; --dry-run prints the phases and their commands and runs
# nothing. GPU_CHECK_* variables replace the device, backbone, class counts, trainers,
# precisions, the doctor's and pytest's arguments and the budget, so the plumbing can be
# rehearsed on a CPU machine (tests/test_gpu_check.py does).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=gpu_check
WHEELS=.whl
DRY=0
QUICK=""
INSTALL=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --quick) QUICK=--quick; shift ;;
    --skip-install) INSTALL=0; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
BACKBONE=${GPU_CHECK_BACKBONE:-random:ViT-B/16}
read -r -a CLASSES <<< "${GPU_CHECK_CLASSES:-10 100 1000}"
read -r -a TRAINERS <<< "${GPU_CHECK_TRAINERS:-CoOp E2MIM MaPLe PromptSRC}"
read -r -a PRECISIONS <<< "${GPU_CHECK_PRECISIONS:-fp16 amp bf16}"
read -r -a DOCTOR_ARGS <<< "${GPU_CHECK_DOCTOR_ARGS:-}"
read -r -a PYTEST_ARGS <<< "${GPU_CHECK_PYTEST_ARGS:-tests}"
BUDGET=${GPU_CHECK_BUDGET_S:-470}
# CoOp's ImageNet batch (its vit_b16 config); 3 timed steps after 1 warm-up keep the 36 runs short
BENCH_ARGS=(--batch 32 --steps 3 --warmup 1)
SITE=${GPU_CHECK_SITE:-/tmp/e2mim-site}

START=$(date +%s)
FAILED=0

# phase NAME CAP_SECONDS COMMAND...: runs COMMAND with its output in $OUT/NAME.log, under
# min(CAP, what is left of the budget) seconds, and records the result in summary.txt.
phase() {
  local name=$1 cap=$2
  shift 2
  if [ "$DRY" = 1 ]; then
    echo "$name (at most ${cap} s): $*"
    return 0
  fi
  local left=$((BUDGET - ($(date +%s) - START)))
  local limit=$((cap < left ? cap : left))
  local t0 rc
  t0=$(date +%s)
  if [ "$limit" -le 5 ]; then
    rc=124
    echo "budget spent before this phase" > "$OUT/$name.log"
  else
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
  fi
  local state=ok
  [ "$rc" = 0 ] || { state="FAILED (exit $rc)"; FAILED=1; }
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && state="TIMEOUT after ${limit} s"
  printf '%-14s %-24s %4d s  %s\n' "$name" "$state" $(($(date +%s) - t0)) "$*" | tee -a "$OUT/summary.txt"
}

install() {
  # Wheels go to a folder of their own, first on PYTHONPATH; the project is installed
  # editable (its console scripts and its backbone entry points), with no index and no deps.
  if ls "$WHEELS"/*.whl > /dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      "$WHEELS"/*.whl || return 1
  else
    echo "no wheels in $WHEELS: using what is installed (build them with scripts/gpu_wheels.sh)"
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . || return 1
  "$PY" -c "import clip, yacs, submitit, e2mim_tools.doctor" || {
    echo "a requirement is missing: add its wheel (scripts/gpu_wheels.sh DIR NAME) and carry it"; return 1; }
}

if [ "$DRY" = 1 ]; then
  echo "gpu_check: dry run (nothing is installed or run); output folder $OUT, budget $BUDGET s"
else
  mkdir -p "$OUT"
  : > "$OUT/summary.txt"
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ "$INSTALL" = 1 ]; then
  if [ "$DRY" = 1 ]; then
    echo "install (at most 60 s): pip install --no-index --no-deps --target $SITE $WHEELS/*.whl; pip install --no-index --no-deps -e ."
  else
    phase install 60 install
  fi
fi
if [ "$DRY" = 0 ]; then
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
           torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" > "$OUT/device.txt" 2>&1
  "$PY" -m pip list > "$OUT/pip_list.txt" 2>&1
  command -v nvidia-smi > /dev/null && nvidia-smi >> "$OUT/device.txt" 2>&1
fi
phase doctor 200 "$PY" -m e2mim_tools.doctor --device "$DEVICE" $QUICK --json "$OUT/doctor.json" "${DOCTOR_ARGS[@]}"
phase pytest_cuda 100 "$PY" -m pytest -q -m cuda -rs -p no:cacheprovider "${PYTEST_ARGS[@]}"
for c in "${CLASSES[@]}"; do
  phase "bench_c$c" 80 "$PY" -m e2mim_tools.benchmark --device "$DEVICE" --backbones "$BACKBONE" --classes "$c" \
    "${BENCH_ARGS[@]}" --trainers "${TRAINERS[@]}" --precisions "${PRECISIONS[@]}" --json "$OUT/bench_c$c.json"
done

[ "$DRY" = 1 ] && exit 0
echo "gpu_check: $(($(date +%s) - START)) s in all; logs, tables and JSON in $OUT" | tee -a "$OUT/summary.txt"
for c in "" "${CLASSES[@]}"; do
  f=${c:+bench_c$c}
  f=${f:-doctor}
  # the tables, without the progress lines (the doctor prints those on stderr, into the same log)
  if [ -f "$OUT/$f.log" ]; then
    echo "== $f"
    grep -E '^(\||\[|e2mim-doctor|device=|peak|[0-9]+ ok|precisions)' "$OUT/$f.log"
  fi
done
exit $FAILED
