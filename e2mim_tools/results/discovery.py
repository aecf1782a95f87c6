"""Finding run folders (seed<S>) under output roots and reading their results.

Layouts read (below any prefix): the output tree the protocol scripts write
(e2mim_tools.protocols.LAYOUTS; base-to-new also with test_base and a suffix after
shots_<K>), and CoOp's own few-shot layout (its scripts/coop/main.sh):

  <dataset>/<Trainer>/<cfg>_<K>shots/nctx<N>_csc<C>_ctp<P>/seed<S>

A run's accuracy comes from its results.json (our runs) or, for runs made with the
published repositories, from Dassl's log.txt (e2mim_tools.results.dassl_log). Its shots come
from results.json too where the run trained few-shot (trained_shots); the folder's name only
places it. A folder this project wrote (it holds the output-folder lock or a checkpoint
manifest) is read from results.json only: its log's last result block may be a validation one
of a run killed during its final test. A results.json that cannot be read, or whose trainer,
dataset, seed or subsample contradicts the folder it is in, is a *flagged* run: never
averaged, listed with the reason.
"""
import json
import os
import re
from dataclasses import dataclass, field
from typing import Optional

from e2mim_engine.run import LOCK_FILE, MANIFEST

from ..protocols import DATASETS, LAYOUTS
from .dassl_log import log_files, parse_dassl_log

_SEG = r"[^/]+"
_NUM = r"\d+"


def _layout(layout, **groups):
    """(regex, format) of a folder layout: each {field} a named group (one path segment, or
    the regex given), after any prefix; the format rebuilds the folder from the groups."""
    parts = re.split(r"\{(\w+)\}", layout)
    rx = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{groups.get(p, _SEG)})" for i, p in enumerate(parts))
    return re.compile(rf"^(?P<prefix>(?:.*/)?){rx}$"), "{prefix}" + layout


def _pattern(protocol, layout, **groups):
    return (protocol, *_layout(layout, seed=_NUM, shots=_NUM, **groups))


PATTERNS = [  # (protocol, regex, format of the folder for listing missing runs); the first match wins
    _pattern("base2new", LAYOUTS["base2new"].replace("shots_{shots}", "shots_{shots}{shots_tail}"),
             phase="train_base|test_base|test_new", shots_tail="[^/]*"),
    _pattern("xd", LAYOUTS["xd"]),
    _pattern("fewshot", LAYOUTS["fewshot"]),
    _pattern("xd_source", LAYOUTS["xd_source"]),
    _pattern("coop_fewshot", "{dataset}/{trainer}/{cfg0}_{shots}shots/{variant}/seed{seed}", variant=f"nctx{_SEG}"),
]
FORMATS = {name: fmt for name, _, fmt in PATTERNS}


class CorruptResult(ValueError):
    """A results.json that is not a JSON object with a numeric accuracy."""


def read_result(output_dir):
    """The run's results.json as a dict, None when there is none; CorruptResult when it
    cannot be read (half-written, edited by hand, not a result)."""
    path = os.path.join(output_dir, "results.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            res = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CorruptResult(f"{path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(res, dict) or not isinstance(res.get("accuracy"), (int, float)) \
            or isinstance(res.get("accuracy"), bool):
        raise CorruptResult(f"{path} holds no numeric 'accuracy' (not a result of a run)")
    return res


def written_by_project(directory):
    """True for a run folder this project's train.py wrote (lock file or manifest)."""
    return any(os.path.exists(os.path.join(directory, f)) for f in (LOCK_FILE, MANIFEST))


def read_run_result(directory):
    """(result dict, source) for a run folder, or (None, None) when it has no result yet.
    results.json wins; otherwise, for a folder of the published code, the newest log with a
    finished test result. Raises CorruptResult for a results.json that cannot be read."""
    res = read_result(directory)
    if res is not None:
        return res, "results.json"
    if written_by_project(directory):
        return None, None
    for path in reversed(log_files(directory)):
        with open(path, errors="replace") as f:
            res = parse_dassl_log(f.read())
        if res is not None:
            return res, os.path.basename(path)
    return None, None


def identity_conflicts(run, res):
    """"field: folder X, results.json Y" for every identity field of ``res`` (trainer, dataset,
    seed, subsample) that contradicts the folder ``run`` was found in (fields the results do
    not hold are not compared)."""
    expect = {"trainer": run.trainer, "seed": run.seed}
    if run.dataset in DATASETS:
        expect["dataset"] = DATASETS[run.dataset][0]
    if run.protocol == "base2new":
        expect["subsample"] = run.role
    elif run.protocol in ("fewshot", "xd"):
        expect["subsample"] = "all"
    # (shots are not compared: a run's shots are read from its results.json, trained_shots)
    return [f"{k}: folder {v!r}, results.json {res[k]!r}" for k, v in expect.items()
            if k in res and res[k] != v]


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
    problem: Optional[str] = None  # why its result is not used (corrupt, contradicts its folder)
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


def trained_shots(result, folder_shots):
    """The training images per class a run used: results.json's ``shots`` (DATASET.NUM_SHOTS
    of the run) where it is a few-shot value (> 0), else the folder's (an evaluation of a
    trained model records its own NUM_SHOTS, -1; zero-shot runs and Dassl logs none)."""
    shots = result.get("shots")
    return shots if isinstance(shots, int) and not isinstance(shots, bool) and shots > 0 else folder_shots


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
            try:
                res, src = read_run_result(dirpath)
            except CorruptResult as e:
                run.problem = str(e)
                runs.append(run)
                continue
            conflicts = identity_conflicts(run, res) if src == "results.json" else []
            if conflicts:
                run.problem = (f"{os.path.join(dirpath, 'results.json')} contradicts its folder ("
                               + "; ".join(conflicts) + ")")
            elif res is not None:
                run.accuracy, run.source = float(res["accuracy"]), src
                run.shots = trained_shots(res, run.shots)
            runs.append(run)
    return runs
