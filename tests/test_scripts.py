"""Every method's protocol scripts end to end on the generated demo dataset with the tiny
random CLIP (one dataset, one seed, one epoch): output tree, skip of finished jobs, resume
of unfinished ones, and the results tool on what they wrote.

train.py runs in a pre-imported fork server (tests/forkserver.py): the scripts call it as
their PYTHON exactly as they call the real interpreter, without paying the torch import
for every job."""
import os
import subprocess

import pytest

from conftest import ROOT
from e2mim_tools import protocols
from e2mim_tools.results import build_report
from e2mim_engine.trainer import TRAINER_REGISTRY
from forkserver import ForkServer

METHODS = {m.folder: m.trainer for m in protocols.METHODS}
SCRIPTS_DIR = os.path.join(ROOT, "scripts")


def test_methods_table_and_script_folders_agree():
    """Each method of the table has its folder of links to the one protocol script, and
    every folder of scripts/ (but lib/) is a method of the table."""
    folders = {d for d in os.listdir(SCRIPTS_DIR) if os.path.isdir(os.path.join(SCRIPTS_DIR, d)) and d != "lib"}
    assert folders == set(METHODS)
    assert len(METHODS) == len(protocols.METHODS)  # one line per folder
    for m in protocols.METHODS:
        d = os.path.join(SCRIPTS_DIR, m.folder)
        assert sorted(os.listdir(d)) == sorted(protocols.SCRIPTS), m.folder
        for name in protocols.SCRIPTS:
            assert os.readlink(os.path.join(d, name)) == protocols.SCRIPT_TARGET, (m.folder, name)
        assert os.path.isdir(os.path.join(ROOT, "configs", "trainers", m.trainer)), m.trainer
    assert os.path.isfile(os.path.join(SCRIPTS_DIR, "lib", "protocol_script.sh"))


def test_layouts_are_what_the_results_tool_reads():
    from e2mim_tools.results import classify

    f = dict(phase="train_base", dataset="dtd", shots=16, trainer="CoOp", cfg="c", seed=2)
    for layout, protocol in (("base2new", "base2new"), ("xd", "xd"), ("xd_source", "xd"), ("fewshot", "fewshot")):
        run = classify(os.path.join("out", protocols.LAYOUTS[layout].format(**f)))
        assert (run.protocol, run.dataset, run.trainer, run.cfg, run.shots, run.seed) == \
            (protocol, "dtd", "CoOp", "c", 16, 2), layout


@pytest.fixture(scope="module")
def python(tmp_path_factory):
    server = ForkServer(tmp_path_factory.mktemp("forkserver"))
    yield server.client
    server.close()


def run_script(method, script, env, *args):
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", method, script), *map(str, args)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{method}/{script}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def demo_env(python, data, out):
    env = dict(os.environ)
    env.update(PYTHON=python, DATA=data, OUTPUT=str(out), DATASETS="demo", XD_DATASETS="demo", DG_DATASETS="demo",
               XD_SOURCE="demo", SEEDS="1", SHOTS="2", SHOTS_LIST="2", CFG="demo_tiny",
               OPTS="OPTIM.MAX_EPOCH 1 DATALOADER.NUM_WORKERS 0 DATALOADER.TRAIN_X.BATCH_SIZE 4 VERBOSE False")
    return env


@pytest.mark.parametrize("method", list(METHODS))
def test_protocol_scripts_end_to_end(method, python, demo_root, tmp_path):
    trainer = METHODS[method]
    if trainer not in TRAINER_REGISTRY:
        pytest.skip(f"trainer {trainer} is not registered yet")
    env = demo_env(python, demo_root, tmp_path)
    out = run_script(method, "base2new.sh", env)
    assert "Done. Tables:" in out
    train = tmp_path / "base2new" / "train_base" / "demo" / "shots_2" / trainer / "demo_tiny" / "seed1"
    new = tmp_path / "base2new" / "test_new" / "demo" / "shots_2" / trainer / "demo_tiny" / "seed1"
    assert (train / "results.json").is_file() and (new / "results.json").is_file()
    zero_shot = trainer == "ZeroshotCLIP"
    assert (train / "prompt_learner" / "model.pth.tar-1").is_file() != zero_shot
    run_script(method, "xd.sh", env)
    run_script(method, "dg.sh", env)  # the source model is reused, not trained again
    run_script(method, "fewshot.sh", env)
    src = tmp_path / "demo" / trainer / "demo_tiny_2shots" / "seed1"
    ev = tmp_path / "evaluation" / trainer / "demo_tiny_2shots" / "demo" / "seed1"
    fs = tmp_path / "fewshot" / "demo" / ("shots_0" if zero_shot else "shots_2") / trainer / "demo_tiny" / "seed1"
    for d in (src, ev, fs):
        assert (d / "results.json").is_file(), d
    # finished jobs are skipped (dg.sh above found the source model done as well)
    again = run_script(method, "base2new.sh", env)
    assert "2 run(s) already done, skipped; 0 to run" in again
    # the results tool reads the tree the scripts wrote
    rep = build_report([str(tmp_path)], seeds=[1], reported=False, xd_source="demo")
    b2n = next(t for t in rep.tables if t.title.startswith("Base"))
    assert [r[:2] for r in b2n.rows] == [["Average", trainer], ["demo", trainer]]
    assert not rep.missing and not rep.unfinished
    assert all(0 <= c.mean <= 100 for c in b2n.rows[1][2:])
    xd = next(t for t in rep.tables if t.title.startswith("Cross"))
    assert xd.columns == ["method", "demo (source)", "demo", "Average"] and not xd.rows[0][1].empty
    if method == "coop":
        single_job_scripts(env, tmp_path, train)


def single_job_scripts(env, out_root, train):
    """CoOp's one-job scripts: resume of an interrupted run, --data instead of DATA, errors."""
    # an interrupted run: checkpoint there, no results.json yet -> the same command resumes
    os.remove(train / "results.json")
    out = run_script("coop", "base2new_train.sh", env, "demo", 1)
    assert "Resume the unfinished job" in out and "will resume training" in out
    assert (train / "results.json").is_file()
    env2 = dict(env)
    del env2["DATA"]
    out = run_script("coop", "base2new_test.sh", env2, "--data", env["DATA"], "demo", 1)
    assert "Skip this job" in out
    script = os.path.join(ROOT, "scripts", "coop", "base2new_test.sh")
    r = subprocess.run(["bash", script, "demo", "1"], env=env2, capture_output=True, text=True)
    assert r.returncode == 2 and "set DATA=" in r.stderr
    # testing before training names the training run that is missing
    r = subprocess.run(["bash", script, "demo", "2"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "has not finished training" in r.stderr and "seed2" in r.stderr
    r = subprocess.run(["bash", script, "demo"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "usage: base2new_test.sh [--data DIR] [--output DIR] DATASET SEED" in r.stderr
