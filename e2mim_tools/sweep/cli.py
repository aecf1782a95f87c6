"""e2mim-sweep: run a whole comparison (methods x protocols x datasets x seeds) on every
GPU of a workstation or on a SLURM cluster, then write the tables and plots.

  e2mim-sweep run configs/sweeps/paper.yaml --data $DATA --dry-run     # the runs and their commands
  e2mim-sweep run configs/sweeps/paper.yaml --data $DATA --slots 8     # 8 runs at a time on the visible GPUs
  e2mim-sweep run configs/sweeps/paper.yaml --data $DATA --backend slurm --partition gpu
  e2mim-sweep status configs/sweeps/paper.yaml --data $DATA
  e2mim-sweep report configs/sweeps/paper.yaml --data $DATA
  e2mim-sweep job b2n_train dtd 1 --data $DATA --methods coop   # one job's folder and command (bash)

Running the same command again skips finished runs (results.json), resumes interrupted ones
from their checkpoints and retries failed ones. Sweep files: docs/SWEEPS.md.
"""
import argparse
import json
import os
import shlex
import sys
import time

from .spec import JOBS, SweepError, expand, job_overrides, load, one_job
from .state import DONE, FAILED, collect, is_done, render_status

COMMANDS = ("run", "status", "report", "job")


def _common(p, sweep_file=True):
    if sweep_file:
        p.add_argument("sweep", nargs="?", help="the sweep file (YAML); flags override its settings")
    p.add_argument("--data", "--root", dest="data", help="dataset root")
    p.add_argument("--output", help="output root (default: output, relative to the sweep file)")
    p.add_argument("--name", help="the sweep's name: its folder is OUTPUT/sweeps/NAME (default: the file's name)")
    p.add_argument("--methods", nargs="+", help="methods-table names (zsclip coop ...)")
    p.add_argument("--protocols", nargs="+", help="base2new xd dg fewshot")
    p.add_argument("--datasets", nargs="+", help="base-to-new / few-shot datasets (yaml names or yaml paths)")
    p.add_argument("--cfg", help="one trainer cfg name for every protocol of the methods (the scripts' CFG)")
    p.add_argument("--xd-source", help="the cross-dataset / DG training set (default: imagenet)")
    p.add_argument("--xd-datasets", nargs="+")
    p.add_argument("--dg-datasets", nargs="+")
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--shots", type=int, help="base-to-new and cross-dataset training shots")
    p.add_argument("--fewshot-shots", nargs="+", type=int)
    p.add_argument("--backbone", help="passed to every run as --backbone")
    p.add_argument("--opts", nargs="+", metavar="KEY VALUE", help="KEY VALUE pairs for every run")
    p.add_argument("--load-epoch", type=int, help="the epoch evaluations load (default: OPTIM.MAX_EPOCH)")


def build_parser():
    p = argparse.ArgumentParser(prog="e2mim-sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run what is missing (then write the tables)")
    _common(r)
    r.add_argument("--dry-run", action="store_true", help="print the runs and their commands, run nothing")
    r.add_argument("--backend", choices=["local", "slurm"])
    r.add_argument("--slots", type=int, help="local: runs at a time (default: one per GPU, or 1 on CPU)")
    r.add_argument("--gpus", help="local: GPU ids to use, e.g. 0,1 ('none': CPU; default: the visible ones)")
    r.add_argument("--per-gpu", type=int, help="local: runs per GPU when --slots is not given (default 1)")
    r.add_argument("--python", help="the interpreter of the runs (default: this one; e.g. a container wrapper)")
    r.add_argument("--no-preload", action="store_true",
                   help="local: start every run as a new interpreter (default: fork runs from the sweep after "
                        "importing the training stack once, saving the start-up per run)")
    r.add_argument("--no-report", action="store_true", help="do not write the tables at the end")
    r.add_argument("--cluster", default="slurm", choices=["slurm", "local", "debug"],
                   help="slurm backend: submitit's executor (local/debug run here, for testing)")
    r.add_argument("--wait", action="store_true", help="slurm: wait for the jobs, then write the tables")
    r.add_argument("--partition")
    r.add_argument("--time", dest="timeout_min", type=int, help="slurm: minutes per array task")
    r.add_argument("--gpus-per-node", type=int)
    r.add_argument("--cpus-per-task", type=int)
    r.add_argument("--mem-gb", type=float)
    r.add_argument("--account")
    r.add_argument("--array-parallelism", type=int, help="slurm: array tasks running at once")
    s = sub.add_parser("status", help="done / running / failed / pending per protocol, with an ETA")
    _common(s)
    s.add_argument("--json", action="store_true", help="the state of every run as JSON")
    rp = sub.add_parser("report", help="write the tables (md, csv, tex) and plots into the sweep folder")
    _common(rp)
    rp.add_argument("--no-plots", action="store_true")
    j = sub.add_parser("job", help="one job of the one-job protocol scripts: its folder, the folder of the model "
                                   "it evaluates and its train.py arguments, as bash assignments")
    j.add_argument("job", choices=list(JOBS), help="the script's function (scripts/lib/protocols.sh)")
    j.add_argument("job_args", nargs="*", metavar="ARG", help="the script's arguments (DATASET, SHOTS, SEED)")
    _common(j, sweep_file=False)
    return p


