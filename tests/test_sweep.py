"""The sweep runner (e2mim-sweep): expansion equal to the bash protocol scripts, the local
queue (slots, GPUs, dependencies, failures), a real tiny sweep killed mid-way and finished
by re-running it, submitit's local executor, and the SLURM job description."""
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT
from e2mim_tools import protocols as P
from e2mim_tools.sweep import chains, expand, load
from e2mim_tools.sweep.cli import main
from e2mim_tools.sweep.runner import run_local, slot_devices
from e2mim_tools.sweep.state import BLOCKED, DONE, FAILED, PENDING, collect, eta, render_status

# A stand-in for the interpreter: "trains" in 0.3 s, writes results.json with the identity
# fields the sweep checks, logs what it was given; fails on the pair FAIL 1.
FAKE_TRAIN = r'''
import json, os, sys, time
a = sys.argv[1:]
assert a[:2] == ["-m", "e2mim_tools.train"], a
a = a[2:]
def opt(k, d=None):
    return a[a.index(k) + 1] if k in a else d
t0 = time.time()
out = opt("--output-dir")
if opt("--model-dir") and not os.path.isfile(os.path.join(opt("--model-dir"), "results.json")):
    sys.exit(3)
# Runs that the queue starts together overlap whatever the machine's load: each waits (up to 1 s)
# until another one is running too, so a slow interpreter start cannot make them look serial.
running = os.environ["FAKE_LOG"] + ".running"
os.makedirs(running, exist_ok=True)
me = os.path.join(running, str(os.getpid()))
open(me, "w").close()
while len(os.listdir(running)) < 2 and time.time() < t0 + 1.0:
    time.sleep(0.01)
time.sleep(0.05)
end = time.time()
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({"out": out, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": t0,
                        "end": end, "model_dir": opt("--model-dir")}) + "\n")
os.remove(me)
if opt("FAIL") == "1":
    print("error: unknown config key FAIL", file=sys.stderr)
    sys.exit(2)
os.makedirs(out, exist_ok=True)
ident = {"trainer": opt("--trainer"), "seed": int(opt("--seed")), "shots": int(opt("DATASET.NUM_SHOTS", -1)),
         "subsample": opt("DATASET.SUBSAMPLE_CLASSES", "all")}
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({"accuracy": 50.0, "identity": ident}, f)
'''


