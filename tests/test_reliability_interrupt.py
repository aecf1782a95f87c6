"""SIGTERM (a scheduler's preemption) and SIGINT (Ctrl-C): one line naming the last saved
epoch and how to resume, exit status 143 / 130, no traceback, a whole checkpoint on disk,
and a rerun of the same command that ends with the uninterrupted result -- for CoOp and for
E2MIM (two checkpointed models). The signal is sent to the test's own process at a chosen
point (mid-batch, or in the middle of a checkpoint write), and once from outside to a real
train.py."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import DEMO_CFG, ROOT, demo_args
from e2mim_engine.checkpoint import load_checkpoint
from e2mim_engine.cli import main
from e2mim_engine.run import MANIFEST
from e2mim_engine.trainer import TrainerBase
from e2mim_engine.utils import read_json

E2_TINY = os.path.join(ROOT, "configs", "trainers", "E2MIM", "demo_tiny.yaml")


def coop_argv(root, out):
    return [str(a) for a in demo_args(root, str(out), "OPTIM.MAX_EPOCH", 3)]


def e2mim_argv(root, out):
    return [str(a) for a in ("--root", root, "--seed", 1, "--trainer", "E2MIM", "--dataset-config-file", DEMO_CFG,
                             "--config-file", E2_TINY, "--output-dir", out, "DATASET.NUM_SHOTS", 2,
                             "DATASET.SUBSAMPLE_CLASSES", "base", "DATALOADER.NUM_WORKERS", 0,
                             "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "OPTIM.MAX_EPOCH", 3, "VERBOSE", False,
                             "TRAINER.E2MIM.MI_HIDDEN", 16)]


def learned(out):
    """Every checkpointed tensor of the last epoch, by model and name."""
    m = read_json(out / MANIFEST)
    return {f"{n}/{k}": v for n, f in m["models"].items()
            for k, v in load_checkpoint(str(out / n / f))["state_dict"].items()}


def signal_at(monkeypatch, signum, epoch, batch):
    """Send ``signum`` to this process during the training step of (epoch, batch), 0-based."""
    real = TrainerBase.train_step

    def step(self, b):
        if (self.epoch, self.batch_idx) == (epoch, batch):
            os.kill(os.getpid(), signum)     # delivered at once: the step is cut short
        return real(self, b)

    monkeypatch.setattr(TrainerBase, "train_step", step)


@pytest.mark.parametrize("argv, signum, code", [(coop_argv, signal.SIGTERM, 143), (e2mim_argv, signal.SIGINT, 130),
                                                (e2mim_argv, signal.SIGTERM, 143)])
def test_signal_mid_batch_then_rerun_gives_the_uninterrupted_result(demo_root, tmp_path, capsys, monkeypatch,
                                                                     argv, signum, code):
    assert main(argv(demo_root, tmp_path / "ref")) == 0
    ref = read_json(tmp_path / "ref" / "results.json")
    out = tmp_path / "run"
    signal_at(monkeypatch, signum, epoch=2, batch=0)
    capsys.readouterr()
    assert main(argv(demo_root, out)) == code
    err = capsys.readouterr().err
    name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
    assert err == (f"interrupted by {name}: the last saved epoch is 2 of 3 (in {out}); run the same command again "
                   f"to resume from it.\n")
    assert err.splitlines()[-1] in (out / "log.txt").read_text()
    assert read_json(out / MANIFEST)["epoch"] == 2 and not (out / "results.json").exists()
    learned(out)                                            # whole: every file of epoch 2 loads
    monkeypatch.undo()
    assert main(argv(demo_root, out)) == 0                  # the same command resumes ...
    assert "will resume training" in capsys.readouterr().out
    res = read_json(out / "results.json")                   # ... to the uninterrupted result
    assert (res["accuracy"], res["epoch"]) == (ref["accuracy"], ref["epoch"])
    a, b = learned(out), learned(tmp_path / "ref")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_signal_during_a_checkpoint_write_waits_for_the_whole_epoch(demo_root, tmp_path, capsys, monkeypatch):
    """E2MIM writes two models' files and the manifest per epoch: a SIGTERM after the first
    file is acted on once the epoch is complete on disk."""
    from e2mim_engine import checkpointer
    real = checkpointer.save_checkpoint

    def save(state, directory, model_name=""):
        fname = real(state, directory, model_name)
        if state["epoch"] == 2 and os.path.basename(directory) == "prompt_learner" and not model_name:
            os.kill(os.getpid(), signal.SIGTERM)
        return fname

    monkeypatch.setattr(checkpointer, "save_checkpoint", save)
    out = tmp_path / "run"
    assert main(e2mim_argv(demo_root, out)) == 143
    err = capsys.readouterr().err
    assert "the last saved epoch is 2 of 3" in err and "Traceback" not in err
    m = read_json(out / MANIFEST)
    assert m["epoch"] == 2 and m["models"] == {"prompt_learner": "model.pth.tar-2", "mi_estimator": "model.pth.tar-2"}
    learned(out)


def test_interrupted_before_the_first_save_and_during_evaluation(demo_root, tmp_path, capsys, monkeypatch):
    signal_at(monkeypatch, signal.SIGINT, epoch=0, batch=0)
    assert main(coop_argv(demo_root, tmp_path / "a")) == 130
    assert capsys.readouterr().err == ("interrupted by SIGINT before the first epoch was saved: nothing to resume; "
                                       "run the same command again to start over.\n")
    monkeypatch.undo()
    real = TrainerBase.eval_step

    def eval_step(self, x):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(self, x)

    monkeypatch.setattr(TrainerBase, "eval_step", eval_step)
    argv = ["--eval-only"] + [str(a) for a in demo_args(demo_root, str(tmp_path / "z"), trainer="ZeroshotCLIP")]
    assert main(argv) == 143
    assert capsys.readouterr().err == ("interrupted by SIGTERM during the evaluation: results.json was not written; "
                                       "run the same command again to evaluate.\n")
    assert not (tmp_path / "z" / "results.json").exists()


def test_ctrl_c_on_a_real_train_py(demo_root, tmp_path):
    """From outside, as a terminal sends it (to the whole process group, DataLoader workers
    included): exit 130, one line, no traceback."""
    out = tmp_path / "run"
    argv = [sys.executable, os.path.join(ROOT, "train.py")] + \
        [str(a) for a in demo_args(demo_root, str(out), "OPTIM.MAX_EPOCH", 200, "DATALOADER.NUM_WORKERS", 2)]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (out / MANIFEST).exists():
            assert p.poll() is None and time.time() < deadline
            time.sleep(0.1)
        os.killpg(p.pid, signal.SIGINT)
        err = p.communicate(timeout=60)[1]
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err and err.startswith("interrupted by SIGINT: the last saved epoch is ")
    epoch = read_json(out / MANIFEST)["epoch"]
    assert f"the last saved epoch is {epoch} of 200" in err and err.count("\n") == 1


# ---- (3) evaluations that know what they load --------------------------------------------------
def _retag(path, **identity):
    """The checkpoint as another trainer / backbone would have written it."""
    ck = torch.load(path, weights_only=False)
    ck["identity"].update(identity)
    torch.save(ck, path)


@pytest.fixture
def coop_run(demo_root, tmp_path, capsys):
    out = tmp_path / "train"
    assert main([str(a) for a in demo_args(demo_root, str(out), "DATASET.SUBSAMPLE_CLASSES", "base")]) == 0
    capsys.readouterr()
    return out


def _eval(demo_root, out, model_dir, *extra):
    return ["--eval-only", "--model-dir", str(model_dir), "--load-epoch", "2", *extra] + \
        [str(a) for a in demo_args(demo_root, str(out), "DATASET.SUBSAMPLE_CLASSES", "new")]


@pytest.mark.parametrize("identity, expected", [
    ({"trainer": "E2MIM"}, "trainer: checkpoint 'E2MIM', this run 'CoOp'"),
    ({"backbone": "random:ViT-B/16"}, "backbone: checkpoint 'random:ViT-B/16', this run 'random:tiny'"),
    ({"trainer": "KgCoOp", "backbone": "ViT-B/16"},
     "trainer: checkpoint 'KgCoOp', this run 'CoOp'; backbone: checkpoint 'ViT-B/16', this run 'random:tiny'"),
])
def test_evaluation_of_another_trainers_or_backbones_checkpoint(demo_root, tmp_path, capsys, coop_run, identity,
                                                                 expected):
    _retag(coop_run / "prompt_learner" / "model.pth.tar-2", **identity)
    code = main(_eval(demo_root, tmp_path / "eval", coop_run))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"was not trained as this run evaluates it: {expected}." in err
    assert "--cross-eval" in err and not (tmp_path / "eval").exists()
    # on purpose: evaluated, and the results say what differs
    assert main(_eval(demo_root, tmp_path / "cross", coop_run, "--cross-eval")) == 0
    assert read_json(tmp_path / "cross" / "results.json")["cross_eval"] == expected.split("; ")


def test_class_specific_prompts_on_other_classes_of_the_same_count(demo_root, tmp_path, capsys):
    """CSC contexts of the 5 base classes would load for the 5 new ones (same shape): refused."""
    out = tmp_path / "train"
    assert main([str(a) for a in demo_args(demo_root, str(out), "DATASET.SUBSAMPLE_CLASSES", "base",
                                           "TRAINER.COOP.CSC", True)]) == 0
    capsys.readouterr()
    code = main(_eval(demo_root, tmp_path / "eval", out) + ["TRAINER.COOP.CSC", "True"])
    err = capsys.readouterr().err
    assert code == 2 and "classes of its class-specific tensors: checkpoint 5 (" in err and "this run 5 (" in err
    # the same classes load (base -> base)
    argv = ["--eval-only", "--model-dir", str(out), "--load-epoch", "2"] + \
        [str(a) for a in demo_args(demo_root, str(tmp_path / "same"), "DATASET.SUBSAMPLE_CLASSES", "base",
                                   "TRAINER.COOP.CSC", True)]
    assert main(argv) == 0 and "cross_eval" not in read_json(tmp_path / "same" / "results.json")


def test_after_an_interrupt_only_the_loaders_teardown_errors_are_silenced(monkeypatch):
    """The workers die with the signal: an iterator's __del__ and multiprocessing's resource
    sharer thread may then fail as they are collected (seen as a traceback after the one-line
    message under load). Those are dropped; any other late error is still reported."""
    import threading
    import types
    import multiprocessing.resource_sharer as resource_sharer
    from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter
    from e2mim_engine import cli
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(("unraisable", u.object)))
    monkeypatch.setattr(threading, "excepthook", lambda a: seen.append(("thread", a.exc_traceback)))
    cli._quiet_loader_teardown()

    def traceback_from(filename):
        try:
            exec(compile("raise BrokenPipeError(32, 'Broken pipe')", filename, "exec"))
        except BrokenPipeError as e:
            return e.__traceback__
    sys.unraisablehook(types.SimpleNamespace(object=_MultiProcessingDataLoaderIter.__del__, exc_traceback=None))
    threading.excepthook(types.SimpleNamespace(exc_traceback=traceback_from(resource_sharer.__file__)))
    assert seen == []
    mine = traceback_from(__file__)
    sys.unraisablehook(types.SimpleNamespace(object=print, exc_traceback=None))
    threading.excepthook(types.SimpleNamespace(exc_traceback=mine))
    assert seen == [("unraisable", print), ("thread", mine)]