def _sweep(a):
    over = {"data": a.data, "output": a.output, "name": a.name, "methods": a.methods, "protocols": a.protocols,
            "datasets": a.datasets, "xd_datasets": a.xd_datasets, "dg_datasets": a.dg_datasets, "seeds": a.seeds,
            "shots": a.shots, "fewshot_shots": a.fewshot_shots, "backbone": a.backbone, "opts": a.opts,
            "cfg": a.cfg, "xd_source": a.xd_source, "load_epoch": a.load_epoch}
    if a.command == "job":
        over.update(job_overrides(a.job, a.job_args))
    if a.command == "run":
        over["backend"] = a.backend
        over["python"] = a.python
        local = {k: getattr(a, k) for k in ("slots", "gpus", "per_gpu") if getattr(a, k) is not None}
        slurm = {k: getattr(a, k) for k in ("partition", "timeout_min", "gpus_per_node", "cpus_per_task",
                                            "mem_gb", "account", "array_parallelism") if getattr(a, k) is not None}
        over["local"] = local or None
        over["slurm"] = slurm or None
    # only running needs the data: listing the runs, their state and the tables do not
    needs_data = a.command == "job" or (a.command == "run" and not a.dry_run)
    return load(getattr(a, "sweep", None), over, check_data=needs_data)


