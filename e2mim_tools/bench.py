"""The CPU bench: base-to-new on CompWorldBench with the tiny CLIP, judged against the 11 benchmarks.

The bench is calibrated with the eight published baselines only (docs/BENCH.md): a good bench
ranks them by harmonic mean as the published 11-dataset averages do. This module holds

* the one scaling rule that turns each method's published base-to-new recipe into its bench
  recipe (``bench_recipe``; the shipped ``configs/trainers/<T>/compworld_bench.yaml`` files are
  its output, checked by the tests and by ``e2mim-bench recipes --check``);
* the calibration targets and the report that checks them on a finished sweep.

Commands::

    e2mim-bench run [--data data] [--seeds 1 2 3 4 5] [--slots 2]   # build the tiny CLIP, run, report
    e2mim-bench report [--data data]                                  # the table of what has finished
    e2mim-bench recipes [--write | --check]                           # the scaling rule's output
    e2mim-bench lr-sweep [--write | --check]                          # the learning-rate choice's sweep
    e2mim-bench choose-lr bench_lr.yaml [--data data]                 # apply the choice rule, write it
"""
import argparse
import json
import math
import os
import statistics
import sys
from collections import OrderedDict

import yaml

from e2mim_clip.loader import LOCAL_BACKBONES
from .tiny_clip import DEFAULTS as TINY_DEFAULTS, RECIPES as TINY_RECIPES, build

from .protocols import METHODS
from .published import REPORTED_BASE2NEW
from .results import harmonic_mean
from .selection import SELECTION_SEEDS, SelectionError, choose, read_selection, selection_record, \
    validation_table, write_selection
from .sweep.spec import read_yaml, repo_configs

BENCH_DATASET = "compworld_bench"
BENCH_CFG = "compworld_bench"          # configs/trainers/<T>/compworld_bench.yaml
BENCH_SWEEP = "bench.yaml"              # configs/sweeps/bench.yaml
NEWER_SWEEP = "bench_newer.yaml"        # configs/sweeps/bench_newer.yaml: the newer methods, beside the bench
SELECT_SWEEP = "e2mim_select.yaml"      # configs/sweeps/e2mim_select.yaml: E2MIM's candidates
BACKBONE = "compworld-tiny-deep"
# The bench tiny CLIP's towers (its recipe in e2mim_tools.tiny_clip) against ViT-B/16's 12 layers each.
_TOWERS = dict(TINY_DEFAULTS, **TINY_RECIPES[BACKBONE])
VISION_LAYERS, TEXT_LAYERS, PUBLISHED_LAYERS = _TOWERS["vision_layers"], _TOWERS["text_layers"], 12
INPUT_SIZE = (64, 64)
VAL_IMAGES_PER_CLASS = 60   # all of CompWorldBench's validation images of a class (its split: 150/60/90)
# The learning rate is the published one times a factor: the tiny CLIP's prompts move its
# features less per step than ViT-B/16's do, and by how much differs between methods (a method
# trained for 300 steps is further from done than one trained for 4000). LR_SCALE is the default
# factor; each method's own is chosen among LR_FACTORS on base-class validation accuracy by
# LR_RULE (``choose_lr``), run with the sweeps LR_SWEEPS and recorded in docs/bench_lr.json.
LR_SCALE = 3.0
LR_FACTORS = (3.0, 1.0, 10.0)     # the default first
# The rule's seeds: one seed's validation accuracy moved by 7 points with other training views
# (round 5), so the choice averages three.
LR_CHOICE_SEEDS = (1, 2, 3)
LR_CHOICE_MARGIN = 1.0            # points of validation accuracy a factor must gain over the default
# configs/sweeps/<file>, written by `e2mim-bench lr-sweep --write`: the baselines' (run while the
# bench is calibrated) and E2MIM's (run only after the calibration froze the bench)
LR_SWEEPS = {"bench_lr.yaml": None, "e2mim_lr.yaml": ["E2MIM"]}
LR_RULE = (f"per method, the factor among {', '.join('%g' % f for f in LR_FACTORS)} with the highest base-class "
           f"validation accuracy (all validation images, mean over seeds {', '.join(map(str, LR_CHOICE_SEEDS))}); "
           f"a factor replaces the default "
           f"{LR_SCALE:g} only when it beats it by more than {LR_CHOICE_MARGIN:g} point")