def _fake_python(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    wrapper = tmp_path / "fake_python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return str(wrapper)


# ---- the bash scripts and the sweep agree ----------------------------------------------------
BASH_PYTHON = r'''#!/bin/bash
# train.py calls (as "train.py" or "-m e2mim_tools.train") are recorded and "finish" (a
# results.json with the run's identity), anything else runs the real interpreter.
if [ "$1" = train.py ] || { [ "$1" = -m ] && [ "$2" = e2mim_tools.train ]; }; then
  if [ "$1" = train.py ]; then shift; else shift 2; fi
  printf '%s\x1f' "$@" >> "$CALLS"; printf '\n' >> "$CALLS"
  exec "$REAL_PYTHON" -c '
import json, os, sys
a = sys.argv[1:]
def opt(k, d=None):
    return a[a.index(k) + 1] if k in a else d
out = opt("--output-dir")
os.makedirs(out, exist_ok=True)
ident = {"trainer": opt("--trainer"), "seed": int(opt("--seed")), "shots": int(opt("DATASET.NUM_SHOTS", -1)),
         "subsample": opt("DATASET.SUBSAMPLE_CLASSES", "all")}
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({"accuracy": 50.0, "identity": ident}, f)
' "$@"
fi
exec "$REAL_PYTHON" "$@"
'''


def _one_job_script(run, xd_source):
    """The one-job script (and its arguments) the scripts offer for a run of the sweep."""
    k = run.key
    if k.startswith("base2new/train_base/"):
        return "base2new_train.sh", [run.dataset, run.seed]
    if k.startswith("base2new/test_new/"):
        return "base2new_test.sh", [run.dataset, run.seed]
    if k.startswith("evaluation/"):
        return "xd_test.sh", [run.dataset, run.seed]
    if k.startswith("fewshot/"):
        return "fewshot_train.sh", [run.dataset, max(run.shots, 1), run.seed]   # zero-shot: shots_0 anyway
    assert k.startswith(xd_source + "/"), k
    return "xd_train.sh", [run.seed]


def _recorded(calls):
    return [ln.rstrip("\n").split("\x1f")[:-1] for ln in calls.read_text().splitlines()] if calls.exists() else []


@pytest.mark.parametrize("folder,cfg", [("coop", None), ("coop", "demo_tiny"), ("zsclip", None)])
def test_the_bash_scripts_run_what_the_sweep_runs(tmp_path, folder, cfg):
    """The whole-protocol scripts run the sweep runner (checked: every job it starts, with the
    scripts' settings passed through); each one-job script runs the same command the sweep
    has for that job."""
    data = tmp_path / "data"
    data.mkdir()
    fake = tmp_path / "python"
    fake.write_text(BASH_PYTHON)
    fake.chmod(0o755)
    settings = dict(datasets=["dtd", "eurosat"], seeds=[1, 2], xd_source="caltech101",
                    xd_datasets=["dtd", "ucf101"], dg_datasets=["imagenet_a"], backbone="random:tiny",
                    opts=["OPTIM.MAX_EPOCH", "3"], fewshot_shots=[1, 4])
    env = dict(os.environ, DATA=str(data), DATASETS="dtd eurosat", SEEDS="1 2", XD_SOURCE="caltech101",
               XD_DATASETS="dtd ucf101", DG_DATASETS="imagenet_a", BACKBONE="random:tiny",
               OPTS="OPTIM.MAX_EPOCH 3", SHOTS_LIST="1 4", PYTHON=str(fake), REAL_PYTHON=sys.executable)
    if cfg:   # the scripts' CFG and LOADEP: --cfg and --load-epoch
        settings.update(cfg=cfg, load_epoch=2)
        env.update(CFG=cfg, LOADEP="2")
    for proto, script in (("base2new", "base2new.sh"), ("xd", "xd.sh"), ("dg", "dg.sh"), ("fewshot", "fewshot.sh")):
        out, calls = tmp_path / f"out_{proto}", tmp_path / f"calls_{proto}"
        r = subprocess.run(["bash", os.path.join("scripts", folder, script)], cwd=ROOT, capture_output=True,
                           text=True, env=dict(env, OUTPUT=str(out), CALLS=str(calls)))
        assert r.returncode == 0, r.stdout + r.stderr
        sw = load(None, dict(settings, data=str(data), output=str(out), methods=[folder], protocols=[proto]))
        runs = expand(sw)
        expected = [r.command("python")[3:] for r in runs]
        assert sorted(_recorded(calls)) == sorted(expected), proto
        # the one-job scripts, in dependency order, into a fresh tree
        out1, calls1 = tmp_path / f"one_{proto}", tmp_path / f"one_calls_{proto}"
        sw1 = load(None, dict(settings, data=str(data), output=str(out1), methods=[folder], protocols=[proto]))
        for run in expand(sw1):
            name, args = _one_job_script(run, "caltech101")
            r = subprocess.run(["bash", os.path.join("scripts", folder, name), *map(str, args)], cwd=ROOT,
                               capture_output=True, text=True, env=dict(env, OUTPUT=str(out1), CALLS=str(calls1)))
            assert r.returncode == 0, (name, args, r.stdout + r.stderr)
            assert _recorded(calls1)[-1] == run.command("python")[3:], (name, args)


def test_expansion_dependencies_and_shared_source(tmp_path):
    sw = load(None, dict(data=str(tmp_path), output=str(tmp_path / "out"), methods=["coop", "zsclip"],
                         protocols=["base2new", "xd", "dg", "fewshot"], seeds=[1]))
    runs = expand(sw)
    keys = [r.key for r in runs]
    assert len(keys) == len(set(keys))
    by = {r.key: r for r in runs}
    src = "imagenet/CoOp/vit_b16_ep50_16shots/seed1"
    assert by[src].kind == "train" and by[src].deps == []
    evals = [r for r in runs if src in r.deps]
    assert {r.dataset for r in evals} == set(sw.xd_datasets) | set(sw.dg_datasets)   # xd and dg share it
    test_new = by["base2new/test_new/dtd/shots_16/CoOp/vit_b16_ep50/seed1"]
    assert test_new.deps == ["base2new/train_base/dtd/shots_16/CoOp/vit_b16_ep50/seed1"]
    assert "--load-epoch" in test_new.args and test_new.args[test_new.args.index("--load-epoch") + 1] == "50"
    zs = [r for r in runs if r.method == "zsclip"]
    assert all(r.deps == [] and r.kind == "eval" and "--eval-only" in r.args for r in zs)
    assert {r.shots for r in zs if r.protocol == "fewshot"} == {0}
    # chains: each dependent right after its dependency's chain root
    for root, members in chains(runs):
        assert members[0] == root and all(by[k].deps in ([], [root]) for k in members)
    # the default sweep: every method of the table x every protocol (xd and dg share the sources)
    full = expand(load(None, dict(data=str(tmp_path), output=str(tmp_path / "o"))))
    n_d, n_s, n_t = len(P.BASE2NEW_DATASETS), len(P.DEFAULT_SEEDS), len(P.METHODS)
    n_zs = sum(m.zero_shot for m in P.METHODS)
    expected = n_t * n_s * (2 * n_d + 1 + len(P.XD_TARGETS) + len(P.DG_TARGETS)) \
        + n_s * n_d * ((n_t - n_zs) * len(P.FEWSHOT_SHOTS) + n_zs)
    assert len(full) == expected


def test_example_sweep_files_expand(tmp_path):
    folder = os.path.join(ROOT, "configs", "sweeps")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".yaml"))
    assert "paper.yaml" in names
    for n in names:
        sw = load(os.path.join(folder, n), {"data": str(tmp_path), "output": str(tmp_path / "out")})
        assert expand(sw), n


