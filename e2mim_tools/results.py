"""Results of the benchmark protocols: reading runs, aggregating seeds, building tables.

Runs are found by their folder (DESIGN §2 output tree), under one or more roots:

  base-to-new  .../base2new/{train_base,test_base,test_new}/<dataset>/shots_<K>[...]/<Trainer>/<cfg>/seed<S>
  cross-data.  .../imagenet/<Trainer>/<cfg>_<K>shots/seed<S>                  (source: ImageNet, or xd_source)
               .../evaluation/<Trainer>/<cfg>_<K>shots/<dataset>/seed<S>      (targets; the ImageNet
               variants imagenetv2, imagenet_sketch, imagenet_a, imagenet_r make the DG table)
  few-shot     .../fewshot/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>
               .../<dataset>/<Trainer>/<cfg>_<K>shots/nctx<N>_csc<C>_ctp<P>/seed<S>  (CoOp's main.sh)

A run's accuracy comes from its results.json (our runs) or, for runs made with the published
repositories, from Dassl's log.txt: the LAST "=> result" block after "Finish training" (or
"Finished training"), or the last one of an evaluation-only log. Blocks before that marker
are validation results; a training log without it is an unfinished run (several published
parsers grep a marker the log never contains and read nothing, or the wrong block).

Aggregation: per (method, dataset) the mean and standard deviation over seeds (population
std, ddof=0, as CoOp's parse_test_res.py; ``ddof=1`` on request). A cell with fewer seeds
than expected is flagged and every missing run is listed; averages over datasets are only
given when every cell is complete (or, flagged, with ``partial=True``). The base-to-new
average row averages base and new over datasets first (each dataset's mean over its seeds)
and takes the HM of those averages, not the mean of per-dataset HMs.
"""
import csv
import io
import json
import os
import re
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np