# The step-count rule. The published recipes fix epochs, so a method's optimisation steps grow
# with a benchmark's base classes (16 shots each); the bench's 24 base classes give fewer steps
# than a typical benchmark. Each epoch therefore passes over the training set STEP_REPEAT times
# (DATALOADER.TRAIN_X.REPEAT): the steps of a benchmark with STEP_REPEAT x 24 base classes, with
# the published epochs and schedule. STEP_REPEAT is the median base-class count of the 11
# benchmarks (the first half of each one's classes, base-to-new) over the bench's, rounded: the
# typical benchmark's count. The mean (100) is ImageNet's 500 weighing in, and its x4 would double
# the table's time.
BENCHMARK_CLASSES = {"ImageNet": 1000, "Caltech101": 100, "OxfordPets": 37, "StanfordCars": 196,
                     "Flowers102": 102, "Food101": 101, "FGVCAircraft": 100, "SUN397": 397, "DTD": 47,
                     "EuroSAT": 10, "UCF101": 101}
BENCH_BASE_CLASSES = 24
STEP_REPEAT = max(1, round(statistics.median(math.ceil(n / 2) for n in BENCHMARK_CLASSES.values())
                           / BENCH_BASE_CLASSES))
# Methods whose image side is frozen train on cached augmented views (the training feature
# cache): TRAIN_VIEWS views of each training image, encoded once for every seed and method, one
# drawn at random per image and pass, in place of a fresh augmentation each step.
TRAIN_VIEWS = 64
# Random crops keep at least half the image: the object covers a fifth of a 64-pixel image, and
# Dassl's default scale (0.08, 1.0) would often crop it out (the label then names nothing seen).
RRCROP_SCALE = "(0.5, 1.0)"

# The calibrated baselines, in the published HM order (e2mim_tools.published); E2MIM is run on
# the bench, never used to calibrate it.
BASELINES = ["ZeroshotCLIP", "CoOp", "CoCoOp", "ProGrad", "KgCoOp", "IVLP", "MaPLe", "PromptSRC"]
# Methods run on the bench beside them, never used to calibrate it (configs/sweeps/bench_newer.yaml,
# `e2mim-bench run --newer`): TCP, MMRL, CoPrompt and DePT over four bases.
DEPT_TRAINERS = ["ExtrasLinearProbeCoOp", "ExtrasLinearProbeCoCoOp", "ExtrasLinearProbeKgCoOp",
                 "ExtrasLinearProbeMaPLe"]
NEWER_TRAINERS = ["TCP", "MMRL", "CoPrompt"] + DEPT_TRAINERS
BENCH_TRAINERS = BASELINES + ["E2MIM"]

# Per-method departures from the rule beyond the learning-rate factor, each chosen on base-class
# validation accuracy and recorded here with its numbers (docs/BENCH.md): {trainer: {KEY: value}}.
PER_METHOD_CHOICES = {}
# Per-class data a method's published recipe reads and the bench's classes do not have, replaced by
# the method's documented substitute (rule item 8): {trainer: {KEY: value}}.
DATA_SUBSTITUTES = {"CoPrompt": {"TRAINER.COPROMPT.DESCRIPTIONS": "templates"}}  # no LLM descriptions

# Calibration targets (issue: the bench must rank the baselines as the 11 benchmarks do).
MIN_SPEARMAN = 0.85
MIN_SEEDS = 5
MAX_HM_STDERR = 0.5
MAX_WALL_MINUTES = 60


# ------------------------------------------------------------------------------------------
# the scaling rule
# ------------------------------------------------------------------------------------------
SCALING_RULE = """\
A bench recipe is the method's published base-to-new recipe (the methods table's cfg) with:
1. INPUT.SIZE (64, 64), MODEL.BACKBONE.NAME compworld-tiny-deep: the bench tiny CLIP's input and weights;
2. TRAINER.<NODE>.PREC fp32 and DATALOADER.NUM_WORKERS 0: the CPU;
3. every prompt depth d (of ViT-B/16's 12 layers) scaled to the tiny CLIP's towers,
   max(1, round(d * L / 12)) with L = 4 vision layers, 6 text layers, and the smaller of the two
   for a depth that prompts both towers (MaPLe's PROMPT_DEPTH);
   likewise every layer number l of a list that enters both towers (MMRL's REP_LAYERS, from 1):
   max(2, round(l * L / 12)) with L the smaller tower, repeats dropped;
4. INPUT.RRCROP_SCALE (0.5, 1.0) where random_resized_crop is used: the object covers a fifth of
   a 64-pixel image and Dassl's default (0.08, 1.0) would often crop it out;
5. OPTIM.LR times the method's factor: 3 unless base-class validation accuracy chose 1 or 10 by
   the learning-rate rule (LR_RULE; the choice and its numbers are in docs/bench_lr.json);
6. DATALOADER.TRAIN_X.REPEAT 2 (STEP_REPEAT): each epoch passes over the training images twice,
   so a method takes the steps it takes on a benchmark of 48 base classes (the median of the
   11 benchmarks, 51, over the bench's 24, rounded), with the published epochs and schedule;
7. DATALOADER.FEATURE_CACHE.TRAIN_VIEWS 64 for a method that trains with a frozen image side:
   64 cached augmented views per training image, one drawn per image and pass;
8. everything else as published: epochs, batch size, optimizer, schedule, the method's own
   weights and context, fresh augmentations every step where the image side learns;
9. per-method departures only where base-class validation accuracy chose them (PER_METHOD_CHOICES);
10. per-class data the bench's classes lack replaced by the method's documented substitute
   (DATA_SUBSTITUTES: CoPrompt's LLM class descriptions by CLIP's hand-crafted templates).
"""