def test_bad_sweep_settings_are_one_message(tmp_path, capsys):
    assert main(["run", "--data", str(tmp_path), "--methods", "nope", "--dry-run"]) == 2
    assert "no method 'nope'" in capsys.readouterr().err
    assert main(["run", "--data", str(tmp_path), "--datasets", "imagenett", "--dry-run"]) == 2
    assert "unknown dataset 'imagenett'" in capsys.readouterr().err
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"data": str(tmp_path), "methods": [{"method": "coop"}, {"method": "coop",
                                                                                          "label": "c2"}]}))
    assert main(["run", str(f), "--dry-run"]) == 2
    assert "give one a `tag`" in capsys.readouterr().err


# ---- the local queue, with a stand-in interpreter -------------------------------------------------
def test_local_queue_slots_gpus_dependencies_and_failures(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.jsonl"))
    sw = load(None, dict(data=str(tmp_path), output=str(tmp_path / "out"), protocols=["base2new"],
                         datasets=["dtd", "eurosat"], seeds=[1, 2], python=_fake_python(tmp_path),
                         methods=["coop", {"method": "kgcoop", "seeds": [2], "datasets": ["dtd"], "opts": ["FAIL", 1]}]))
    runs = expand(sw)
    assert len(runs) == 8 + 2
    devices = slot_devices(slots=None, gpus=["0", "1"], per_gpu=2)
    assert devices == ["0", "1", "0", "1"]
    devices = devices[:3]
    state = run_local(sw, runs, devices, sw.python, log=lambda *_: None)
    calls = [json.loads(ln) for ln in open(tmp_path / "calls.jsonl")]
    assert len(calls) == 9                     # the failed train's test never started
    assert {c["cuda"] for c in calls} <= {"0", "1"}
    # never more than 3 at once; a test starts only after its train ended
    events = sorted([(c["start"], 1) for c in calls] + [(c["end"], -1) for c in calls])
    level, peak = 0, 0
    for _, d in events:
        level += d
        peak = max(peak, level)
    assert 2 <= peak <= 3
    end = {c["out"]: c["end"] for c in calls}
    for c in calls:
        if c["model_dir"]:
            assert c["start"] >= end[c["model_dir"]]
    failed = [k for k, v in state.items() if v == FAILED]
    assert failed == ["base2new/train_base/dtd/shots_16/KgCoOp/vit_b16_ep100_ctxv1/seed2"]
    assert [k for k, v in state.items() if v == BLOCKED] == [failed[0].replace("train_base", "test_new")]
    info = collect(sw, runs)
    assert info[failed[0]][0] == FAILED and "unknown config key FAIL" in info[failed[0]][1]["message"]
    assert os.path.isfile(info[failed[0]][1]["log"])
    text = render_status(sw, runs, info, 3)
    assert "base2new" in text and "8/10" in text and "FAILED" in text and "SKIPPED" in text
    # ETA: from the finished runs' durations, for what is left
    os.remove(os.path.join(runs[0].directory, "results.json"))
    info = collect(sw, runs)
    assert info[runs[0].key][0] == PENDING
    assert 0.2 < eta(runs, info, 1) < 10 and "ETA" in render_status(sw, runs, info, 1)


# ---- submitit ------------------------------------------------------------------------------------
def test_submitit_local_executor_runs_chains(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.jsonl"))
    from e2mim_tools.sweep import slurm
    sw = load(None, dict(data=str(tmp_path), output=str(tmp_path / "out"), protocols=["base2new"],
                         datasets=["dtd"], seeds=[1], methods=["coop", "zsclip"], python=_fake_python(tmp_path),
                         slurm={"timeout_min": 5}))
    runs = expand(sw)
    jobs = slurm.submit(sw, runs, cluster="local", python=sw.python)
    assert len(jobs) == 3                       # coop train->test, zsclip train_base, zsclip test_new
    results = slurm.wait(jobs)
    assert sorted(results.values()) == [DONE] * 4
    assert all(st == DONE for st, _ in collect(sw, runs).values())
    assert slurm.submit(sw, runs, cluster="local") == []   # nothing left to do


def test_slurm_job_description(tmp_path, monkeypatch):
    import submitit
    from submitit.slurm.slurm import SlurmExecutor
    from e2mim_tools.sweep import slurm
    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))   # no srun here
    monkeypatch.setattr(SlurmExecutor, "_make_submission_command",
                        lambda self, path: ["echo", "Submitted batch job 4242"])
    sw = load(None, dict(data=str(tmp_path), output=str(tmp_path / "out"), protocols=["base2new"],
                         datasets=["dtd"], seeds=[1, 2, 3], methods=["coop", "zsclip"],
                         slurm=dict(partition="gpu", timeout_min=180, gpus_per_node=1, mem_gb=32, account="proj",
                                    array_parallelism=2, cpus_per_task=6)))
    jobs = slurm.submit(sw, expand(sw), cluster="slurm")
    assert len(jobs) == 9 and jobs[0].job_id == "4242_0"
    sbatch = [os.path.join(d, n) for d, _, names in os.walk(os.path.join(sw.folder, "submitit"))
              for n in names if n.endswith(".sh") and not os.path.islink(os.path.join(d, n))]
    assert len(sbatch) == 1                      # one array
    text = open(sbatch[0]).read()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=180", "#SBATCH --gpus-per-node=1", "#SBATCH --mem=32GB",
                 "#SBATCH --account=proj", "#SBATCH --array=0-8%2", "#SBATCH --cpus-per-task=6",
                 "#SBATCH --job-name=e2mim-sweep", "#SBATCH --signal=USR2@"):
        assert line in text, line
    # each task is a Checkpointable chain: requeued as itself on preemption / timeout
    fn = submitit.core.utils.DelayedSubmission.load(jobs[0].paths.submitted_pickle).function
    assert isinstance(fn, submitit.helpers.Checkpointable)
    assert [r.key.split("/")[1] for r in fn.runs] == ["train_base", "test_new"]
    assert fn.checkpoint().function is fn
    with open(os.path.join(sw.folder, "slurm_jobs.json")) as f:
        assert len(f.readlines()) == 9


