# Shared body of the protocol scripts in scripts/<method>/ (sourced, never run directly).
#
# Every scripts/<method>/<script>.sh is a link to scripts/lib/protocol_script.sh, which
# sources this file and calls the function of its name. The method is the folder's name:
# its line in the methods table of e2mim_tools/protocols.py (TRAINER, its cfg per protocol,
# zero-shot or not), where the default datasets, seeds, shots and the output tree are
# defined too (python -m e2mim_tools.protocols shell <method> prints what is read here).
# Settings come from the environment or from options before the positional arguments:
#
#   DATA       dataset root (required; or --data DIR)
#   OUTPUT     output root (default: <repo>/output; or --output DIR)
#   DATASETS   base-to-new / few-shot datasets (default: the 11 benchmarks; or --datasets "a b")
#   XD_DATASETS, DG_DATASETS   cross-dataset targets / ImageNet variants
#   XD_SOURCE  the cross-dataset training set (default: imagenet)
#   SEEDS      default "1 2 3" (or --seeds "1 2 3");  SHOTS (default 16);  SHOTS_LIST "1 2 4 8 16"
#   CFG        one trainer cfg (configs/trainers/<Trainer>/<CFG>.yaml) for every protocol (or --cfg)
#   BACKBONE   passed as --backbone (e.g. random:tiny);  OPTS   extra "KEY VALUE ..." pairs
#   TRAINER_OPTS  more KEY VALUE pairs for every job (e.g. "TRAINER.ZSCLIP.ENSEMBLE True")
#   LOADEP     epoch evaluated by the test scripts (default: OPTIM.MAX_EPOCH of OPTS or the cfg)
#   PYTHON     interpreter (default: <repo>/.venv/bin/python if present, else python)
#   SLOTS      jobs at a time in a whole-protocol script (default 1; over the visible GPUs)
#
# The whole protocols (base2new.sh, xd.sh, dg.sh, fewshot.sh) run through the sweep runner
# (python -m e2mim_tools.sweep; its state and tables under OUTPUT/sweeps/<method>-<protocol>/);
# a failed job does not stop the others and the script exits 1 at the end. The one-job
# scripts run train.py directly. Either way a job whose folder holds results.json is skipped,
# and a folder without it (an interrupted run) is run again with the same command, which
# resumes from its last checkpoint.
# Output tree (LAYOUTS in e2mim_tools/protocols.py):
#   base2new/{train_base,test_new}/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>
#   <source>/<Trainer>/<cfg>_<K>shots/seed<S>   evaluation/<Trainer>/<cfg>_<K>shots/<dataset>/seed<S>
#   fewshot/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>   (zero-shot CLIP: shots_0)
set -euo pipefail

die() { echo "error: $*" >&2; exit 2; }

METHOD=$(basename "$(dirname "${BASH_SOURCE[1]}")")   # scripts/<method>/<script>, as typed (not the link's target)
SCRIPT=$(basename "${BASH_SOURCE[1]}")
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python; fi
fi
# TRAINER CFG_B2N CFG_XD CFG_FS ZERO_SHOT, DEFAULT_<setting>, JOB and b2n_dir xd_dir eval_dir fewshot_dir
SETTINGS=$(cd "$REPO" && "$PYTHON" -m e2mim_tools.protocols shell "$METHOD" "$SCRIPT") ||
  die "cannot read the settings of $METHOD/$SCRIPT (\$PYTHON -m e2mim_tools.protocols shell $METHOD $SCRIPT, PYTHON=$PYTHON)"
eval "$SETTINGS"
TRAINER_OPTS=${TRAINER_OPTS:-}

DATA=${DATA:-}
OUTPUT=${OUTPUT:-$REPO/output}
DATASETS=${DATASETS:-$DEFAULT_DATASETS}
XD_DATASETS=${XD_DATASETS:-$DEFAULT_XD_DATASETS}
DG_DATASETS=${DG_DATASETS:-$DEFAULT_DG_DATASETS}
XD_SOURCE=${XD_SOURCE:-$DEFAULT_XD_SOURCE}
SEEDS=${SEEDS:-$DEFAULT_SEEDS}
SHOTS=${SHOTS:-$DEFAULT_SHOTS}
SHOTS_LIST=${SHOTS_LIST:-$DEFAULT_SHOTS_LIST}
OPTS=${OPTS:-}
BACKBONE=${BACKBONE:-}
if [ -n "${CFG:-}" ]; then CFG_B2N=$CFG; CFG_XD=$CFG; CFG_FS=$CFG; fi