_DEPTH_KEYS = {"PROMPT_DEPTH_VISION": VISION_LAYERS, "PROMPT_DEPTH_TEXT": TEXT_LAYERS,
               "PROMPT_DEPTH": min(VISION_LAYERS, TEXT_LAYERS)}


def scaled_depth(depth, layers):
    return max(1, int(math.floor(depth * layers / PUBLISHED_LAYERS + 0.5)))


_LAYER_LIST_KEYS = {"REP_LAYERS": min(VISION_LAYERS, TEXT_LAYERS)}


def scaled_layers(layers, tower):
    """Layer numbers (from 1; layer 1 takes no added tokens) scaled to a tower of ``tower`` layers."""
    return sorted({max(2, scaled_depth(l, tower)) for l in layers})


def published_cfg(trainer):
    """The methods table's base-to-new cfg name of a trainer."""
    for m in METHODS:
        if m.trainer == trainer:
            return m.cfg_b2n
    raise KeyError(f"{trainer} is not in the methods table (e2mim_tools.protocols.METHODS)")


def _trainer_class(trainer):
    from e2mim_engine.trainer import TRAINER_REGISTRY
    import e2mim_trainers  # noqa: F401  registers the trainers
    return TRAINER_REGISTRY.get(trainer)


def _declares_prec(cls):
    from e2mim_engine.cli import default_cfg
    cfg = default_cfg()
    cls.extend_cfg(cfg)
    return "PREC" in cfg.TRAINER.get(cls.node, {})


def bench_recipe(trainer, configs=None, selection=True):
    """The bench recipe (a nested dict) of ``trainer``, by the scaling rule (for E2MIM with the
    preregistered selection's keys unless ``selection`` is False: its candidates' base)."""
    configs = configs or repo_configs()
    cfg = read_yaml(os.path.join(configs, "trainers", trainer, published_cfg(trainer) + ".yaml"))
    cfg.setdefault("INPUT", {})["SIZE"] = "(%d, %d)" % INPUT_SIZE
    if "random_resized_crop" in cfg["INPUT"].get("TRANSFORMS", []):
        cfg["INPUT"]["RRCROP_SCALE"] = RRCROP_SCALE
    cfg.setdefault("MODEL", {}).setdefault("BACKBONE", {})["NAME"] = BACKBONE
    loader = cfg.setdefault("DATALOADER", {})
    loader["NUM_WORKERS"] = 0
    cls = _trainer_class(trainer)
    if cfg.get("OPTIM", {}).get("MAX_EPOCH", 0):
        loader.setdefault("TRAIN_X", {})["REPEAT"] = STEP_REPEAT
        if cls.frozen_train_features:
            loader.setdefault("FEATURE_CACHE", {})["TRAIN_VIEWS"] = TRAIN_VIEWS
    if "OPTIM" in cfg and "LR" in cfg["OPTIM"]:
        cfg["OPTIM"]["LR"] = scaled_lr(cfg["OPTIM"]["LR"], lr_factor(trainer, configs))
    if _declares_prec(cls):
        cfg.setdefault("TRAINER", {}).setdefault(cls.node, {})["PREC"] = "fp32"
    for node in (cfg.get("TRAINER") or {}).values():
        for key, layers in _DEPTH_KEYS.items():
            if key in node:
                node[key] = scaled_depth(node[key], layers)
        for key, layers in _LAYER_LIST_KEYS.items():
            if key in node:
                node[key] = scaled_layers(node[key], layers)
    choices = dict(DATA_SUBSTITUTES.get(trainer, {}), **PER_METHOD_CHOICES.get(trainer, {}))
    if trainer == "E2MIM" and selection:
        chosen = read_selection(selection_path(configs))
        if chosen:
            opts = chosen["chosen_opts"]
            choices.update(zip(opts[::2], opts[1::2]))
    for key, value in choices.items():
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = yaml.safe_load(value) if isinstance(value, str) else value   # sweep opts are text
    return cfg


