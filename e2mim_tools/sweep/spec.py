"""A sweep as data: the sweep file (YAML) or flags, and its expansion into runs.

Every run is one ``train.py`` command into one folder of the output tree of
``e2mim_tools.protocols.LAYOUTS``, with the arguments the bash protocol scripts pass (so a
sweep and ``scripts/<method>/<protocol>.sh`` write the same folders with the same commands).
"""
import os
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import yaml

from e2mim_engine.errors import closest
from e2mim_tools import protocols as P

PROTOCOLS = ("base2new", "xd", "dg", "fewshot")
SLURM_KEYS = ("partition", "timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb", "account", "qos",
              "constraint", "array_parallelism", "setup", "additional_parameters", "max_num_timeout")
TOP_KEYS = ("name", "data", "output", "backbone", "seeds", "protocols", "methods", "datasets", "xd_source",
            "xd_datasets", "dg_datasets", "shots", "fewshot_shots", "opts", "load_epoch", "backend", "local",
            "slurm", "configs", "python", "cfg")


LOCAL_KEYS = ("slots", "gpus", "per_gpu", "preload")
METHOD_KEYS = ("method", "trainer", "cfg", "cfg_b2n", "cfg_xd", "cfg_fs", "zero_shot", "opts", "label", "tag",
               "datasets", "seeds")


class SweepError(Exception):
    """A mistake in the sweep file or flags (exit status 2, one message)."""