# ---- a real tiny sweep ---------------------------------------------------------------------------
def _custom_dataset(root, demo_root):
    """A second generated dataset: the demo images as a custom ImageFolder dataset."""
    os.symlink(os.path.join(demo_root, "demo"), os.path.join(root, "demo"))
    shutil.copytree(os.path.join(demo_root, "demo", "images"), os.path.join(root, "fruit2", "images"))
    path = os.path.join(root, "fruit2.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"DATASET": {"NAME": "ImageFolder", "TEMPLATE": "a photo of a {}.",
                                    "CUSTOM": {"DIR": "fruit2", "LAYOUT": "single"}}}, f)
    return path


def test_real_sweep_killed_and_rerun(tmp_path, demo_root, capsys):
    data = tmp_path / "data"
    data.mkdir()
    fruit2 = _custom_dataset(str(data), demo_root)
    sweep = {
        "name": "tiny", "data": str(data), "output": str(tmp_path / "out"), "backbone": "random:tiny",
        "protocols": ["fewshot"], "datasets": ["demo", fruit2], "seeds": [1, 2], "fewshot_shots": [2],
        "opts": ["OPTIM.MAX_EPOCH", 1, "DATALOADER.NUM_WORKERS", 0, "VERBOSE", False],
        "methods": [{"method": "coop", "cfg": "demo_tiny",
                     "opts": ["TRAINER.COOP.N_CTX", 4, "DATALOADER.TRAIN_X.BATCH_SIZE", 8]},
                    {"method": "zsclip", "cfg": "demo_tiny"},
                    {"method": "coop", "label": "broken", "tag": "broken", "cfg": "demo_tiny", "datasets": ["demo"],
                     "seeds": [1], "opts": ["TRAINER.COOP.NO_SUCH_KEY", 1]}],
        "local": {"slots": 2, "gpus": "none"},
    }
    f = tmp_path / "tiny.yaml"
    f.write_text(yaml.safe_dump(sweep))
    sw = load(str(f))
    runs = expand(sw)
    good = [r for r in runs if r.method != "broken"]
    assert len(runs) == 9 and len(good) == 8

    # the first sweep is killed (SIGKILL) once two runs have finished
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-m", "e2mim_tools.sweep", "run", str(f), "--no-report"], cwd=ROOT,
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 150
    try:
        while time.time() < deadline and p.poll() is None:
            done = [r for r in good if os.path.isfile(os.path.join(r.directory, "results.json"))]
            if len(done) >= 2:
                break
            time.sleep(0.2)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    _wait_for_locks_released(str(tmp_path / "out"))
    assert len(done) >= 2
    first = {r.key: os.path.getmtime(os.path.join(r.directory, "results.json")) for r in done}
    assert len(first) < len(good)

    # the same command again finishes what is missing, redoes nothing (runs forked from here)
    assert main(["run", str(f)]) == 1            # 1: the broken run failed
    out = capsys.readouterr().out
    assert f"{len(first)} run(s) already done" in out or "already done" in out
    for r in good:
        with open(os.path.join(r.directory, "results.json")) as fh:
            res = json.load(fh)
        ident = res["identity"]
        assert (ident["trainer"], ident["seed"]) == (("CoOp" if r.method == "coop" else "ZeroshotCLIP"), r.seed)
        assert ident["dataset"] == ("Demo" if r.dataset == "demo" else "ImageFolder")
        assert 0.0 <= res["accuracy"] <= 100.0
        if r.method == "coop":
            assert ident["shots"] == 2
    for k, t in first.items():
        assert os.path.getmtime(os.path.join(sw.output, k, "results.json")) == t
    info = collect(sw, runs)
    broken = next(r for r in runs if r.method == "broken")
    assert info[broken.key][0] == FAILED
    with open(info[broken.key][1]["log"]) as fh:
        assert "NO_SUCH_KEY" in fh.read()

    # the tables and the plot, in the sweep folder
    for name in ("results.md", "results.csv", "results.tex", "fewshot.png"):
        assert os.path.isfile(os.path.join(sw.folder, name)), name
    md = open(os.path.join(sw.folder, "results.md")).read()
    assert all(w in md for w in ("CoOp", "ZeroshotCLIP", "demo", "fruit2", "2 shots", "0 shots"))
    zs = [json.load(open(os.path.join(r.directory, "results.json")))["accuracy"] for r in good
          if r.method == "zsclip" and r.dataset == "demo"]
    assert f"{sum(zs) / 2:.2f}" in md

    assert main(["status", str(f)]) == 1
    st = capsys.readouterr().out
    assert "fewshot" in st and "8/9" in st and "FAILED" in st
    assert main(["run", str(f), "--dry-run"]) == 0
    assert "# 9 runs (5 train, 4 eval), 8 already done" in capsys.readouterr().out


