"""Aggregation over seeds and datasets into the protocol tables.

Per (method, dataset) the mean and standard deviation over seeds (population std, ddof=0,
as CoOp's parse_test_res.py; ``ddof=1`` on request). A cell with fewer seeds than expected
is flagged and every missing run is listed; averages over datasets are only given when
every cell is complete (or, flagged, with ``partial=True``). The base-to-new average row
averages base and new over datasets first (each dataset's mean over its seeds) and takes
the HM of those averages, not the mean of per-dataset HMs.
"""
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ..protocols import BASE2NEW_DATASETS, DEFAULT_SEEDS, DG_TARGETS, METHODS, XD_SOURCE, dataset_order, display_name
from ..published import REPORTED_BASE2NEW
from .discovery import FORMATS, Run, find_runs


def harmonic_mean(base, new):
    """HM = 2*b*n/(b+n), the base-to-new summary; 0 when both are 0."""
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


@dataclass
class Cell:
    mean: Optional[float] = None
    std: Optional[float] = None
    n: int = 0
    expected: int = 0
    flagged: bool = False     # fewer seeds (or datasets) than expected
    reported: bool = False    # a published number

    @property
    def empty(self):
        return self.mean is None


def seed_cell(values, expected, ddof=0):
    """Mean and std over the seeds found; flagged when some expected seed is missing."""
    if not values:
        return Cell(expected=expected)
    std = float(np.std(values, ddof=ddof)) if len(values) > ddof else None
    return Cell(float(np.mean(values)), std, len(values), expected, flagged=len(values) < expected)


def average_cell(cells, partial=False):
    """Mean over datasets of per-dataset means: only over complete cells, unless partial."""
    done = [c for c in cells if not c.empty]
    complete = len(done) == len(cells) and not any(c.flagged for c in cells)
    if not done or not (complete or partial):
        return Cell(expected=len(cells), flagged=not complete)
    return Cell(float(np.mean([c.mean for c in done])), None, len(done), len(cells), flagged=not complete)


def hm_cell(base, new):
    if base.empty or new.empty:
        return Cell(flagged=base.flagged or new.flagged)
    return Cell(harmonic_mean(base.mean, new.mean), None, min(base.n, new.n), max(base.expected, new.expected),
                flagged=base.flagged or new.flagged, reported=base.reported and new.reported)


@dataclass
class Table:
    title: str
    columns: List[str]
    rows: list                # each: [key strings..., Cell...]
    n_keys: int = 2           # leading key columns
    notes: List[str] = field(default_factory=list)


@dataclass
class Report:
    tables: List[Table]
    missing: List[str]        # run folders that should exist and hold a result
    unfinished: List[str]     # run folders without a result yet
    runs: List[Run]
    flagged: List[str] = field(default_factory=list)  # results not used, each with the reason


def method_labels(runs):
    """'Trainer' when the trainer has one cfg in these runs, else 'Trainer/cfg'."""
    cfgs = defaultdict(set)
    for r in runs:
        cfgs[r.trainer].add(r.cfg)
    return {(r.trainer, r.cfg): r.trainer if len(cfgs[r.trainer]) == 1 else f"{r.trainer}/{r.cfg}" for r in runs}


def _select(runs, methods):
    if not methods:
        return runs
    return [r for r in runs if r.trainer in methods or f"{r.trainer}/{r.cfg}" in methods]


# Row order: the published baselines in publication order, then the methods table (ours
# among them), then any other trainer alphabetically.
METHOD_ORDER = list(dict.fromkeys([r.trainer for r in REPORTED_BASE2NEW] + [m.trainer for m in METHODS]))


def _method_key(trainer):
    return (METHOD_ORDER.index(trainer), "") if trainer in METHOD_ORDER else (len(METHOD_ORDER), trainer)


def _by_method(runs):
    groups = OrderedDict()
    for r in sorted(runs, key=lambda r: (_method_key(r.trainer), r.cfg)):
        groups.setdefault((r.trainer, r.cfg), []).append(r)
    return groups