def scaled_lr(lr, factor):
    return round(lr * factor, 10)


def lr_choice_path(configs=None):
    """docs/bench_lr.json of the checkout (written by `e2mim-bench choose-lr`)."""
    return os.path.join(os.path.dirname(configs or repo_configs()), "docs", "bench_lr.json")


def lr_factor(trainer, configs=None):
    """The trainer's chosen learning-rate factor (LR_SCALE until the rule has chosen one)."""
    chosen = (read_selection(lr_choice_path(configs)) or {}).get("methods", {}).get(trainer)
    return float(chosen["factor"]) if chosen else LR_SCALE


def choose_lr(val):
    """LR_RULE on {factor: base-class validation accuracy} of one method: (factor, why)."""
    missing = [f for f in LR_FACTORS if f not in val]
    if missing:
        raise SelectionError(f"the learning-rate choice needs every factor; missing {missing}")
    best = max(LR_FACTORS, key=lambda f: (val[f], -LR_FACTORS.index(f)))
    gain = val[best] - val[LR_SCALE]
    if best != LR_SCALE and gain > LR_CHOICE_MARGIN:
        return best, f"{best:g} beats the default by {gain:.2f} points"
    return LR_SCALE, ("the default is the best" if best == LR_SCALE else
                      f"{best:g} is best but within {LR_CHOICE_MARGIN:g} point of the default ({gain:+.2f})")


def _lr_tag(factor):
    return "lr_x%g" % factor


def lr_sweep_trainers(name):
    only = LR_SWEEPS[name]
    return only or [t for t in BASELINES if t != "ZeroshotCLIP"]


def lr_sweep_text(name, configs=None):
    """A learning-rate choice's sweep file: its prompt trainers at every factor, seeds
    LR_CHOICE_SEEDS, reporting all base-class validation images. E2MIM's file uses its candidates'
    base recipe and is run only after the baselines' choices froze the bench."""
    stem = name[:-len(".yaml")]
    lines = [
        "# The bench's learning-rate choice (e2mim_tools/bench.py, LR_RULE; docs/BENCH.md): each method below",
        "# at the published learning rate times each factor, seeds %s, reporting the base classes' validation"
        % ", ".join(map(str, LR_CHOICE_SEEDS)),
        "# accuracy on all their validation images. Written by `e2mim-bench lr-sweep --write`: do not edit.",
        f"#   e2mim-sweep run configs/sweeps/{name} --data data",
        f"#   e2mim-bench choose-lr {name} --data data     (writes docs/bench_lr.json)",
        f"name: {stem}", "output: ../../output/bench", "protocols: [base2new]",
        f"datasets: [{BENCH_DATASET}]", f"seeds: [{', '.join(map(str, LR_CHOICE_SEEDS))}]", "shots: 16",
        f"opts: [TEST.REPORT_VAL, True, DATASET.VAL_SHOTS, {VAL_IMAGES_PER_CLASS}, VERBOSE, False]", "methods:"]
    for t in lr_sweep_trainers(name):
        cfg = CANDIDATES_CFG if t == "E2MIM" else BENCH_CFG
        lr = read_yaml(os.path.join(configs or repo_configs(), "trainers", t, published_cfg(t) + ".yaml"))["OPTIM"]["LR"]
        for f in LR_FACTORS:
            lines.append(f"  - {{trainer: {t}, cfg: {cfg}, tag: {_lr_tag(f)}, opts: [OPTIM.LR, {scaled_lr(lr, f)!r}]}}")
    lines += ["local:", "  gpus: none", ""]
    return "\n".join(lines)