def _wait_for_locks_released(root, timeout=20):
    """The killed sweep's runs die with it (a signal from the kernel), but not at the same
    instant: wait until no run folder's lock is still held before running the sweep again."""
    import fcntl
    deadline = time.time() + timeout
    for dirpath, _, files in os.walk(root):
        if ".e2mim.lock" not in files:
            continue
        fd = os.open(os.path.join(dirpath, ".e2mim.lock"), os.O_RDWR)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    break
                except BlockingIOError:
                    assert time.time() < deadline, f"{dirpath} is still locked"
                    time.sleep(0.1)
        finally:
            os.close(fd)


def test_shots_flag_has_one_meaning_in_scripts_and_sweep(tmp_path):
    """--shots is the base-to-new / cross-dataset training shots in the scripts as in
    e2mim-sweep; the few-shot list is --fewshot-shots, and the old list use is refused by name."""
    data = tmp_path / "data"
    data.mkdir()
    fake = tmp_path / "python"
    fake.write_text(BASH_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    env = dict(os.environ, DATA=str(data), OUTPUT=str(tmp_path / "out"), PYTHON=str(fake),
               REAL_PYTHON=sys.executable, CALLS=str(calls))
    r = subprocess.run(["bash", "scripts/coop/base2new_train.sh", "--shots", "4", "dtd", "1"], cwd=ROOT,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    args = _recorded(calls)[-1]
    assert args[args.index("DATASET.NUM_SHOTS") + 1] == "4" and "/shots_4/" in args[args.index("--output-dir") + 1]
    for script, value in (("fewshot.sh", "1 2 4"), ("fewshot_train.sh", "4"), ("base2new.sh", "1 2")):
        r = subprocess.run(["bash", f"scripts/coop/{script}", "--shots", value], cwd=ROOT, capture_output=True,
                           text=True, env=env)
        assert r.returncode == 2 and "--fewshot-shots" in r.stderr and "\n" not in r.stderr.strip(), r.stderr


def test_listing_runs_needs_no_data_root(tmp_path, capsys):
    """--dry-run, status and report work before the data is there (the SWEEPS.md examples);
    running does not."""
    common = ["--data", str(tmp_path / "not-yet"), "--output", str(tmp_path / "out"), "--methods", "coop",
              "--protocols", "base2new", "--datasets", "dtd", "--seeds", "1"]
    assert main(["run", *common, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "does not exist; the runs need it" in out and "# 2 runs (1 train, 1 eval)" in out
    assert main(["status", *common]) == 0
    assert main(["run", *common]) == 2 and "does not exist" in capsys.readouterr().err
