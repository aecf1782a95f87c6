"""Faults and bad input of the tools: result tables that never show a number that is not a
run's test accuracy (validation blocks, corrupt or contradicting results.json), sweep files
with unknown keys, status/report on folders that are not sweeps, and the one-job protocol
scripts on a mistyped dataset name. Each case asserts what the user sees."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from e2mim_engine.run import LOCK_FILE
from e2mim_tools import parse_results
from e2mim_tools.results import build_report, parse_dassl_log, render_csv, render_markdown
from e2mim_tools.sweep.cli import main as sweep_main
from test_results import b2n, cells, dassl_log


def _killed_during_final_test(val_accs, val_after_finish):
    """A published-code log of a run with TEST.REPORT_VAL killed during its final test: the
    last block after "Finish training" is the validation one."""
    text = dassl_log(final=None, val=val_accs)
    return text + "\n".join(["Deploy the last-epoch model", "Evaluate on the *val* set", "=> result",
                             "* total: 40", "* correct: 10", f"* accuracy: {val_after_finish:.2f}%",
                             "* error: 75.00%", "* macro_f1: 20.0%", "Evaluate on the *test* set"]) + "\n"


# ---- (2) results integrity -------------------------------------------------------------------
def test_dassl_log_never_reads_a_validation_block():
    # killed during the final test: unfinished, not the validation accuracy (25.00)
    assert parse_dassl_log(_killed_during_final_test([20.0], 25.0)) is None
    # finished: the test block after the validation one
    done = _killed_during_final_test([20.0], 25.0) + "\n".join(
        ["=> result", "* total: 44", "* correct: 16", "* accuracy: 36.36%", "* error: 63.64%"]) + "\n"
    assert parse_dassl_log(done)["accuracy"] == 36.36
    # the wording of the Dassl version CoOp was released with
    old = dassl_log(final=None, val=[20.0]) + "Do evaluation on val set\n=> result\n* accuracy: 25.0%\n"
    assert parse_dassl_log(old) is None
    assert parse_dassl_log(old + "Do evaluation on test set\n=> result\n* accuracy: 36.4%\n")["accuracy"] == 36.4


def test_killed_run_of_the_project_is_unfinished_not_its_validation_number(tmp_path, capsys):
    root = str(tmp_path)
    for s in (1, 2):
        b2n(root, "train_base", "dtd", "CoOp", s, 40.0)
    d = tmp_path / "base2new/train_base/dtd/shots_16/CoOp/cfg/seed3"
    d.mkdir(parents=True)
    (d / LOCK_FILE).write_text("123")                     # a folder our train.py wrote
    # even a log whose last block looks like a test block is not read: results.json only
    (d / "log.txt").write_text(dassl_log(final=99.0, val=[25.0]))
    rep = build_report([root], reported=False, tables=["base2new"])
    assert rep.unfinished == [str(d)]
    cell = cells(rep, "Base")[("DTD", "CoOp")]["base"]
    assert (cell.mean, cell.n, cell.flagged) == (40.0, 2, True)
    assert "99.00" not in render_markdown(rep) and "Unfinished runs" in render_markdown(rep)


def test_corrupt_results_json_is_skipped_with_a_warning(tmp_path, capsys):
    root = str(tmp_path)
    for s in (1, 2, 3):
        b2n(root, "train_base", "eurosat", "CoOp", s, 70.0 + s)
        b2n(root, "test_new", "eurosat", "CoOp", s, 50.0 + s)
    bad = os.path.join(root, "base2new/test_new/eurosat/shots_16/CoOp/cfg/seed2/results.json")
    with open(bad, "w") as f:
        f.write('{"split": "test", "accur')              # half-written
    other = b2n(root, "train_base", "dtd", "CoOp", 1, 10.0)
    with open(os.path.join(other, "results.json"), "w") as f:
        json.dump([1, 2], f)                             # JSON, but not a result
    assert parse_results.main([root, "--no-reported", "--tables", "base2new"]) == 0
    cap = capsys.readouterr()
    assert f"warning: {bad} cannot be read (JSONDecodeError" in cap.err
    assert "dtd/shots_16/CoOp/cfg/seed1/results.json holds no numeric 'accuracy'" in cap.err
    assert "| EuroSAT | CoOp | 72.00 ± 0.82 | 52.00 ± 1.00 (2/3)* |" in cap.out
    assert "Flagged runs (result not used): 2" in cap.out
    assert parse_results.main([root, "--strict"]) == 1
    rep = build_report([root], reported=False)
    assert not any(bad[:-len("/results.json")] == m for m in rep.missing + rep.unfinished)
    assert "flagged" in render_csv(rep)


def test_results_json_contradicting_its_folder_is_flagged_not_averaged(tmp_path, capsys):
    root = str(tmp_path)
    for s in (1, 2, 3):
        d = b2n(root, "test_new", "caltech101", "CoOp", s, 60.0)
        ident = {"trainer": "CoOp", "dataset": "Caltech101", "seed": s, "shots": 16, "subsample": "new"}
        if s == 2:   # an evaluation of the base classes written into the new-class folder
            ident["subsample"] = "base"
        if s == 3:   # another method's result copied into CoOp's tree
            ident.update(trainer="KgCoOp", seed=1)
        with open(os.path.join(d, "results.json"), "w") as f:
            json.dump(dict(ident, split="test", accuracy=90.0 + s), f)
    rep = build_report([root], reported=False)
    new = cells(rep, "Base")[("Caltech101", "CoOp")]["new"]
    assert (new.mean, new.n) == (91.0, 1)
    assert any("seed2/results.json contradicts its folder (subsample: folder 'new', results.json 'base')" in p
               for p in rep.flagged)
    assert any("seed3/results.json contradicts its folder (trainer: folder 'CoOp', results.json 'KgCoOp'; "
               "seed: folder 3, results.json 1)" in p for p in rep.flagged)
    assert parse_results.main([root, "--no-reported"]) == 0
    assert capsys.readouterr().err.count("left out of the tables") == 2


# ---- (5) tools -------------------------------------------------------------------------------
@pytest.mark.parametrize("content, expected", [
    ({"seds": [1]}, "sweep settings: unknown key(s) 'seds' (did you mean 'seeds'?)"),
    ({"methods": [{"method": "coop", "cgf": "x"}]}, "methods[0]: unknown key(s) 'cgf' (did you mean 'cfg'?)"),
    ({"slurm": {"partiton": "gpu"}}, "slurm: unknown key(s) 'partiton' (did you mean 'partition'?)"),
    ({"local": {"slot": 2}}, "local: unknown key(s) 'slot' (did you mean 'slots'?)"),
    ({"methods": ["coop"], "name": "x", "fewshot_shot": [1]},
     "sweep settings: unknown key(s) 'fewshot_shot' (did you mean 'fewshot_shots'?)"),
])
def test_sweep_file_unknown_key_names_the_closest(tmp_path, capsys, content, expected):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(dict({"data": str(tmp_path), "methods": ["coop"], "datasets": ["dtd"]}, **content)))
    assert sweep_main(["run", str(f), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1


def test_status_and_report_on_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "base2new").mkdir(parents=True)
    assert sweep_main(["status", str(out)]) == 2
    assert f"error: {out} is a folder, not a sweep file" in capsys.readouterr().err
    small = ["--data", str(tmp_path), "--output", str(out), "--name", "paper", "--methods", "coop",
             "--protocols", "base2new", "--datasets", "dtd", "--seeds", "1"]
    assert sweep_main(["report", *small]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}/sweeps/paper is not a sweep's folder (no sweep.json")
    assert "e2mim-results" in err
    assert not (out / "sweeps").exists()          # nothing written
    # status of a sweep that has not run lists what it would run, and says why all is pending
    assert sweep_main(["status", *small]) == 0
    cap = capsys.readouterr()
    assert cap.err.startswith(f"note: {out}/sweeps/paper is not a sweep's folder") and "pending" in cap.out
    (out / "sweeps" / "coop-base2new").mkdir(parents=True)
    (out / "sweeps" / "coop-base2new" / "sweep.json").write_text("{}")
    assert sweep_main(["report", *small]) == 2
    assert "coop-base2new (pick one with --name)" in capsys.readouterr().err


@pytest.mark.parametrize("script, args", [("base2new_train.sh", ["compworld_shfit", 1]),
                                          ("base2new_test.sh", ["compworld_shfit", 1]),
                                          ("xd_test.sh", ["compworld_shfit", 1]),
                                          ("fewshot_train.sh", ["compworld_shfit", 2, 1])])
def test_one_job_scripts_stop_on_a_bad_dataset_name(tmp_path, script, args):
    env = dict(os.environ, PYTHON=sys.executable, DATA=str(tmp_path), OUTPUT=str(tmp_path / "out"))
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "coop", script), *map(str, args)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("error: unknown dataset") and "compworld_shfit" in r.stderr and "Valid names" in r.stderr
    assert "Run this job" not in r.stdout and os.listdir(tmp_path / "out") == []
