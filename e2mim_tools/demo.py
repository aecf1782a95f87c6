"""The README demo: zero-shot CLIP, CoOp, KgCoOp and E2MIM, base-to-new, on the CPU bench's world
(CompWorldBench; --world compworld_shift or compworld for the earlier worlds) with the tiny CLIP
pretrained on CompWorld, on CPU. The first run pretrains that CLIP (``e2mim-tiny-clip build``:
about 5 minutes on 2 idle cores, progress on the terminal, cached in ~/.cache/e2mim). Each step
is a plain train.py run (``python -m e2mim_tools.train``), exactly as the bash scripts run it,
written into the protocols' output tree, so ``e2mim-results`` and ``e2mim-study`` read the
demo's folder as they read any protocol run; the table is built from the runs' results.json.
While a run trains, its latest progress line (or its log's path) reaches the terminal at
least every PROGRESS_SECONDS.

  e2mim-demo                 # seed 1 (run from the repository root: it reads configs/)
  e2mim-demo --seeds 1 2 3 --with-ablations   # mean and std over seeds, E2MIM's ablations
  e2mim-demo --world compworld_shift          # an earlier world, with its recipes
"""
import argparse
import os
import subprocess
import sys
import time

from tabulate import tabulate

from e2mim_tools.results import harmonic_mean, read_result
from e2mim_tools.study import fmt

# (row label, trainer, extra KEY VALUE pairs); every method uses configs/trainers/<T>/<recipe>.yaml
METHODS = [
    ("ZeroshotCLIP", "ZeroshotCLIP", []),
    ("CoOp", "CoOp", []),
    ("KgCoOp", "KgCoOp", []),
    ("E2MIM", "E2MIM", []),
]
ABLATIONS = [
    ("E2MIM w/o MI", "E2MIM", ["TRAINER.E2MIM.CONSISTENCY", "none"]),
    ("E2MIM w/o Mixup", "E2MIM", ["TRAINER.E2MIM.MIXUP", False]),
    ("E2MIM, cosine instead of MI", "E2MIM", ["TRAINER.E2MIM.CONSISTENCY", "cosine"]),
]
# The worlds (datasets/compworld) and the recipes (configs/trainers/<T>/<recipe>.yaml) the demo
# runs on each: the bench's world with the bench recipes, and the two earlier worlds.
# world: (dataset name, recipe, what its new classes are)
WORLDS = {"compworld_bench": ("CompWorldBench", "compworld_bench",
                              "new classes = 16 colour-shape pairs seen in pretraining, 8 never seen together"),
          "compworld_shift": ("CompWorldShift", "compworld_b2n", "new classes = colour-shape pairs never seen together"),
          "compworld": ("CompWorld", "compworld_b2n", "new classes = colour-shape pairs never seen together")}
SHOTS = 16
PROGRESS_SECONDS = 20


def recipe_backbone(recipe):
    """The backbone a world's recipes name (CoOp's file speaks for all: the bench's rule gives
    every method the same one)."""
    from e2mim_tools.sweep.spec import read_yaml
    return read_yaml(os.path.join("configs", "trainers", "CoOp", f"{recipe}.yaml"))["MODEL"]["BACKBONE"]["NAME"]


def prepare_backbone(name):
    """Build the tiny CLIP here, in the foreground (the explicit step every run of a generated
    world needs once), so its pretraining progress reaches the terminal; returns its checksum."""
    from e2mim_clip.loader import weights_file_sha256
    from e2mim_tools.tiny_clip import build
    return weights_file_sha256(build(name))


def _last_progress(log):
    try:
        with open(log, errors="replace") as f:
            lines = [ln.strip() for ln in f.read().splitlines()[-50:]]
    except OSError:
        return None
    return next((ln for ln in reversed(lines) if ln.startswith("epoch [")), None)


def train_py(args, log, label="", t0=None):
    """One train.py run, its output in ``log``; the terminal hears from it every PROGRESS_SECONDS."""
    cmd = [sys.executable, "-m", "e2mim_tools.train"] + [str(a) for a in args]
    os.makedirs(os.path.dirname(log), exist_ok=True)
    t0 = t0 or time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        while True:
            try:
                rc = proc.wait(timeout=PROGRESS_SECONDS)
                break
            except subprocess.TimeoutExpired:
                line = _last_progress(log)   # "epoch [e/E] batch [b/B] time ..."
                where = line.split(" time ")[0] if line else "starting"
                print(f"[{time.time() - t0:5.0f}s]   {label}: {where} (log: {log})", flush=True)
    if rc:
        sys.exit(f"demo step failed ({' '.join(cmd)}); see {log}")