def select_lr(name, data, output=None, write=True, log=print):
    """LR_RULE over the finished runs of the learning-rate sweep ``name`` (every factor on every
    seed of LR_CHOICE_SEEDS, averaged per factor); merges the chosen factors of its trainers, with
    each seed's numbers, into docs/bench_lr.json."""
    from .results import read_result
    from .sweep.spec import expand, load
    if name not in LR_SWEEPS:
        raise SelectionError(f"{name} is not a learning-rate sweep; these are: {', '.join(LR_SWEEPS)}")
    path = os.path.join(repo_configs(), "sweeps", name)
    sw = load(path, {"data": data, "output": output, "seeds": list(LR_CHOICE_SEEDS)})
    tags = {m.label: (m.trainer, m.tag) for m in sw.methods}
    per_seed = OrderedDict()   # trainer -> factor -> [accuracy of each seed, in LR_CHOICE_SEEDS order]
    for run in expand(sw):
        t, tag = tags[run.method]
        if run.kind != "train":
            continue
        res = read_result(run.directory)
        if res is None or "val_accuracy" not in res:
            raise SelectionError(f"{t} {tag} seed {run.seed} has no validation accuracy in {run.directory}: run "
                                 f"`e2mim-sweep run {path} --data {data}` first (the rule needs seeds "
                                 f"{', '.join(map(str, LR_CHOICE_SEEDS))}).")
        per_seed.setdefault(t, {}).setdefault(float(tag[len("lr_x"):]), {})[run.seed] = float(res["val_accuracy"])
    record = read_selection(lr_choice_path()) or OrderedDict(rule=LR_RULE, methods={})
    record["rule"] = LR_RULE
    for t, by_factor in per_seed.items():
        seeds = {f: [v[s] for s in LR_CHOICE_SEEDS] for f, v in by_factor.items()}
        mean = {f: statistics.fmean(v) for f, v in seeds.items()}
        factor, why = choose_lr(mean)
        record["methods"][t] = OrderedDict(factor=factor, why=why, seeds=list(LR_CHOICE_SEEDS),
                                           val={"%g" % f: mean[f] for f in LR_FACTORS},
                                           val_per_seed={"%g" % f: seeds[f] for f in LR_FACTORS})
        log(f"{t:12s} " + "  ".join(f"x{f:g} {mean[f]:6.2f}" for f in LR_FACTORS) + f"  -> x{factor:g} ({why})")
    if write and per_seed:
        write_selection(lr_choice_path(), record)
        log(f"wrote {lr_choice_path()}; now `e2mim-bench recipes --write` and commit")
    return 0


def selection_path(configs=None):
    """docs/e2mim_selection.json of the checkout (written by `e2mim-bench select`)."""
    return os.path.join(os.path.dirname(configs or repo_configs()), "docs", "e2mim_selection.json")


CANDIDATES_CFG = "compworld_bench_candidates"   # E2MIM's recipe before the selection


def recipe_files():
    """(trainer, cfg name, with the selection) of every recipe the rule writes."""
    return [(t, BENCH_CFG, True) for t in BENCH_TRAINERS + NEWER_TRAINERS] + [("E2MIM", CANDIDATES_CFG, False)]


def recipe_text(trainer, configs=None, selection=True):
    what = "" if selection else ", before the preregistered selection (its candidates' base)"
    header = (f"# {trainer} on the CPU bench (CompWorldBench, tiny CLIP){what}: its published base-to-new recipe\n"
              f"# (configs/trainers/{trainer}/{published_cfg(trainer)}.yaml) under the bench's scaling rule\n"
              f"# (e2mim_tools/bench.py, docs/BENCH.md). Written by `e2mim-bench recipes --write`: do not edit.\n")
    body = yaml.safe_dump(bench_recipe(trainer, configs, selection), sort_keys=False, default_flow_style=None,
                          width=100)
    return header + body


def recipe_path(trainer, configs=None, cfg=BENCH_CFG):
    return os.path.join(configs or repo_configs(), "trainers", trainer, cfg + ".yaml")


# ------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------
def spearman(xs, ys):
    """Spearman's rank correlation (ties get their average rank)."""
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2.0 + 1
            i = j + 1
        return r
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / var if var else float("nan")


def stderr(values):
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")


def seeds_needed(se, n, target=None):
    """Seeds that would bring a standard error ``se`` measured over ``n`` seeds to ``target``
    (MAX_HM_STDERR) if the seed spread stayed as measured: ceil((sd / target)^2), sd = se sqrt(n)."""
    target = target or MAX_HM_STDERR
    return math.ceil(round((se * se * n) / (target * target), 9))


def method_rows(per_seed):
    """{trainer: {seed: (base, new)}} -> {trainer: {base, new, hm (means), their standard errors, seeds}}."""
    rows = OrderedDict()
    for trainer, seeds in per_seed.items():
        base = [b for b, _ in seeds.values()]
        new = [n for _, n in seeds.values()]
        hms = [harmonic_mean(b, n) for b, n in seeds.values()]
        rows[trainer] = dict(base=statistics.fmean(base), new=statistics.fmean(new), hm=statistics.fmean(hms),
                            base_se=stderr(base), new_se=stderr(new), hm_se=stderr(hms), seeds=sorted(seeds))
    return rows


