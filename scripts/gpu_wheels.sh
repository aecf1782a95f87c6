#!/usr/bin/env bash
# Builds the folder of wheels scripts/gpu_check.sh installs on a GPU machine that has PyTorch
# (and the usual scientific stack) but no network: the requirements of this project such a
# machine lacks, at the versions constraints.txt pins, for CPython 3.12 on x86-64 Linux.
# Run it here (pip needs PyPI), then carry the folder with the checkout.
#
#   bash scripts/gpu_wheels.sh [DIR] [NAME ...]   # DIR default .whl; NAMEs default below
#   PY_VERSION=3.11 bash scripts/gpu_wheels.sh    # another Python on the GPU machine
#
# The default names are what a PyTorch image commonly lacks of our requirements (clip-anytorch
# and its ftfy/wcwidth, yacs, submitit) and setuptools<82 (clip imports pkg_resources, gone
# from setuptools 82). A machine missing more: name them (e.g. tabulate tensorboard).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${1:-.whl}
[ $# -gt 0 ] && shift
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(clip-anytorch ftfy wcwidth yacs submitit setuptools)
PY=${PYTHON:-}
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python3; }
PY_VERSION=${PY_VERSION:-3.12}
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
           manylinux1_x86_64)

norm() { echo "$1" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/_/g'; }

mkdir -p "$DIR"
for name in "${NAMES[@]}"; do
  version=$(awk -F'==' -v n="$(norm "$name")" '
    { k = tolower($1); gsub(/[-_.]+/, "_", k); if (k == n) { print $2; exit } }' constraints.txt)
  if [ -z "$version" ]; then
    echo "gpu_wheels: $name is not pinned in constraints.txt; pin it there first (one place per version)." >&2
    exit 2
  fi
  # one version of each package in the folder: two would stop the install there
  rm -f "$DIR/$(norm "$name")"-*.whl
  plat=()
  for p in "${PLATFORMS[@]}"; do plat+=(--platform "$p"); done
  if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
        "${plat[@]}" -d "$DIR" "$name==$version"; then
    # no wheel on the index (an sdist only): build a pure-Python one here
    "$PY" -m pip wheel -q --no-deps -w "$DIR" "$name==$version"
  fi
  echo "gpu_wheels: $name==$version"
done
echo "gpu_wheels: $(ls "$DIR"/*.whl | wc -l) wheels in $DIR ($(du -sh "$DIR" | cut -f1)); carry the folder beside the checkout"
