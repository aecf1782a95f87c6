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
#   SEEDS      default "1 2 3" (or --seeds "1 2 3")
#   SHOTS      base-to-new and cross-dataset training shots (default 16; or --shots K, as in e2mim-sweep)
#   SHOTS_LIST few-shot protocol shots (default "1 2 4 8 16"; or --fewshot-shots "1 2 4 8 16")
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
# scripts run train.py directly, with the folder and arguments the sweep runner's expansion
# gives that job (python -m e2mim_tools.sweep job): the commands are built in Python only. Either way a job whose folder holds results.json is skipped,
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
      --shots)  # as in e2mim-sweep: the base-to-new / cross-dataset training shots
        case "$SCRIPT $2" in
          fewshot*|*" "*" "*) die "--shots is the base-to-new and cross-dataset training shots K (as in e2mim-sweep); the few-shot list is --fewshot-shots \"1 2 4 8 16\" (SHOTS_LIST), and fewshot_train.sh takes SHOTS as an argument" ;;
        esac
        SHOTS=$2; shift 2 ;;
      --fewshot-shots) SHOTS_LIST=$2; shift 2 ;;
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

# The settings every call of the sweep runner gets: the scripts' settings as its flags.
sweep_args() {  # CFG (the protocol's trainer cfg)
  SWEEP_ARGS=(--data "$DATA" --output "$OUTPUT" --methods "$METHOD" --cfg "$1" --datasets $DATASETS
              --xd-source "$XD_SOURCE" --xd-datasets $XD_DATASETS --dg-datasets $DG_DATASETS --seeds $SEEDS
              --shots "$SHOTS" --fewshot-shots $SHOTS_LIST)
  [ -z "$BACKBONE" ] || SWEEP_ARGS+=(--backbone "$BACKBONE")
  [ -z "${LOADEP:-}" ] || SWEEP_ARGS+=(--load-epoch "$LOADEP")
  # shellcheck disable=SC2206
  local o=($TRAINER_OPTS $OPTS)
  [ ${#o[@]} -eq 0 ] || SWEEP_ARGS+=(--opts "${o[@]}")
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
  if ! (cd "$REPO" && "$PYTHON" train.py "$@"); then
    echo "FAILED: $dir" >&2
    exit 1
  fi
}

# ---- one job ---------------------------------------------------------------------------
# The job's folder, the model it evaluates and its train.py arguments come from the sweep
# runner's expansion of the protocols (python -m e2mim_tools.sweep job): the command of a
# one-job script is the command the whole-protocol script runs for that job.
one_job() {  # CFG ARGS...
  local cfg=$1; shift
  sweep_args "$cfg"
  local spec
  spec=$(cd "$REPO" && "$PYTHON" -m e2mim_tools.sweep job "$JOB" "$@" "${SWEEP_ARGS[@]}") || exit 2
  local JOB_DIR JOB_MODEL_DIR JOB_ARGS
  eval "$spec"
  if [ -n "$JOB_MODEL_DIR" ] && [ ! -f "$JOB_MODEL_DIR/results.json" ]; then
    die "the model to evaluate has not finished training: $JOB_MODEL_DIR (run the train script first)"
  fi
  run_job "$JOB_DIR" "${JOB_ARGS[@]}"
}

b2n_train() { need 2 "DATASET SEED" "$@"; one_job "$CFG_B2N" "$@"; }      # train on the base classes
b2n_test() { need 2 "DATASET SEED" "$@"; one_job "$CFG_B2N" "$@"; }       # the base-trained model on the new classes
xd_train() { need 1 "SEED" "$@"; one_job "$CFG_XD" "$@"; }                # train on all classes of XD_SOURCE
xd_test() { need 2 "DATASET SEED" "$@"; one_job "$CFG_XD" "$@"; }         # the XD_SOURCE model on DATASET
fewshot_job() { need 3 "DATASET SHOTS SEED" "$@"; one_job "$CFG_FS" "$@"; }  # zero-shot CLIP: shots_0, evaluation only

# ---- whole protocols ---------------------------------------------------------------------

# The whole protocols run through the sweep runner (e2mim_tools.sweep), which expands them from
# the same protocol definitions: the same jobs, into the same folders, with the same arguments.
# Finished jobs are skipped, unfinished ones resume, a failed job does not stop the others
# (the script exits 1 at the end listing them). SLOTS=N runs N jobs at once.
sweep_protocol() {  # PROTOCOL CFG
  sweep_args "$2"
  (cd "$REPO" && "$PYTHON" -m e2mim_tools.sweep run --name "$METHOD-$1" --protocols "$1" "${SWEEP_ARGS[@]}" \
     --python "$PYTHON" --slots "${SLOTS:-1}") || exit 1
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
  local bad=() d
  for d in $DATASETS $XD_DATASETS $DG_DATASETS $XD_SOURCE; do
    [ -f "$REPO/configs/datasets/$d.yaml" ] || bad+=("$d")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    die "unknown dataset name(s): ${bad[*]}. Valid names (configs/datasets/*.yaml): $(cd "$REPO/configs/datasets" && ls *.yaml | sed 's/\.yaml$//' | tr '\n' ' ')"
  fi
}