def targets(rows, wall_minutes=None):
    """[(target, passed or None when it cannot be judged yet, what was measured)]."""
    out = []
    pub = {r.trainer: r for r in REPORTED_BASE2NEW}
    zs = rows.get("ZeroshotCLIP")
    prompt = [t for t in BASELINES if t != "ZeroshotCLIP" and t in rows]
    if zs and prompt:
        losers = [t for t in prompt if rows[t]["base"] <= zs["base"]]
        out.append(("every prompt method gains on base against zero-shot", not losers and len(prompt) == 7,
                    "all gain" if not losers else "no gain: " + ", ".join(losers)))
    if zs and "CoOp" in rows:
        d = rows["CoOp"]["new"] - zs["new"]
        out.append(("CoOp loses on new against zero-shot", d < 0, f"CoOp new - zero-shot new = {d:+.2f}"))
    have = [t for t in BASELINES if t in rows]
    if len(have) == len(BASELINES):
        rho = spearman([rows[t]["hm"] for t in have], [pub[t].hm for t in have])
        out.append((f"HM rank correlation with the 11 benchmarks >= {MIN_SPEARMAN}", rho >= MIN_SPEARMAN,
                    f"Spearman {rho:.3f}"))
        ours = sorted(have, key=lambda t: rows[t]["hm"])
        theirs = sorted(have, key=lambda t: pub[t].hm)
        out.append(("top two as published", set(ours[-2:]) == set(theirs[-2:]),
                    f"bench: {', '.join(ours[-2:])}; published: {', '.join(theirs[-2:])}"))
        out.append(("bottom two as published", set(ours[:2]) == set(theirs[:2]),
                    f"bench: {', '.join(ours[:2])}; published: {', '.join(theirs[:2])}"))
    else:
        out.append((f"HM rank correlation with the 11 benchmarks >= {MIN_SPEARMAN}", None,
                    f"{len(have)} of {len(BASELINES)} baselines finished"))
    judged = {t: rows[t] for t in have}   # the calibration is judged on the baselines only
    if judged:
        n = min(len(r["seeds"]) for r in judged.values())
        worst = max(judged, key=lambda t: judged[t]["hm_se"] if n > 1 else 0)
        se = judged[worst]["hm_se"]
        what = f"{n} seeds; largest HM standard error {se:.2f} ({worst})"
        if n > 1 and se > MAX_HM_STDERR:
            what += f"; at its seed spread it would need {seeds_needed(se, n)} seeds"
        out.append((f">= {MIN_SEEDS} seeds, every HM standard error <= {MAX_HM_STDERR}",
                    n >= MIN_SEEDS and se <= MAX_HM_STDERR, what))
    if wall_minutes is not None:
        out.append((f"8 baselines x {MIN_SEEDS} seeds in <= {MAX_WALL_MINUTES} min on 2 cores",
                    wall_minutes <= MAX_WALL_MINUTES, f"{wall_minutes:.1f} min of sweep wall time"))
    return out


E2MIM_BASE_GAP = 1.0   # points: E2MIM's base accuracy within this of CoOp's


def e2mim_checks(per_seed):
    """E2MIM's own target, judged on the seeds it shares with each baseline (never a calibration
    target): HM above KgCoOp's and above CoOp's by more than one standard error of the paired
    per-seed differences, and base accuracy within E2MIM_BASE_GAP points of CoOp's.
    [(target, passed or None, what was measured)]; empty without E2MIM runs."""
    mine = per_seed.get("E2MIM")
    if not mine:
        return []
    out, common_with = [], {}
    for other in ("KgCoOp", "CoOp"):
        theirs = per_seed.get(other, {})
        common = common_with[other] = sorted(set(mine) & set(theirs))
        name = f"E2MIM's HM above {other}'s by more than one standard error (paired by seed)"
        if len(common) < 2:
            out.append((name, None, f"{len(common)} seed(s) in common"))
            continue
        d = [harmonic_mean(*mine[s]) - harmonic_mean(*theirs[s]) for s in common]
        m, se = statistics.fmean(d), stderr(d)
        out.append((name, m > se, f"{m:+.2f} ± {se:.2f} over seeds {', '.join(map(str, common))}"))
    coop, common = per_seed.get("CoOp", {}), common_with["CoOp"]
    name = f"E2MIM's base within {E2MIM_BASE_GAP:g} point of CoOp's"
    if common:
        gap = statistics.fmean(coop[s][0] - mine[s][0] for s in common)
        out.append((name, gap <= E2MIM_BASE_GAP, f"CoOp's base - E2MIM's = {gap:+.2f} over "
                                                 f"{len(common)} seeds"))
    else:
        out.append((name, None, "no seed in common"))
    return out