def _values(runs, seeds, missing, template, fmt=None, **where):
    """Accuracies of the expected seeds; records each absent one's folder in ``missing``."""
    vals = []
    for s in seeds:
        found = [r for r in runs if r.seed == s and r.finished]
        if found:
            vals.append(found[0].accuracy)
        else:
            missing.append(template.where(fmt=fmt, seed=s, **where))
    return vals


def _seeds(seeds):
    return ", ".join(map(str, seeds))


def base2new_table(runs, seeds, datasets=None, ddof=0, partial=False, reported=True):
    runs = [r for r in runs if r.protocol == "base2new"]
    if not runs:
        return None, []
    datasets = datasets or dataset_order({r.dataset for r in runs})
    labels = method_labels(runs)
    missing, per_method = [], OrderedDict()
    for key, mruns in _by_method(runs).items():
        tmpl = mruns[0]
        rows = []
        for d in datasets:
            cells = {}
            for role, phases in (("base", ("test_base", "train_base")), ("new", ("test_new",))):
                rr = [r for r in mruns if r.dataset == d and r.role == role]
                # test_base (if run) over train_base's final test
                rr.sort(key=lambda r: phases.index(r.fields["phase"]))
                cells[role] = seed_cell(_values(rr, seeds, missing, tmpl, dataset=d, phase=phases[-1]),
                                        len(seeds), ddof)
            rows.append((d, cells["base"], cells["new"]))
        per_method[labels[key]] = rows
    table_rows = []
    for name, rows in per_method.items():
        b = average_cell([r[1] for r in rows], partial)
        n = average_cell([r[2] for r in rows], partial)
        table_rows.append(["Average", name, b, n, hm_cell(b, n)])
    others = [d for d in datasets if d not in BASE2NEW_DATASETS]
    # the published averages are over the 11 benchmarks: not a reference for other data
    show_reported = reported and not others
    if show_reported:
        for r in REPORTED_BASE2NEW:
            table_rows.append(["Average", f"{r.name} (reported)", Cell(r.base, reported=True),
                               Cell(r.new, reported=True), Cell(r.hm, reported=True)])
    for i, d in enumerate(datasets):
        for name, rows in per_method.items():
            _, b, n = rows[i]
            table_rows.append([display_name(d), name, b, n, hm_cell(b, n)])
    notes = [f"Average: base and new averaged over {len(datasets)} datasets (each the mean over seeds "
             f"{_seeds(seeds)}), HM of those averages."]
    if show_reported:
        notes.append("(reported): published averages over the 11 datasets, ViT-B/16 (" +
                     "; ".join(f"{r.name}: {r.source}" + (f", {r.note}" if r.note else "")
                               for r in REPORTED_BASE2NEW) + ").")
    elif reported:
        notes.append(f"Published averages left out: they are over the 11 benchmark datasets, and these runs "
                     f"are on {', '.join(display_name(d) for d in others)}.")
    return Table("Base-to-new generalization", ["dataset", "method", "base", "new", "HM"], table_rows,
                 notes=notes), missing


def _transfer_table(title, runs, seeds, targets, ddof, partial, source=XD_SOURCE):
    labels = method_labels(runs)
    missing, rows = [], []
    for key, mruns in _by_method(runs).items():
        tmpl = mruns[0]  # source and target folders share prefix, trainer, cfg and shots
        src = [r for r in mruns if r.role == "source" and r.dataset == source]
        src_cell = seed_cell(_values(src, seeds, missing, tmpl, FORMATS["xd_source"], dataset=source),
                             len(seeds), ddof)
        cells = []
        for d in targets:
            rr = [r for r in mruns if r.role == "target" and r.dataset == d]
            cells.append(seed_cell(_values(rr, seeds, missing, tmpl, FORMATS["xd"], dataset=d), len(seeds), ddof))
        rows.append([labels[key], src_cell, *cells, average_cell(cells, partial)])
    cols = ["method", f"{display_name(source)} (source)"] + [display_name(d) for d in targets] + ["Average"]
    return Table(title, cols, rows, n_keys=1,
                 notes=[f"Average over the {len(targets)} target datasets; mean ± std over seeds "
                        f"{_seeds(seeds)}."]), missing