def harmonic_mean(base, new):
    """HM = 2*b*n/(b+n), the base-to-new summary; 0 when both are 0."""
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def read_result(output_dir):
    path = os.path.join(output_dir, "results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


# ---- datasets and published numbers ----------------------------------------------------
# yaml name -> (DATASET.NAME, name in tables)
DATASETS = OrderedDict([
    ("imagenet", ("ImageNet", "ImageNet")),
    ("caltech101", ("Caltech101", "Caltech101")),
    ("oxford_pets", ("OxfordPets", "OxfordPets")),
    ("stanford_cars", ("StanfordCars", "StanfordCars")),
    ("oxford_flowers", ("OxfordFlowers", "Flowers102")),
    ("food101", ("Food101", "Food101")),
    ("fgvc_aircraft", ("FGVCAircraft", "FGVCAircraft")),
    ("sun397", ("SUN397", "SUN397")),
    ("dtd", ("DescribableTextures", "DTD")),
    ("eurosat", ("EuroSAT", "EuroSAT")),
    ("ucf101", ("UCF101", "UCF101")),
    ("imagenetv2", ("ImageNetV2", "ImageNet-V2")),
    ("imagenet_sketch", ("ImageNetSketch", "ImageNet-Sketch")),
    ("imagenet_a", ("ImageNetA", "ImageNet-A")),
    ("imagenet_r", ("ImageNetR", "ImageNet-R")),
])
BASE2NEW_DATASETS = list(DATASETS)[:11]
XD_TARGETS = BASE2NEW_DATASETS[1:]
DG_TARGETS = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
XD_SOURCE = "imagenet"
FEWSHOT_SHOTS = [1, 2, 4, 8, 16]
DEFAULT_SEEDS = [1, 2, 3]

# DESIGN §7: base-to-new, ViT-B/16, average over the 11 datasets.
REPORTED_BASE2NEW = [
    ("CLIP", 69.34, 74.22, 71.70, "CoCoOp / MaPLe READMEs"),
    ("CoOp", 82.69, 63.22, 71.66, "CoCoOp / MaPLe READMEs"),
    ("CoCoOp", 80.47, 71.69, 75.83, "CoCoOp / MaPLe READMEs"),
    ("ProGrad", 82.48, 70.75, 76.16, "KgCoOp README"),
    ("KgCoOp", 80.73, 73.60, 77.00, "KgCoOp README"),
    ("MaPLe", 82.28, 75.14, 78.55, "MaPLe README"),
    ("PromptSRC", 84.26, 76.10, 79.97, "PromptSRC README"),
]


def display_name(dataset):
    return DATASETS[dataset][1] if dataset in DATASETS else dataset


def dataset_order(names):
    known = [d for d in DATASETS if d in names]
    return known + sorted(n for n in names if n not in DATASETS)


# ---- Dassl logs --------------------------------------------------------------------------
_FINISH = ("Finish training", "Finished training")
_PROGRESS = re.compile(r"^epoch \[\d+/\d+\] batch \[\d+/\d+\]")
_METRIC = re.compile(r"^\* ([a-z_0-9]+): ([-+\d.,eE]+)%?$")


def parse_dassl_log(text):
    """The test result of a Dassl-style log, or None if the run did not finish.

    Returns {accuracy, error, macro_f1, total, correct} (those present) from the last
    "=> result" block after the last "Finish training"/"Finished training" line, or from
    the last block of an evaluation-only log (``eval_only: True`` in its arguments, or no
    training progress lines at all)."""
    lines = [ln.strip() for ln in text.splitlines()]
    finish = max((i for i, ln in enumerate(lines) if ln in _FINISH), default=None)
    if finish is not None:
        start = finish + 1
    elif "eval_only: True" in lines or not any(_PROGRESS.match(ln) for ln in lines):
        start = 0
    else:
        return None  # training that never finished: its result blocks are validation ones
    blocks = [i for i in range(start, len(lines)) if lines[i] == "=> result"]
    if not blocks:
        return None
    out = {}
    for ln in lines[blocks[-1] + 1:]:
        m = _METRIC.match(ln)
        if not m:
            break
        value = m.group(2).replace(",", "")
        out[m.group(1)] = int(value) if m.group(1) in ("total", "correct") else float(value)
    return out if "accuracy" in out else None


def log_files(directory):
    """log.txt and Dassl's timestamped log.txt-YYYY-MM-DD-HH-MM-SS, oldest first."""
    names = [f for f in os.listdir(directory) if f == "log.txt" or f.startswith("log.txt-")]
    return [os.path.join(directory, f) for f in sorted(names, key=lambda f: (f != "log.txt", f))]


def read_run_result(directory):
    """(result dict, source) for a run folder, or (None, None) when it has no result yet.
    results.json wins; otherwise the newest log with a finished result."""
    res = read_result(directory)
    if res is not None and "accuracy" in res:
        return res, "results.json"
    for path in reversed(log_files(directory)):
        with open(path, errors="replace") as f:
            res = parse_dassl_log(f.read())
        if res is not None:
            return res, os.path.basename(path)
    return None, None


# ---- finding runs --------------------------------------------------------------------------
_SEG = r"[^/]+"
PATTERNS = [
    # (protocol, regex, format of the folder for listing missing runs)
    ("base2new", re.compile(rf"^(?P<prefix>(?:.*/)?)base2new/(?P<phase>train_base|test_base|test_new)/"
                            rf"(?P<dataset>{_SEG})/(?P<shots_seg>shots_(?P<shots>\d+)[^/]*)/(?P<trainer>{_SEG})/"
                            rf"(?P<cfg>{_SEG})/seed(?P<seed>\d+)$"),
     "{prefix}base2new/{phase}/{dataset}/{shots_seg}/{trainer}/{cfg}/seed{seed}"),
    ("xd", re.compile(rf"^(?P<prefix>(?:.*/)?)evaluation/(?P<trainer>{_SEG})/(?P<cfg>{_SEG})_(?P<shots>\d+)shots/"
                      rf"(?P<dataset>{_SEG})/seed(?P<seed>\d+)$"),
     "{prefix}evaluation/{trainer}/{cfg}_{shots}shots/{dataset}/seed{seed}"),
    ("fewshot", re.compile(rf"^(?P<prefix>(?:.*/)?)fewshot/(?P<dataset>{_SEG})/shots_(?P<shots>\d+)/"
                           rf"(?P<trainer>{_SEG})/(?P<cfg>{_SEG})/seed(?P<seed>\d+)$"),
     "{prefix}fewshot/{dataset}/shots_{shots}/{trainer}/{cfg}/seed{seed}"),
    ("xd_source", re.compile(rf"^(?P<prefix>(?:.*/)?)(?P<dataset>{_SEG})/(?P<trainer>{_SEG})/"
                             rf"(?P<cfg>{_SEG})_(?P<shots>\d+)shots/seed(?P<seed>\d+)$"),
     "{prefix}{dataset}/{trainer}/{cfg}_{shots}shots/seed{seed}"),
    ("coop_fewshot", re.compile(rf"^(?P<prefix>(?:.*/)?)(?P<dataset>{_SEG})/(?P<trainer>{_SEG})/(?P<cfg0>{_SEG})_"
                                rf"(?P<shots>\d+)shots/(?P<variant>nctx{_SEG})/seed(?P<seed>\d+)$"),
     "{prefix}{dataset}/{trainer}/{cfg0}_{shots}shots/{variant}/seed{seed}"),
]
FORMATS = {name: fmt for name, _, fmt in PATTERNS}


@dataclass
class Run:
    protocol: str            # base2new | xd | fewshot
    role: str                # base | new (base2new); source | target (xd); test (fewshot)
    dataset: str             # yaml name, from the folder
    trainer: str
    cfg: str
    shots: int
    seed: int
    path: str
    accuracy: Optional[float] = None
    source: Optional[str] = None   # results.json or the log file it came from
    fields: dict = field(default_factory=dict, repr=False)
    fmt: str = field(default="", repr=False)

    @property
    def finished(self):
        return self.accuracy is not None

    def where(self, fmt=None, **changes):
        """The folder of the same run with another dataset/seed/phase/shots (or, with
        ``fmt``, the same fields in another protocol's folder layout)."""
        f = dict(self.fields)
        f.update({k: str(v) for k, v in changes.items()})
        if "shots" in changes and "shots_seg" in f:
            f["shots_seg"] = f"shots_{changes['shots']}"
        return (fmt or self.fmt).format(**f)


def classify(path):
    """A Run (without its result) for a run folder path, or None if it is no protocol's."""
    p = path.replace(os.sep, "/").rstrip("/")
    for protocol, rx, fmt in PATTERNS:
        m = rx.match(p)
        if not m:
            continue
        f = m.groupdict()
        if protocol == "base2new":
            role = "new" if f["phase"] == "test_new" else "base"
        elif protocol == "xd":
            role = "target"
        elif protocol == "xd_source":
            protocol, role = "xd", "source"
        else:
            role = "test"
        if protocol == "coop_fewshot":
            protocol, f["cfg"] = "fewshot", f"{f['cfg0']}/{f['variant']}"
        return Run(protocol, role, f["dataset"], f["trainer"], f["cfg"], int(f["shots"]), int(f["seed"]),
                   path, fields={k: v for k, v in f.items() if v is not None}, fmt=fmt)
    return None


def find_runs(roots):
    """Every run folder (seed<S>) under the roots, classified and with its result read."""
    runs = []
    for root in [roots] if isinstance(roots, str) else roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            if not re.fullmatch(r"seed\d+", os.path.basename(dirpath)):
                continue
            dirnames[:] = []  # nothing protocol-level below a run folder
            run = classify(os.path.normpath(dirpath))
            if run is None:
                continue
            res, src = read_run_result(dirpath)
            if res is not None:
                run.accuracy, run.source = float(res["accuracy"]), src
            runs.append(run)
    return runs


# ---- aggregation -----------------------------------------------------------------------
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


# Table order: baselines in publication order, then unknown trainers, ours last.
METHOD_ORDER = ["ZeroshotCLIP", "ZeroshotCLIP2", "CoOp", "CoCoOp", "ProGrad", "KgCoOp", "MaPLe", "PromptSRC", "E2MIM"]


def _method_key(trainer):
    if trainer in METHOD_ORDER:
        return METHOD_ORDER.index(trainer)
    return METHOD_ORDER.index("E2MIM") - 0.5


def _by_method(runs):
    groups = OrderedDict()
    for r in sorted(runs, key=lambda r: (_method_key(r.trainer), r.trainer, r.cfg)):
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
    if reported:
        for name, b, n, h, _ in REPORTED_BASE2NEW:
            table_rows.append(["Average", f"{name} (reported)", Cell(b, reported=True), Cell(n, reported=True),
                               Cell(h, reported=True)])
    for i, d in enumerate(datasets):
        for name, rows in per_method.items():
            _, b, n = rows[i]
            table_rows.append([display_name(d), name, b, n, hm_cell(b, n)])
    notes = [f"Average: base and new averaged over {len(datasets)} datasets (each the mean over seeds "
             f"{', '.join(map(str, seeds))}), HM of those averages."]
    if reported:
        notes.append("(reported): published averages over the 11 datasets, ViT-B/16 (" +
                     "; ".join(f"{n}: {src}" for n, *_, src in REPORTED_BASE2NEW) + ").")
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
                        f"{', '.join(map(str, seeds))}."]), missing


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
                 notes=[f"Mean ± std over seeds {', '.join(map(str, seeds))}; Average over "
                        f"{len(datasets)} datasets. 0 shots: zero-shot CLIP."]), missing


