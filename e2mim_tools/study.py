"""The E2MIM study's tables (docs/METHOD.md): base / new / HM per method and variant with mean ±
std over seeds, the base classes' validation accuracy the defaults were chosen by, and the
last epoch's diagnostics (how alike the learned class features are, MI estimates, each loss
term's share of the prompt gradient).

  e2mim-study output/study                      # every base-to-new run below the folder
  e2mim-study output/study --dataset compworld_shift --columns class_cos view_cos
  (or python -m e2mim_tools.study ...)

Rows are (trainer, cfg folder); a variant of a sweep is its own row through its `tag`.
HM is computed per seed, then averaged (as the demo does); val is the base classes'
validation accuracy (results.json "val_accuracy", written with TEST.REPORT_VAL True).
"""
import argparse
import statistics
from collections import OrderedDict, defaultdict

from tabulate import tabulate

from e2mim_tools.results import find_runs, harmonic_mean, read_result

DEFAULT_COLUMNS = ("class_cos", "view_cos", "mi", "mi_indep", "grad_share_mi", "grad_share_mix")


def fmt(values, digits=1):
    values = [v for v in values if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f}"


def collect(root, dataset=None):
    """{dataset: {(trainer, cfg): {seed: record}}} of finished base-to-new pairs."""
    runs = [r for r in find_runs(root) if r.protocol == "base2new" and r.finished]
    new = {(r.dataset, r.trainer, r.cfg, r.seed): r for r in runs if r.role == "new"}
    out = defaultdict(lambda: defaultdict(dict))
    for r in runs:
        if r.role != "base" or (dataset and r.dataset != dataset):
            continue
        n = new.get((r.dataset, r.trainer, r.cfg, r.seed))
        if n is None:
            continue
        res = read_result(r.path) or {}
        diag = (res.get("diagnostics") or [{}])[-1]
        out[r.dataset][(r.trainer, r.cfg)][r.seed] = dict(
            base=r.accuracy, new=n.accuracy, hm=harmonic_mean(r.accuracy, n.accuracy),
            val=res.get("val_accuracy"), diag=diag)
    return out


def table(rows, columns):
    body = []
    for (trainer, cfg), seeds in rows.items():
        recs = list(seeds.values())
        line = [trainer, cfg, len(recs)] + [fmt([r[k] for r in recs]) for k in ("base", "new", "hm", "val")]
        line += [fmt([r["diag"].get(c) for r in recs], 3 if not c.startswith("grad_share") else 2) for c in columns]
        body.append(line)
    return tabulate(body, headers=["trainer", "variant", "seeds", "base", "new", "HM", "val (base)"] + list(columns),
                    tablefmt="github")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="output folder holding base2new/train_base and base2new/test_new")
    p.add_argument("--dataset", help="only this dataset (folder name, e.g. compworld_shift)")
    p.add_argument("--columns", nargs="*", default=list(DEFAULT_COLUMNS),
                   help="diagnostics (last epoch) shown per row; default: %(default)s")
    a = p.parse_args(argv)
    found = collect(a.root, a.dataset)
    if not found:
        raise SystemExit(f"no finished base-to-new pair (train_base with its test_new) under {a.root}")
    for dataset, rows in sorted(found.items()):
        print(f"\n## {dataset}: base / new / HM (mean ± population std over seeds), base-class validation "
              f"accuracy, last-epoch diagnostics\n")
        print(table(OrderedDict(sorted(rows.items())), a.columns))


if __name__ == "__main__":
    main()