def collect(root, trainers=BENCH_TRAINERS, seeds=None):
    """{trainer: {seed: (base, new)}} from a bench output tree (results.json only; only
    ``seeds`` when given), the backbone checksums the runs recorded, and the unfinished runs."""
    from .results import find_runs, read_result
    runs = [r for r in find_runs([root]) if r.protocol == "base2new" and r.dataset == BENCH_DATASET
            and r.cfg == BENCH_CFG and r.trainer in trainers and (not seeds or r.seed in seeds)]
    acc, sums = {}, set()
    for r in runs:
        res = read_result(r.path) or {}
        if r.source == "results.json":
            acc.setdefault((r.trainer, r.seed), {})[r.role] = r.accuracy
            sums.add(res.get("backbone_sha256"))
        else:
            acc.setdefault((r.trainer, r.seed), {})
    per_seed, unfinished = OrderedDict(), []
    for t in trainers:
        for (trainer, seed), roles in sorted(acc.items(), key=lambda kv: kv[0][1]):
            if trainer != t:
                continue
            if "base" in roles and "new" in roles:
                per_seed.setdefault(t, {})[seed] = (roles["base"], roles["new"])
            else:
                unfinished.append(f"{trainer} seed {seed}")
    return per_seed, sums, unfinished


def _check_lines(checks):
    return [f"[{'PASS' if ok else ('n/a ' if ok is None else 'FAIL')}] {name}: {measured}"
            for name, ok, measured in checks]


def render(rows, checks, sums, unfinished, own=()):
    pub = {r.trainer: r for r in REPORTED_BASE2NEW}
    lines = ["| method | base | new | HM | seeds | published HM (11 datasets) |", "|---|---|---|---|---|---|"]
    for t, r in rows.items():
        ref = f"{pub[t].hm:.2f}" if t in pub else "—"
        lines.append(f"| {t} | {r['base']:.2f} ± {r['base_se']:.2f} | {r['new']:.2f} ± {r['new_se']:.2f} | "
                     f"{r['hm']:.2f} ± {r['hm_se']:.2f} | {len(r['seeds'])} | {ref} |")
    lines.append("")
    lines.append("Mean ± standard error over seeds (HM per seed, then averaged).")
    lines.append("")
    lines += _check_lines(checks)
    if own:
        lines += ["", "E2MIM's target (judged beside the baselines, never calibrating them):"] + _check_lines(own)
    want = LOCAL_BACKBONES[BACKBONE].sha256
    for sha in sorted(sums, key=str):
        note = "the documented build" if sha == want else "NOT the documented build: not comparable"
        lines.append(f"backbone {BACKBONE} sha256 {sha} ({note})")
    if unfinished:
        lines.append(f"unfinished: {', '.join(unfinished)}")
    return "\n".join(lines)


def sweep_wall_minutes(sweep):
    """Wall time of the bench's runs from the sweep's records: first start to last end."""
    from .sweep.state import state_dir
    state = state_dir(sweep)
    starts, ends = [], []
    if not os.path.isdir(state):
        return None
    for name in os.listdir(state):
        try:
            with open(os.path.join(state, name)) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        if rec.get("start") and rec.get("time"):
            starts.append(rec["start"])
            ends.append(rec["time"])
    return (max(ends) - min(starts)) / 60 if starts else None


def report(output, sweep=None, trainers=BENCH_TRAINERS, seeds=None):
    """(text, rows, checks) of the runs under ``output``; ``sweep`` (a loaded sweep) adds the wall time."""
    per_seed, sums, unfinished = collect(output, trainers, seeds)
    rows = method_rows(per_seed)
    checks = targets(rows, sweep_wall_minutes(sweep) if sweep else None)
    return render(rows, checks, sums, unfinished, e2mim_checks(per_seed)), rows, checks


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------
def _sweep(data, output, seeds, name=BENCH_SWEEP):
    from .sweep.spec import load
    over = {"data": data, "output": output, "seeds": seeds}
    return load(os.path.join(repo_configs(), "sweeps", name), over)


def select(data, output=None, write=True, log=print):
    """The preregistered selection over the finished candidate runs of the selection sweep."""
    from .results import read_result
    from .sweep.spec import expand, load
    path = os.path.join(repo_configs(), "sweeps", SELECT_SWEEP)
    sw = load(path, {"data": data, "output": output, "seeds": list(SELECTION_SEEDS)})
    tags = {m.label: m.tag for m in sw.methods}
    candidates = [dict(tag=m.tag, opts=list(m.opts)) for m in sw.methods]
    triples = []
    for run in expand(sw):
        if run.kind == "train" and "/train_base/" in "/" + run.key.replace(os.sep, "/"):
            res = read_result(run.directory)
            if res is None:
                raise SelectionError(f"candidate {tags[run.method]} seed {run.seed} has not finished ({run.directory}); "
                                     f"run `e2mim-sweep run {path} --data {data}` first.")
            triples.append((tags[run.method], run.seed, res))
    chosen, best, rows = choose([c["tag"] for c in candidates], validation_table(triples))
    record = selection_record(os.path.relpath(path, os.path.dirname(repo_configs())), candidates, chosen, best, rows,
                              repo=os.path.dirname(repo_configs()))
    for t, row in rows.items():
        log(f"{t:40s} val {row['mean']:6.2f}  diff to best {row['diff_to_best']:+6.2f} ± {row['diff_se'] or 0:.2f}"
            f"{'  ties' if row['ties_with_best'] else ''}{'  <- chosen' if t == chosen else ''}")
    if write:
        write_selection(selection_path(), record)
        log(f"wrote {selection_path()}: chosen {chosen} (best {best}); now `e2mim-bench recipes --write`, "
            f"commit, and only then run the held-out seeds")
    return 0