def build_report(roots, seeds=None, datasets=None, xd_datasets=None, dg_datasets=None, shots=None, methods=None,
                 tables=("base2new", "xd", "dg", "fewshot"), ddof=0, partial=False, reported=True,
                 xd_source=XD_SOURCE):
    seeds = list(seeds or DEFAULT_SEEDS)
    runs = _select(find_runs(roots), methods)
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
    unfinished = sorted(r.path for r in runs if not r.finished)
    missing = [m for m in dict.fromkeys(missing) if m not in unfinished]
    return Report(out, missing, unfinished, runs)


# ---- rendering ---------------------------------------------------------------------------
def fmt_cell(c, fmt="md"):
    if c is None or isinstance(c, str):
        return _escape(c or "", fmt)
    if c.empty:
        return "n/a*" if c.flagged else "n/a"
    pm = " $\\pm$ " if fmt == "latex" else " ± "
    s = f"{c.mean:.2f}" + (f"{pm}{c.std:.2f}" if c.std is not None and c.n > 1 else "")
    if c.flagged:
        s += f" ({c.n}/{c.expected})*" if c.expected else "*"
    return s


def _escape(s, fmt):
    if fmt != "latex":
        return s
    for a, b in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("%", "\\%"), ("&", "\\&"), ("#", "\\#")):
        s = s.replace(a, b)
    return s