def run_dir(a, phase, trainer, tag, seed):
    """The protocols' base-to-new folder, so the results tools read the demo like any protocol run."""
    return os.path.join(a.output, "base2new", phase, a.world, f"shots_{SHOTS}", trainer, tag, f"seed{seed}")


def run_method(label, trainer, extra, seed, a, t0):
    recipe = WORLDS[a.world][1]
    cfg = os.path.join("configs", "trainers", trainer, f"{recipe}.yaml")
    flags = ["--root", a.data, "--seed", seed, "--trainer", trainer, "--dataset-config-file",
             f"configs/datasets/{a.world}.yaml", "--config-file", cfg]
    opts = ["DATASET.NUM_SHOTS", SHOTS] + extra  # trailing KEY VALUE pairs come after every flag
    tag = recipe if not extra else recipe + "_" + label.split(" ", 1)[1].replace(" ", "_").replace(",", "").replace("/", "")
    base_dir, new_dir = run_dir(a, "train_base", trainer, tag, seed), run_dir(a, "test_new", trainer, tag, seed)
    zero_shot = trainer.startswith("ZeroshotCLIP")
    if read_result(base_dir) is None:
        print(f"[{time.time() - t0:5.0f}s] {label} seed {seed}: base classes (log: {base_dir}/demo.log)", flush=True)
        train_py(flags + ["--output-dir", base_dir] + (["--eval-only"] if zero_shot else [])
                 + opts + ["DATASET.SUBSAMPLE_CLASSES", "base"], os.path.join(base_dir, "demo.log"),
                 f"{label} seed {seed}", t0)
    if read_result(new_dir) is None:
        print(f"[{time.time() - t0:5.0f}s] {label} seed {seed}: new classes", flush=True)
        load = [] if zero_shot else ["--model-dir", base_dir, "--load-epoch", read_result(base_dir)["epoch"]]
        train_py(flags + ["--output-dir", new_dir, "--eval-only"] + load + opts
                 + ["DATASET.SUBSAMPLE_CLASSES", "new"], os.path.join(new_dir, "demo.log"), f"{label} seed {seed}", t0)
    return read_result(base_dir)["accuracy"], read_result(new_dir)["accuracy"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="data root (CompWorld is generated here)")
    p.add_argument("--output", default=os.path.join("output", "demo"))
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--world", choices=list(WORLDS), default="compworld_bench",
                   help="compworld_bench (default): the bench's world and recipes (docs/BENCH.md); "
                        "compworld_shift, compworld: the earlier worlds with their compworld_b2n recipes")
    p.add_argument("--with-ablations", action="store_true",
                   help="also E2MIM without MI, without Mixup, and with KgCoOp's cosine in place of MI")
    a = p.parse_args(argv)
    methods = list(METHODS) + (ABLATIONS if a.with_ablations else [])
    t0 = time.time()
    backbone = recipe_backbone(WORLDS[a.world][1])
    checksum = prepare_backbone(backbone)
    rows = []
    for label, trainer, extra in methods:
        res = [run_method(label, trainer, extra, s, a, t0) for s in a.seeds]
        base, new = [b for b, _ in res], [n for _, n in res]
        hms = [harmonic_mean(b, n) for b, n in res]
        rows.append([label, fmt(base), fmt(new), fmt(hms)])
    print()
    name, recipe, new_classes = WORLDS[a.world]
    seeds = " ".join(map(str, a.seeds))
    print(f"Base-to-new on {name} (24 base / 24 new classes, {SHOTS} shots, seed{'s' if len(a.seeds) > 1 else ''} "
          f"{seeds}; recipes {recipe}; tiny CLIP pretrained on CPU, {new_classes})")
    print(tabulate(rows, headers=["method", "base", "new", "HM"], tablefmt="github"))
    spread = ("mean ± population std over seeds" if len(a.seeds) > 1 else
              "one seed, so no std: a single seed does not rank methods (e2mim-bench runs five)")
    print(f"\nChance is 4.2% on either half. {spread}; HM per seed, then averaged.")
    from e2mim_clip.loader import LOCAL_BACKBONES
    documented = checksum == LOCAL_BACKBONES[backbone].sha256
    print(f"Tiny CLIP {backbone}, weights sha256 {checksum[:16]}… "
          + ("(the documented build)" if documented else
             "(NOT the documented build: not comparable with the README's table)"))
    print(f"Outputs in {a.output} (e2mim-results {a.output} reads them); finished in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