# Options before the positional arguments; the rest is left in ARGS.
parse_options() {
  ARGS=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --data|--root) DATA=$2; shift 2 ;;
      --output) OUTPUT=$2; shift 2 ;;
      --datasets) DATASETS=$2; shift 2 ;;
      --seeds) SEEDS=$2; shift 2 ;;
      --shots) SHOTS_LIST=$2; shift 2 ;;
      --cfg) CFG_B2N=$2; CFG_XD=$2; CFG_FS=$2; shift 2 ;;
      -h|--help) sed -n '2,/^set -euo/p' "$REPO/scripts/lib/protocols.sh" | sed '$d'; exit 0 ;;
      *) ARGS+=("$1"); shift ;;
    esac
  done
  [ -n "$DATA" ] || die "no dataset root: set DATA=/path/to/datasets or pass --data /path/to/datasets"
  [ -d "$DATA" ] || die "the dataset root $DATA does not exist"
  DATA=$(cd "$DATA" && pwd)
  mkdir -p "$OUTPUT"
  OUTPUT=$(cd "$OUTPUT" && pwd)
}

need() {  # need N "usage" ARGS...
  local n=$1 usage=$2; shift 2
  [ $# -eq "$n" ] || die "usage: $(basename "$0") [--data DIR] [--output DIR] $usage"
}

cfg_file() { echo "$REPO/configs/trainers/$TRAINER/$1.yaml"; }
# (called inside $(...): the one-job functions check their DATASET with check_datasets first,
# since a die in a subshell would not stop the script)
dataset_file() { echo "$REPO/configs/datasets/$1.yaml"; }

# The epoch a test script loads: LOADEP, else OPTIM.MAX_EPOCH from OPTS, else from the cfg yaml.
load_epoch() {
  if [ -n "${LOADEP:-}" ]; then echo "$LOADEP"; return; fi
  local ep
  ep=$(echo " $TRAINER_OPTS $OPTS " | sed -n 's/.* OPTIM\.MAX_EPOCH \([0-9][0-9]*\) .*/\1/p')
  if [ -z "$ep" ]; then
    ep=$(awk '/^OPTIM:/ {f=1; next} /^[^ #]/ {f=0} f && $1 == "MAX_EPOCH:" {print $2}' "$(cfg_file "$1")")
  fi
  [ -n "$ep" ] || die "cannot tell OPTIM.MAX_EPOCH of $(cfg_file "$1"); set LOADEP"
  echo "$ep"
}

# run_job DIR ARGS...: train.py with ARGS unless DIR already holds a result.
run_job() {
  local dir=$1; shift
  if [ -f "$dir/results.json" ]; then
    echo "Results are available in $dir. Skip this job"
    return 0
  fi
  if [ -d "$dir" ]; then
    echo "Resume the unfinished job in $dir"
  else
    echo "Run this job and save the output to $dir"
  fi
  # shellcheck disable=SC2086
  if ! (cd "$REPO" && "$PYTHON" train.py "$@" $TRAINER_OPTS $OPTS); then
    echo "FAILED: $dir" >&2
    exit 1
  fi
}

common_args() {  # DATASET SEED CFG DIR
  local a=(--root "$DATA" --seed "$2" --trainer "$TRAINER" --dataset-config-file "$(dataset_file "$1")"
           --config-file "$(cfg_file "$3")" --output-dir "$4")
  [ -z "$BACKBONE" ] || a+=(--backbone "$BACKBONE")
  printf '%s\0' "${a[@]}"
}

train_or_eval() {  # DIR DATASET SEED CFG [KEY VALUE ...]: train (or, zero-shot, evaluate)
  local dir=$1 dataset=$2 seed=$3 cfg=$4; shift 4
  local args=(); while IFS= read -r -d '' x; do args+=("$x"); done < <(common_args "$dataset" "$seed" "$cfg" "$dir")
  [ -f "$(cfg_file "$cfg")" ] || die "no trainer config $(cfg_file "$cfg")"
  if [ "$ZERO_SHOT" = 1 ]; then args+=(--eval-only); fi
  run_job "$dir" "${args[@]}" "$@"
}

eval_model() {  # DIR DATASET SEED CFG MODEL_DIR [KEY VALUE ...]: evaluate a trained model
  local dir=$1 dataset=$2 seed=$3 cfg=$4 model_dir=$5; shift 5
  local args=(); while IFS= read -r -d '' x; do args+=("$x"); done < <(common_args "$dataset" "$seed" "$cfg" "$dir")
  if [ "$ZERO_SHOT" = 1 ]; then
    run_job "$dir" "${args[@]}" --eval-only "$@"
    return
  fi
  if [ ! -f "$model_dir/results.json" ]; then
    die "the model to evaluate has not finished training: $model_dir (run the train script first)"
  fi
  run_job "$dir" "${args[@]}" --model-dir "$model_dir" --load-epoch "$(load_epoch "$cfg")" --eval-only "$@"
}

# ---- one job ---------------------------------------------------------------------------
b2n_train() {  # DATASET SEED
  need 2 "DATASET SEED" "$@"
  check_datasets "$1"
  train_or_eval "$(b2n_dir train_base "$1" "$2")" "$1" "$2" "$CFG_B2N" \
    DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base
}

b2n_test() {  # DATASET SEED
  need 2 "DATASET SEED" "$@"
  check_datasets "$1"
  eval_model "$(b2n_dir test_new "$1" "$2")" "$1" "$2" "$CFG_B2N" "$(b2n_dir train_base "$1" "$2")" \
    DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES new
}

xd_train() {  # SEED
  need 1 "SEED" "$@"
  train_or_eval "$(xd_dir "$1")" "$XD_SOURCE" "$1" "$CFG_XD" DATASET.NUM_SHOTS "$SHOTS"
}

xd_test() {  # DATASET SEED
  need 2 "DATASET SEED" "$@"
  check_datasets "$1"
  eval_model "$(eval_dir "$1" "$2")" "$1" "$2" "$CFG_XD" "$(xd_dir "$2")"
}

fewshot_job() {  # DATASET SHOTS SEED (zero-shot CLIP: SHOTS 0, evaluation only)
  need 3 "DATASET SHOTS SEED" "$@"
  check_datasets "$1"
  local k=$2 extra=()
  [ "$ZERO_SHOT" = 1 ] && k=0
  [ "$k" = 0 ] || extra=(DATASET.NUM_SHOTS "$k")
  train_or_eval "$(fewshot_dir "$1" "$k" "$3")" "$1" "$3" "$CFG_FS" ${extra[@]+"${extra[@]}"}
}

# ---- whole protocols ---------------------------------------------------------------------

# The whole protocols run through the sweep runner (e2mim_tools.sweep), which expands them from
# the same protocol definitions: the same jobs, into the same folders, with the same arguments.
# Finished jobs are skipped, unfinished ones resume, a failed job does not stop the others
# (the script exits 1 at the end listing them). SLOTS=N runs N jobs at once.
sweep_protocol() {  # PROTOCOL CFG
  local a=(run --data "$DATA" --output "$OUTPUT" --name "$METHOD-$1" --methods "$METHOD" --protocols "$1"
           --cfg "$2" --datasets $DATASETS --xd-source "$XD_SOURCE" --xd-datasets $XD_DATASETS
           --dg-datasets $DG_DATASETS --seeds $SEEDS --shots "$SHOTS" --fewshot-shots $SHOTS_LIST
           --python "$PYTHON" --slots "${SLOTS:-1}")
  [ -z "$BACKBONE" ] || a+=(--backbone "$BACKBONE")
  [ -z "${LOADEP:-}" ] || a+=(--load-epoch "$LOADEP")
  # shellcheck disable=SC2206
  local o=($TRAINER_OPTS $OPTS)
  [ ${#o[@]} -eq 0 ] || a+=(--opts "${o[@]}")
  (cd "$REPO" && "$PYTHON" -m e2mim_tools.sweep "${a[@]}") || exit 1
  echo "Done. Tables: $PYTHON -m e2mim_tools.parse_results $OUTPUT"
}

base2new_all() { need 0 "" "$@"; sweep_protocol base2new "$CFG_B2N"; }
xd_all() { need 0 "" "$@"; sweep_protocol xd "$CFG_XD"; }        # train on XD_SOURCE, evaluate on XD_DATASETS
dg_all() { need 0 "" "$@"; sweep_protocol dg "$CFG_XD"; }        # the XD_SOURCE model on DG_DATASETS
fewshot_all() { need 0 "" "$@"; sweep_protocol fewshot "$CFG_FS"; }

# Entry point of every script (scripts/lib/protocol_script.sh): main "$@" runs JOB
main() {
  parse_options "$@"
  check_dataset_names
  "$JOB" "${ARGS[@]+"${ARGS[@]}"}"
}

# Every dataset name a job may use must have its yaml: a typo stops the script before any
# train.py runs, not after hours of the datasets before it.
check_dataset_names() {
  # shellcheck disable=SC2086
  check_datasets $DATASETS $XD_DATASETS $DG_DATASETS $XD_SOURCE
}

check_datasets() {  # NAME...: exit 2 unless every NAME has configs/datasets/NAME.yaml
  local bad=() d
  for d in "$@"; do
    [ -f "$REPO/configs/datasets/$d.yaml" ] || bad+=("$d")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    die "unknown dataset name(s): ${bad[*]}. Valid names (configs/datasets/*.yaml): $(cd "$REPO/configs/datasets" && ls *.yaml | sed 's/\.yaml$//' | tr '\n' ' ')"
  fi
}