def _meta(sw, **kv):
    """The sweep's sweep.json (backend, concurrency for the ETA), updated with ``kv``."""
    path = os.path.join(sw.folder, "sweep.json")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        meta = {}
    if not kv:
        return meta
    meta.update(kv)
    os.makedirs(sw.folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def _report(sw, plots=True):
    from .report import write_report
    report, files = write_report(sw, plots=plots)
    for f in files:
        print(f"wrote {f}")
    if report.missing:
        print(f"{len(report.missing)} run(s) missing (flagged in the tables):")
        for m in report.missing[:20]:
            print(f"  {m}")
    return report


def cmd_run(a, sw, runs):
    python = sw.python or sys.executable
    if a.dry_run:
        info = collect(sw, runs)
        for r in runs:
            deps = f"  after {', '.join(r.deps)}" if r.deps else ""
            print(f"# [{info[r.key][0]}] {r.protocol} {r.kind} {r.method} {r.dataset} seed{r.seed}{deps}")
            print(shlex.join(r.command(python)))
        if not os.path.isdir(sw.data):
            print(f"# note: the dataset root {sw.data} does not exist; the runs need it")
        print(f"# {len(runs)} runs ({sum(1 for r in runs if r.kind == 'train')} train, "
              f"{sum(1 for r in runs if r.kind == 'eval')} eval), "
              f"{sum(1 for v in info.values() if v[0] == DONE)} already done")
        return 0
    if sw.backend == "slurm":
        from . import slurm
        jobs = slurm.submit(sw, runs, cluster=a.cluster, python=python)
        _meta(sw, backend="slurm", concurrency=int(sw.slurm.get("array_parallelism") or
                                                   slurm.DEFAULTS["array_parallelism"]))
        if not jobs:
            print("every run is done")
        else:
            print(f"submitted {len(jobs)} array task(s): job {str(jobs[0].job_id).split('_')[0]}")
        if a.cluster == "slurm" and not a.wait and jobs:
            print(f"follow it with: e2mim-sweep status {a.sweep or ''} (tables: e2mim-sweep report)")
            return 0
        slurm.wait(jobs)
    else:
        from .runner import Interrupted, preload, run_local, slot_devices
        loc = sw.local
        gpus = loc.get("gpus")
        if isinstance(gpus, str):
            gpus = [] if gpus.lower() in ("none", "cpu", "") else gpus.replace(" ", "").split(",")
        elif gpus is not None:
            gpus = [str(g) for g in gpus]
        devices = slot_devices(loc.get("slots"), gpus, loc.get("per_gpu", 1))
        _meta(sw, backend="local", concurrency=len(devices))
        forked = False
        if not (a.no_preload or sw.python or loc.get("preload") is False) and any(not is_done(r) for r in runs):
            t0 = time.time()
            forked = preload()
            print(f"training stack imported once in {time.time() - t0:.1f} s; runs are forked from the sweep"
                  if forked else "runs start as new interpreters (CUDA is initialised in the sweep)")
        try:
            run_local(sw, runs, devices, python, forked=forked)
        except Interrupted as e:
            print("interrupted: run the same command again to finish the sweep", file=sys.stderr)
            return 128 + int(e.args[0])
    info = collect(sw, runs)
    sys.stdout.write(render_status(sw, runs, info, _meta(sw).get("concurrency", 1)))
    if not a.no_report:
        _report(sw)
    return 0 if all(st == DONE for st, _ in info.values()) else 1


def _not_a_sweep(a, sw):
    """The error for status/report where no sweep has run (None when one has)."""
    if os.path.isfile(os.path.join(sw.folder, "sweep.json")):
        return None
    parent = os.path.dirname(sw.folder)
    found = sorted(d for d in os.listdir(parent) if os.path.isfile(os.path.join(parent, d, "sweep.json"))) \
        if os.path.isdir(parent) else []
    there = f"sweeps under {sw.output}: {', '.join(found)} (pick one with --name)" if found else \
        f"no sweep has run under {sw.output}"
    return (f"{sw.folder} is not a sweep's folder (no sweep.json: `e2mim-sweep run` writes it); {there}. "
            f"Check --output and --name (or the sweep file's `output:` and `name:`); `e2mim-sweep run ... "
            f"--dry-run` lists what a sweep would run, and `e2mim-results {sw.output}` tabulates runs the "
            f"protocol scripts wrote.")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "run")   # e2mim-sweep SWEEP.yaml ... means run
    a = build_parser().parse_args(argv)
    if getattr(a, "sweep", None) and os.path.isdir(a.sweep):
        print(f"error: {a.sweep} is a folder, not a sweep file: pass the sweep's YAML file (e2mim-sweep "
              f"{a.command} SWEEP.yaml), or --output/--name for a sweep run from flags; "
              f"`e2mim-results {a.sweep}` tabulates the runs of a folder written without a sweep.", file=sys.stderr)
        return 2
    try:
        sw = _sweep(a)
        runs = expand(sw)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.command == "run":
        return cmd_run(a, sw, runs)
    if a.command == "job":
        run = one_job(runs, a.job)
        model_dir = run.args[run.args.index("--model-dir") + 1] if "--model-dir" in run.args else ""
        print(f"JOB_DIR={shlex.quote(run.directory)}")
        print(f"JOB_MODEL_DIR={shlex.quote(model_dir)}")
        print(f"JOB_ARGS=({' '.join(shlex.quote(x) for x in run.args)})")
        return 0
    problem = _not_a_sweep(a, sw)
    if problem and a.command == "report":
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if problem:  # status of a sweep not run yet: what it would run, all pending
        print(f"note: {problem}", file=sys.stderr)
    if a.command == "status":
        info = collect(sw, runs)
        if a.json:
            print(json.dumps({k: {"state": st, **rec} for k, (st, rec) in info.items()}, indent=1))
        else:
            sys.stdout.write(render_status(sw, runs, info, _meta(sw).get("concurrency", 1)))
        return 1 if any(st == FAILED for st, _ in info.values()) else 0
    report = _report(sw, plots=not a.no_plots)
    return 0 if report.tables else 1
