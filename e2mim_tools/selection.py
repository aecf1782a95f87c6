"""E2MIM's configuration, chosen by a rule written down before any held-out seed is run.

The rule (``RULE``, fixed in code and committed with the candidate list before the candidates
are run):

1. Read only the base-class *validation* accuracy (``val_accuracy`` in each training run's
   results.json, written with TEST.REPORT_VAL True) of the selection seeds (1-3). No test
   accuracy is read: ``validation_table`` never looks at the ``accuracy`` field.
2. The best candidate has the highest mean validation accuracy over the seeds.
3. A candidate *ties* with the best when the mean of its per-seed differences to the best (paired
   by seed) is less than two standard errors of those differences.
4. Among the best and its ties, the candidate listed first in the sweep file is chosen: the
   file lists them from simplest to most elaborate, so a tie goes to the simpler one.

``e2mim-bench select`` writes the choice, every candidate and its validation numbers to
``docs/e2mim_selection.json``; the E2MIM bench recipe then carries the chosen keys, and only
after that are the held-out seeds (4-8) run, once, and reported whatever they show.
"""
import datetime
import json
import math
import os
import statistics
import subprocess
from collections import OrderedDict

RULE = ("highest mean base-class validation accuracy over the selection seeds; a candidate whose "
        "paired mean difference to the best is under two standard errors ties with it; among ties the "
        "candidate listed first (simplest) in the sweep file is chosen")
SELECTION_SEEDS = (1, 2, 3)
HELD_OUT_SEEDS = (4, 5, 6, 7, 8)


class SelectionError(Exception):
    pass


def validation_table(runs, seeds=SELECTION_SEEDS):
    """{tag: {seed: val_accuracy}} from (tag, seed, results dict) triples of training runs.
    Only ``val_accuracy`` is read; a run without it is an error (it was not run with
    TEST.REPORT_VAL True, so it cannot take part)."""
    table = OrderedDict()
    for tag, seed, res in runs:
        if seed not in seeds:
            continue
        if "val_accuracy" not in res:
            raise SelectionError(f"candidate {tag} seed {seed} has no val_accuracy in its results.json: run the "
                                 f"candidates with TEST.REPORT_VAL True (configs/sweeps/e2mim_select.yaml does).")
        table.setdefault(tag, {})[seed] = float(res["val_accuracy"])
    return table


def choose(order, table, seeds=SELECTION_SEEDS):
    """The rule. ``order``: candidate tags as listed (simplest first). Returns (chosen tag,
    {tag: row}) where each row holds the per-seed numbers, mean, the paired difference to the
    best with its standard error, and whether it ties with the best."""
    missing = [(t, s) for t in order for s in seeds if s not in table.get(t, {})]
    if missing:
        raise SelectionError("the selection needs every candidate on every selection seed; missing: "
                             + ", ".join(f"{t} seed {s}" for t, s in missing))
    means = {t: statistics.fmean(table[t][s] for s in seeds) for t in order}
    best = max(order, key=lambda t: (means[t], -order.index(t)))
    rows = OrderedDict()
    for t in order:
        diffs = [table[best][s] - table[t][s] for s in seeds]
        d = statistics.fmean(diffs)
        se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("inf")
        tie = t == best or d < 2 * se
        rows[t] = OrderedDict(val=[table[t][s] for s in seeds], mean=round(means[t], 4),
                              diff_to_best=round(d, 4), diff_se=round(se, 4) if math.isfinite(se) else None,
                              ties_with_best=bool(tie))
    chosen = next(t for t in order if rows[t]["ties_with_best"])
    return chosen, best, rows


def git_commit(repo):
    try:
        return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def selection_record(sweep, candidates, chosen, best, rows, seeds=SELECTION_SEEDS, repo=None):
    """The JSON written into the repository: rule, candidates (opts and validation numbers),
    the best, the chosen one and its keys."""
    opts = {c["tag"]: c["opts"] for c in candidates}
    return OrderedDict(
        rule=RULE, selection_seeds=list(seeds), held_out_seeds=list(HELD_OUT_SEEDS), sweep=sweep,
        written=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        code_commit=git_commit(repo) if repo else None,
        best=best, chosen=chosen, chosen_opts=opts[chosen],
        note=("the best and the chosen differ: the best's lead is within two standard errors, so the simpler "
              "candidate was taken" if best != chosen else "the best is chosen"),
        candidates=OrderedDict((t, OrderedDict(opts=opts[t], **rows[t])) for t in rows))


def write_selection(path, record):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def read_selection(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return None