def xd_tables(runs, seeds, xd_targets=None, dg_targets=None, ddof=0, partial=False, source=XD_SOURCE):
    runs = [r for r in runs if r.protocol == "xd"]
    runs = [r for r in runs if r.role == "target" or r.dataset == source]
    seen = {r.dataset for r in runs if r.role == "target"}
    tables, missing = [], []
    dg_known = set(DG_TARGETS)
    xd_t = xd_targets or dataset_order({d for d in seen if d not in dg_known})
    dg_t = dg_targets or dataset_order({d for d in seen if d in dg_known})
    for title, targets in ((f"Cross-dataset transfer (source: {display_name(source)})", xd_t),
                           (f"Domain generalization (source: {display_name(source)})", dg_t)):
        if not targets:
            continue
        sel = [r for r in runs if r.role == "source" or r.dataset in targets]
        t, m = _transfer_table(title, sel, seeds, targets, ddof, partial, source)
        tables.append(t)
        missing += [x for x in m if x not in missing]
    return tables, missing


def fewshot_table(runs, seeds, datasets=None, shots=None, ddof=0, partial=False):
    """Rows per (dataset, method), a column per shot count. A method is expected at every
    column except 0 shots, which only zero-shot runs (shots_0) fill; cells a method is not
    expected at stay blank."""
    runs = [r for r in runs if r.protocol == "fewshot"]
    if not runs:
        return None, []
    datasets = datasets or dataset_order({r.dataset for r in runs})
    columns = sorted(set(shots) if shots else {r.shots for r in runs})
    labels = method_labels(runs)
    missing, rows, avg_rows = [], [], []
    for key, mruns in _by_method(runs).items():
        zero_shot = {r.shots for r in mruns} == {0}
        expected = [k for k in columns if (k == 0) == zero_shot]
        per_col = defaultdict(list)
        for d in datasets:
            row = [display_name(d), labels[key]]
            for k in columns:
                if k not in expected:
                    row.append(None)
                    continue
                rr = [r for r in mruns if r.dataset == d and r.shots == k]
                c = seed_cell(_values(rr, seeds, missing, mruns[0], dataset=d, shots=k), len(seeds), ddof)
                per_col[k].append(c)
                row.append(c)
            rows.append(row)
        avg_rows.append(["Average", labels[key]] + [average_cell(per_col[k], partial) if k in expected else None
                                                    for k in columns])
    cols = ["dataset", "method"] + [f"{k} shots" for k in columns]
    return Table("Few-shot learning (all classes)", cols, avg_rows + rows,
                 notes=[f"Mean ± std over seeds {_seeds(seeds)}; Average over "
                        f"{len(datasets)} datasets. 0 shots: zero-shot CLIP."]), missing


def build_report(roots, seeds=None, datasets=None, xd_datasets=None, dg_datasets=None, shots=None, methods=None,
                 tables=("base2new", "xd", "dg", "fewshot"), ddof=0, partial=False, reported=True,
                 xd_source=XD_SOURCE):
    runs = _select(find_runs(roots), methods)
    # "found": the seeds of the runs there (a one-seed output is complete with one seed)
    seeds = sorted({r.seed for r in runs}) or DEFAULT_SEEDS if seeds == "found" else list(seeds or DEFAULT_SEEDS)
    out, missing = [], []
    if "base2new" in tables:
        t, m = base2new_table(runs, seeds, datasets, ddof, partial, reported)
        if t:
            out.append(t)
            missing += m
    if "xd" in tables or "dg" in tables:
        ts, m = xd_tables(runs, seeds, xd_datasets, dg_datasets, ddof, partial, xd_source)
        keep = [t for t in ts if ("xd" in tables and t.title.startswith("Cross")) or
                ("dg" in tables and t.title.startswith("Domain"))]
        out += keep
        missing += m if keep else []
    if "fewshot" in tables:
        t, m = fewshot_table(runs, seeds, datasets, shots, ddof, partial)
        if t:
            out.append(t)
            missing += m
    unfinished = sorted(r.path for r in runs if not r.finished and not r.problem)
    bad = sorted((r.path, r.problem) for r in runs if r.problem)
    missing = [m for m in dict.fromkeys(missing) if m not in unfinished and m not in dict(bad)]
    return Report(out, missing, unfinished, runs, [p for _, p in bad])