def _check_keys(where, given, known):
    """SweepError naming every unknown key of ``given`` and the closest valid one."""
    unknown = sorted(set(given) - set(known), key=str)
    if not unknown:
        return
    parts = []
    for k in unknown:
        hint = closest(k, known)
        parts.append(f"{k!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    raise SweepError(f"{where}: unknown key(s) {', '.join(parts)}. Valid keys: {', '.join(known)}")


def repo_configs():
    """configs/ of the checkout the project is installed from (editable install), or of the
    current folder."""
    here = os.path.join(os.getcwd(), "configs")
    if os.path.isdir(os.path.join(here, "trainers")):
        return here
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")


@dataclass
class MethodSpec:
    label: str           # shown in status and logs
    trainer: str
    cfg: dict            # protocol family (b2n | xd | fs) -> cfg name (configs/trainers/<trainer>/<cfg>.yaml)
    zero_shot: bool
    opts: List[str] = field(default_factory=list)   # KEY VALUE ... after the protocol's pairs
    tag: Optional[str] = None                        # folder name in place of the cfg name
    datasets: List[str] = field(default_factory=list)  # only these datasets (and xd/dg targets)
    seeds: List[int] = field(default_factory=list)     # only these seeds

    def folder(self, family):
        return self.tag or self.cfg[family]


@dataclass
class Run:
    key: str                   # the run folder relative to the output root (unique)
    protocol: str              # base2new | xd | dg | fewshot (xd_source runs: xd or dg)
    kind: str                  # train | eval (eval: nothing is trained)
    method: str                # the method's label
    dataset: str
    seed: int
    shots: int
    directory: str             # absolute run folder
    args: List[str]            # train.py arguments
    deps: List[str] = field(default_factory=list)   # keys of runs that must finish first
    expect: dict = field(default_factory=dict)      # identity fields results.json must hold

    def command(self, python=None):
        return [python or sys.executable, "-m", "e2mim_tools.train"] + self.args


@dataclass
class Sweep:
    name: str
    data: str
    output: str
    methods: List[MethodSpec]
    protocols: List[str]
    seeds: List[int]
    datasets: List[str]
    xd_source: str
    xd_datasets: List[str]
    dg_datasets: List[str]
    shots: int
    fewshot_shots: List[int]
    backbone: str = ""
    opts: List[str] = field(default_factory=list)
    load_epoch: Optional[int] = None
    backend: str = "local"
    local: dict = field(default_factory=dict)
    slurm: dict = field(default_factory=dict)
    configs: str = ""
    dataset_files: dict = field(default_factory=dict)   # dataset name -> yaml path
    python: str = ""

    @property
    def folder(self):
        """Where the sweep keeps its state, logs, tables and plots."""
        return os.path.join(self.output, "sweeps", self.name)


def _opts(value, where):
    """KEY VALUE pairs from a list or a mapping, as strings."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.split()
    if isinstance(value, dict):
        value = [x for kv in value.items() for x in kv]
    out = [str(v) for v in value]
    if len(out) % 2:
        raise SweepError(f"{where}: KEY VALUE pairs expected, got an odd number of words: {' '.join(out)}")
    return out


def _ints(value, where):
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        value = str(value).replace(",", " ").split()
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise SweepError(f"{where}: a list of integers expected, got {value!r}") from None


def _names(value):
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    return [str(v) for v in value]


def _method(entry, i, cfg=None):
    """A method from a methods-table folder name or a mapping (method / trainer, cfg, opts, label, tag);
    ``cfg``: the cfg of every protocol for names without one (the scripts' CFG)."""
    if isinstance(entry, str):
        entry = {"method": entry}
    if cfg and not any(k in entry for k in ("cfg", "cfg_b2n", "cfg_xd", "cfg_fs")):
        entry = dict(entry, cfg=cfg)
    if not isinstance(entry, dict):
        raise SweepError(f"methods[{i}]: a name of the methods table or a mapping expected, got {entry!r}")
    _check_keys(f"methods[{i}]", entry, METHOD_KEYS)
    base = None
    if "method" in entry:
        try:
            base = P.method(entry["method"])
        except KeyError as e:
            raise SweepError(f"methods[{i}]: {e.args[0]}") from None
    elif "trainer" in entry:
        base = next((m for m in P.METHODS if m.trainer == entry["trainer"]), None)
    else:
        raise SweepError(f"methods[{i}]: give `method` (a methods-table name) or `trainer` and `cfg`")
    trainer = entry.get("trainer") or base.trainer
    cfg = {}
    for fam, attr in (("b2n", "cfg_b2n"), ("xd", "cfg_xd"), ("fs", "cfg_fs")):
        cfg[fam] = entry.get(attr) or entry.get("cfg") or (getattr(base, attr) if base and base.trainer == trainer
                                                           else None)
        if not cfg[fam]:
            raise SweepError(f"methods[{i}]: no cfg for trainer {trainer} (set `cfg`)")
    zero_shot = bool(entry.get("zero_shot", base.zero_shot if base and base.trainer == trainer else False))
    # A tagged variant is named by its tag (its folder), so variants of one cfg need no label.
    tag = entry.get("tag")
    label = str(entry.get("label") or (f"{entry.get('method') or trainer}/{tag}" if tag else None)
                or entry.get("method") or f"{trainer}/{cfg['b2n']}")
    return MethodSpec(label, trainer, cfg, zero_shot, _opts(entry.get("opts"), f"methods[{i}].opts"),
                      entry.get("tag"), _names(entry.get("datasets") or []),
                      _ints(entry.get("seeds") or [], f"methods[{i}].seeds"))


def _dataset_file(name, configs, extra):
    if name in extra:
        return extra[name]
    path = os.path.join(configs, "datasets", f"{name}.yaml")
    if not os.path.isfile(path):
        valid = sorted(f[:-5] for f in os.listdir(os.path.join(configs, "datasets")) if f.endswith(".yaml"))
        raise SweepError(f"unknown dataset {name!r}: no {path}. Valid names: {' '.join(valid)} (or give a "
                         f"yaml path in the dataset list)")
    return path


def load(path=None, overrides=None, check_data=True):
    """The Sweep of a sweep file and/or flags (``overrides``: top-level keys, None = not given).
    ``check_data`` False: the dataset root need not exist (listing runs, status, tables)."""
    raw = {}
    base = os.getcwd()
    if path:
        try:
            with open(path) as f:
                raw = yaml.safe_load(f) or {}
        except OSError as e:
            raise SweepError(f"cannot read the sweep file {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise SweepError(f"the sweep file {path} is not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise SweepError(f"the sweep file {path} must hold a mapping of settings")
        base = os.path.dirname(os.path.abspath(path))
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        # flags are relative to the current folder, the file's settings to the file
        if k in ("data", "output", "configs"):
            v = os.path.abspath(os.path.expanduser(str(v)))
        elif k in ("datasets", "xd_datasets", "dg_datasets", "xd_source"):
            v = [os.path.abspath(d) if str(d).endswith((".yaml", ".yml")) else d for d in _names(v)]
        if isinstance(raw.get(k), dict) and isinstance(v, dict):
            raw[k] = dict(raw[k], **v)
        else:
            raw[k] = v
    _check_keys("sweep settings", raw, TOP_KEYS)
    for key, known in (("local", LOCAL_KEYS), ("slurm", SLURM_KEYS)):
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise SweepError(f"{key}: a mapping of settings expected, got {raw[key]!r}")
        _check_keys(key, raw.get(key) or {}, known)

    def rel(p):  # paths in the file are relative to it
        p = os.path.expanduser(str(p))
        return p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))

    if not raw.get("data"):
        raise SweepError("no dataset root: set `data:` in the sweep file or pass --data DIR")
    data = rel(raw["data"])
    if check_data and not os.path.isdir(data):
        raise SweepError(f"the dataset root {data} does not exist")
    configs = rel(raw["configs"]) if raw.get("configs") else repo_configs()
    protocols = _names(raw.get("protocols", PROTOCOLS))
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad:
        raise SweepError(f"unknown protocol(s) {' '.join(bad)} (known: {' '.join(PROTOCOLS)})")
    methods = [_method(e, i, raw.get("cfg")) for i, e in enumerate(raw.get("methods") or [m.folder for m in P.METHODS])]
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        raise SweepError(f"two methods share a label: {labels} (set `label`)")
    for fam in ("b2n", "xd", "fs"):
        seen = {}
        for m in methods:
            k = (m.trainer, m.folder(fam))
            if k in seen:
                raise SweepError(f"methods {seen[k]} and {m.label} would write the same folders "
                                 f"({k[0]}/{k[1]}): give one a `tag` (its folder name)")
            seen[k] = m.label
    extra = {}

    def datasets(key, default):
        out = []
        for d in _names(raw.get(key, default)):
            if d.endswith((".yaml", ".yml")):   # a dataset config outside configs/datasets
                name = os.path.splitext(os.path.basename(d))[0]
                extra[name] = rel(d)
                d = name
            out.append(d)
        return out

    sw = Sweep(
        name=str(raw.get("name") or (os.path.splitext(os.path.basename(path))[0] if path else "sweep")),
        data=data, output=rel(raw["output"]) if raw.get("output") else os.path.abspath("output"), methods=methods, protocols=protocols,
        seeds=_ints(raw.get("seeds", P.DEFAULT_SEEDS), "seeds"),
        datasets=datasets("datasets", P.BASE2NEW_DATASETS),
        xd_source=datasets("xd_source", [P.XD_SOURCE])[0],
        xd_datasets=datasets("xd_datasets", P.XD_TARGETS), dg_datasets=datasets("dg_datasets", P.DG_TARGETS),
        shots=_ints(raw.get("shots", P.SHOTS), "shots")[0],
        fewshot_shots=_ints(raw.get("fewshot_shots", P.FEWSHOT_SHOTS), "fewshot_shots"),
        backbone=str(raw.get("backbone") or ""), opts=_opts(raw.get("opts"), "opts"),
        load_epoch=raw.get("load_epoch"), backend=str(raw.get("backend") or "local"),
        local=dict(raw.get("local") or {}), slurm=dict(raw.get("slurm") or {}), configs=configs,
        python=str(raw.get("python") or ""))
    if sw.backend not in ("local", "slurm"):
        raise SweepError(f"unknown backend {sw.backend!r} (local or slurm)")
    used = set()
    if "base2new" in protocols or "fewshot" in protocols:
        used |= set(sw.datasets)
    if "xd" in protocols:
        used |= set(sw.xd_datasets) | {sw.xd_source}
    if "dg" in protocols:
        used |= set(sw.dg_datasets) | {sw.xd_source}
    sw.dataset_files = {d: _dataset_file(d, configs, extra) for d in sorted(used)}
    return sw


# ---- expansion -------------------------------------------------------------------------------
def read_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def _pair(opts, key):
    """The last value of KEY in KEY VALUE pairs (later pairs win, as in the config merge)."""
    vals = [opts[i + 1] for i in range(0, len(opts) - 1, 2) if opts[i] == key]
    return vals[-1] if vals else None


def load_epoch(sw, m, cfg_file):
    """The epoch a test run loads: the sweep's load_epoch, else OPTIM.MAX_EPOCH of the pairs,
    else of the cfg (what the bash scripts' load_epoch does)."""
    if sw.load_epoch is not None:
        return int(sw.load_epoch)
    ep = _pair(m.opts + sw.opts, "OPTIM.MAX_EPOCH")
    if ep is None:
        ep = (read_yaml(cfg_file).get("OPTIM") or {}).get("MAX_EPOCH")
    if ep is None:
        raise SweepError(f"cannot tell OPTIM.MAX_EPOCH of {cfg_file}; set load_epoch in the sweep")
    try:
        return int(ep)
    except ValueError:
        raise SweepError(f"OPTIM.MAX_EPOCH {ep!r} of {m.label} is not an integer") from None


def expand(sw) -> List[Run]:
    """Every run of the sweep, dependencies before dependents, each folder once (the xd and dg
    protocols share their source runs)."""
    runs = OrderedDict()
    out = sw.output

    def add(protocol, m, fam, dataset, seed, shots, directory, kind, pairs, extra=(), deps=(), subsample="all",
            set_shots=None):
        key = os.path.relpath(directory, out)
        if key in runs:
            return key
        cfg_file = os.path.join(sw.configs, "trainers", m.trainer, f"{m.cfg[fam]}.yaml")
        if not os.path.isfile(cfg_file):
            raise SweepError(f"no trainer config {cfg_file} (method {m.label})")
        args = ["--root", sw.data, "--seed", str(seed), "--trainer", m.trainer,
                "--dataset-config-file", sw.dataset_files[dataset], "--config-file", cfg_file,
                "--output-dir", directory]
        if sw.backbone:
            args += ["--backbone", sw.backbone]
        args += list(extra) + [str(x) for x in pairs] + m.opts + sw.opts
        expect = {"trainer": m.trainer, "seed": seed, "subsample": subsample}
        if set_shots is not None:
            expect["shots"] = set_shots
        runs[key] = Run(key, protocol, kind, m.label, dataset, seed, shots, directory, args, list(deps), expect)
        return key

    def path(layout, **f):
        return os.path.join(out, P.LAYOUTS[layout].format(**f))

    for proto in sw.protocols:
        for m in sw.methods:
            seeds = [s for s in sw.seeds if not m.seeds or s in m.seeds]
            dsets = [d for d in sw.datasets if not m.datasets or d in m.datasets]
            first = "eval" if m.zero_shot else "train"
            zs = ["--eval-only"] if m.zero_shot else []
            if proto == "base2new":
                cfg_file = os.path.join(sw.configs, "trainers", m.trainer, f"{m.cfg['b2n']}.yaml")
                for d in dsets:
                    for s in seeds:
                        f = dict(dataset=d, shots=sw.shots, trainer=m.trainer, cfg=m.folder("b2n"), seed=s)
                        tr = path("base2new", phase="train_base", **f)
                        k = add(proto, m, "b2n", d, s, sw.shots, tr, first,
                                ["DATASET.NUM_SHOTS", sw.shots, "DATASET.SUBSAMPLE_CLASSES", "base"], zs,
                                subsample="base", set_shots=sw.shots)
                        te = path("base2new", phase="test_new", **f)
                        pairs = ["DATASET.NUM_SHOTS", sw.shots, "DATASET.SUBSAMPLE_CLASSES", "new"]
                        if m.zero_shot:
                            add(proto, m, "b2n", d, s, sw.shots, te, "eval", pairs, zs, subsample="new",
                                set_shots=sw.shots)
                        else:
                            add(proto, m, "b2n", d, s, sw.shots, te, "eval", pairs,
                                ["--model-dir", tr, "--load-epoch", str(load_epoch(sw, m, cfg_file)), "--eval-only"],
                                deps=[k], subsample="new", set_shots=sw.shots)
            elif proto in ("xd", "dg"):
                cfg_file = os.path.join(sw.configs, "trainers", m.trainer, f"{m.cfg['xd']}.yaml")
                targets = [d for d in (sw.xd_datasets if proto == "xd" else sw.dg_datasets)
                           if not m.datasets or d in m.datasets]
                for s in seeds:
                    common = dict(trainer=m.trainer, cfg=m.folder("xd"), shots=sw.shots, seed=s)
                    src = path("xd_source", dataset=sw.xd_source, **common)
                    k = add(proto, m, "xd", sw.xd_source, s, sw.shots, src, first, ["DATASET.NUM_SHOTS", sw.shots],
                            zs, set_shots=sw.shots)
                    for d in targets:
                        te = path("xd", dataset=d, **common)
                        if m.zero_shot:
                            add(proto, m, "xd", d, s, sw.shots, te, "eval", [], zs)
                        else:
                            add(proto, m, "xd", d, s, sw.shots, te, "eval", [],
                                ["--model-dir", src, "--load-epoch", str(load_epoch(sw, m, cfg_file)), "--eval-only"],
                                deps=[k])
            else:  # fewshot
                shots = [0] if m.zero_shot else sw.fewshot_shots
                for d in dsets:
                    for k_ in dict.fromkeys(shots):
                        for s in seeds:
                            d_ = path("fewshot", dataset=d, shots=k_, trainer=m.trainer, cfg=m.folder("fs"), seed=s)
                            add(proto, m, "fs", d, s, k_, d_, first, [] if k_ == 0 else ["DATASET.NUM_SHOTS", k_], zs,
                                set_shots=None if k_ == 0 else k_)
    return list(runs.values())


# The one-job protocol scripts (their functions in scripts/lib/protocols.sh, SCRIPTS in
# e2mim_tools.protocols) -> (protocol, their arguments, the key prefix of their run in the
# expansion; None: the protocol's run without dependencies, the cross-dataset source).
JOBS = OrderedDict([
    ("b2n_train", ("base2new", ("DATASET", "SEED"), "base2new/train_base/")),
    ("b2n_test", ("base2new", ("DATASET", "SEED"), "base2new/test_new/")),
    ("xd_train", ("xd", ("SEED",), None)),
    ("xd_test", ("xd", ("DATASET", "SEED"), "evaluation/")),
    ("fewshot_job", ("fewshot", ("DATASET", "SHOTS", "SEED"), "fewshot/")),
])


def job_overrides(job, args):
    """The sweep settings that narrow a sweep to the runs of one job of a one-job script."""
    if job not in JOBS:
        raise SweepError(f"unknown job {job!r} (known: {', '.join(JOBS)})")
    protocol, names, _ = JOBS[job]
    if len(args) != len(names):
        raise SweepError(f"{job}: arguments {' '.join(names)} expected, got {' '.join(map(str, args)) or 'none'}")
    v = dict(zip(names, args))
    over = {"protocols": [protocol], "seeds": _ints([v["SEED"]], "SEED")}
    if protocol == "xd":
        over["xd_datasets"] = [v["DATASET"]] if "DATASET" in v else []
    elif "DATASET" in v:
        over["datasets"] = [v["DATASET"]]
    if "SHOTS" in v:
        over["fewshot_shots"] = _ints([v["SHOTS"]], "SHOTS")
    return over


def one_job(runs, job):
    """The run of ``job`` among the runs of a sweep narrowed by job_overrides."""
    prefix = JOBS[job][2]
    picked = [r for r in runs if (r.key.startswith(prefix) if prefix else not r.deps)]
    assert len(picked) == 1, [r.key for r in runs]
    return picked[0]


def chains(runs) -> List[Tuple[str, List[str]]]:
    """Runs grouped into chains: a run without dependencies followed by the runs that depend
    on it (what one SLURM array task runs in order)."""
    by_root = OrderedDict()
    for r in runs:
        root = r.deps[0] if r.deps else r.key
        by_root.setdefault(root, []).append(r.key)
    return list(by_root.items())


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def log_name(key):
    return _SAFE.sub("_", key.replace(os.sep, "__")) + ".log"