def write_or_check(files, write, check, ok, not_ok, end="\n"):
    """Generated files [(path, text)]: write them, check the shipped ones equal them (exit code
    1 and the paths that differ), or print them. Returns the exit code."""
    bad = []
    for path, text in files:
        if write:
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote {path}")
        elif check:
            try:
                with open(path) as f:
                    same = f.read() == text
            except OSError:
                same = False
            if not same:
                bad.append(path)
        else:
            print(f"# ---- {path}\n{text}", end=end)
    if check:
        print("\n".join(f"{not_ok}: {p}" for p in bad) or ok)
    return 1 if bad else 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="e2mim-bench", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("run", "report"):
        p = sub.add_parser(name)
        p.add_argument("--data", default="data", help="data root (the world is generated there)")
        p.add_argument("--output", default=None, help="output root (default: the sweep file's)")
        p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the sweep file's")
        p.add_argument("--newer", action="store_true",
                       help="the newer methods' sweep (" + NEWER_SWEEP + ": " + ", ".join(NEWER_TRAINERS) + ")")
        if name == "run":
            p.add_argument("--slots", type=int, default=2, help="runs at a time (default 2: one per core)")
    p = sub.add_parser("select", help="choose E2MIM's configuration by the preregistered rule "
                                      "(validation accuracy of seeds 1-3 only) and write docs/e2mim_selection.json")
    p.add_argument("--data", default="data")
    p.add_argument("--output", default=None, help="output root (default: the selection sweep file's)")
    r = sub.add_parser("recipes", help="the scaling rule's recipes")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="write configs/trainers/<T>/compworld_bench.yaml")
    g.add_argument("--check", action="store_true", help="exit 1 if a shipped recipe is not the rule's output")
    r = sub.add_parser("lr-sweep", help="the learning-rate choice's sweep files")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="write configs/sweeps/" + " and ".join(LR_SWEEPS))
    g.add_argument("--check", action="store_true", help="exit 1 if a shipped file is not the rule's output")
    p = sub.add_parser("choose-lr", help="apply the learning-rate rule to a finished learning-rate sweep; "
                                         "write docs/bench_lr.json")
    p.add_argument("sweep", choices=list(LR_SWEEPS))
    p.add_argument("--data", default="data")
    p.add_argument("--output", default=None, help="output root (default: the sweep file's)")
    a = ap.parse_args(argv)
    if a.cmd == "lr-sweep":
        files = [(os.path.join(repo_configs(), "sweeps", n), lr_sweep_text(n)) for n in LR_SWEEPS]
        return write_or_check(files, a.write, a.check, "the learning-rate sweeps follow the rule",
                              "not the rule's output", end="")
    if a.cmd == "choose-lr":
        return select_lr(a.sweep, a.data, a.output)
    if a.cmd == "recipes":
        files = [(recipe_path(t, cfg=cfg), recipe_text(t, selection=sel)) for t, cfg, sel in recipe_files()]
        rc = write_or_check(files, a.write, a.check, "every bench recipe follows the rule",
                            "not the scaling rule's output")
        print(SCALING_RULE if not a.check else "", end="")
        return rc
    if a.cmd == "select":
        return select(a.data, a.output)
    name = NEWER_SWEEP if a.newer else BENCH_SWEEP
    sw = _sweep(a.data, a.output, a.seeds, name)
    if a.cmd == "run":
        from .sweep.cli import main as sweep_main
        build(BACKBONE, log=lambda m: print(m, flush=True))
        args = ["run", os.path.join(repo_configs(), "sweeps", name), "--data", a.data,
                "--slots", str(a.slots), "--no-report"]
        if a.output:
            args += ["--output", a.output]
        if a.seeds:
            args += ["--seeds"] + [str(s) for s in a.seeds]
        sweep_main(args)
    text, rows, checks = report(sw.output, None if a.newer else sw, BENCH_TRAINERS + NEWER_TRAINERS, sw.seeds)
    print(text)
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