def _footer(report, fmt):
    lines = []
    if any(isinstance(c, Cell) and c.flagged for t in report.tables for row in t.rows for c in row):
        lines.append("* incomplete: fewer seeds (or datasets) than expected; (n/m) = seeds found / expected. "
                     "Averages over incomplete cells are not given (see the missing runs below).")
    if report.unfinished:
        lines.append(f"Unfinished runs (folder exists, no result yet): {len(report.unfinished)}")
        lines += [f"  {p}" for p in report.unfinished]
    if report.missing:
        lines.append(f"Missing runs: {len(report.missing)}")
        lines += [f"  {p}" for p in report.missing]
    return lines


def render_markdown(report):
    out = []
    for t in report.tables:
        out.append(f"### {t.title}\n")
        out.append("| " + " | ".join(t.columns) + " |")
        out.append("|" + "|".join("---" if i < t.n_keys else "---:" for i in range(len(t.columns))) + "|")
        for row in t.rows:
            out.append("| " + " | ".join(fmt_cell(c) for c in row) + " |")
        out.append("")
        out += t.notes
        out.append("")
    out += _footer(report, "md")
    return "\n".join(out).rstrip() + "\n"


def render_latex(report):
    out = []
    for t in report.tables:
        out.append(f"% {t.title}")
        out.append("\\begin{tabular}{" + "l" * t.n_keys + "c" * (len(t.columns) - t.n_keys) + "}")
        out.append("\\toprule")
        out.append(" & ".join(_escape(c, "latex") for c in t.columns) + " \\\\")
        out.append("\\midrule")
        prev = None
        for row in t.rows:
            if t.n_keys > 1 and prev is not None and row[0] != prev:
                out.append("\\midrule")
            prev = row[0]
            out.append(" & ".join(fmt_cell(c, "latex") for c in row) + " \\\\")
        out.append("\\bottomrule")
        out.append("\\end{tabular}")
        out += [f"% {n}" for n in t.notes]
        out.append("")
    out += [f"% {ln}" for ln in _footer(report, "latex")]
    return "\n".join(out).rstrip() + "\n"


def render_csv(report):
    """Long format: one row per (table, row keys, column), numbers unformatted."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "dataset", "method", "column", "mean", "std", "n_seeds", "expected", "complete", "reported"])
    for t in report.tables:
        for row in t.rows:
            keys = list(row[:t.n_keys])
            dataset, method = (keys + [""])[:2] if t.n_keys > 1 else ("", keys[0])
            for col, c in zip(t.columns[t.n_keys:], row[t.n_keys:]):
                if c is None:
                    continue
                w.writerow([t.title, dataset, method, col, "" if c.empty else f"{c.mean:.4f}",
                            "" if c.std is None else f"{c.std:.4f}", c.n, c.expected, int(not c.flagged),
                            int(c.reported)])
    for p in report.unfinished:
        w.writerow(["unfinished", "", "", p, "", "", "", "", "", ""])
    for p in report.missing:
        w.writerow(["missing", "", "", p, "", "", "", "", "", ""])
    return buf.getvalue()


RENDERERS = {"md": render_markdown, "latex": render_latex, "csv": render_csv}
EXTENSIONS = {"md": ".md", "latex": ".tex", "csv": ".csv"}
