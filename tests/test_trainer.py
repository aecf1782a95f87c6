"""The trainer contract end to end on the generated demo data with the tiny random CLIP."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, demo_args, make_cfg
from e2mim_engine.trainer import TrainerBase, build_trainer
from e2mim_engine.seeding import set_random_seed


def build(root, out, *extra, **kw):
    cfg = make_cfg(*demo_args(root, str(out), *extra, **kw))
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def test_checkpoint_holds_only_learnable_tensors(demo_root, tmp_path):
    t = build(demo_root, tmp_path, "DATASET.SUBSAMPLE_CLASSES", "base")
    t.train()
    d = tmp_path / "prompt_learner"
    # epoch 1's file existed only for resuming and is gone; the checkpoint file names epoch 2
    assert sorted(os.listdir(d)) == ["checkpoint", "model.pth.tar-2"]
    assert (d / "checkpoint").read_text() == "model.pth.tar-2\n"
    ckpt = torch.load(d / "model.pth.tar-2", weights_only=True)
    # Dassl's keys, plus the run's identity and class names
    assert set(ckpt) == {"state_dict", "epoch", "optimizer", "scheduler", "val_result", "identity", "classnames"}
    assert ckpt["identity"] == dict(t.identity) and ckpt["identity"]["trainer"] == "CoOp"
    assert list(ckpt["state_dict"]) == ["ctx"] and ckpt["epoch"] == 2
    assert ckpt["state_dict"]["ctx"].shape == (4, 128) and ckpt["state_dict"]["ctx"].dtype == torch.float32
    assert torch.equal(ckpt["state_dict"]["ctx"], t.model.prompt_learner.ctx.detach())
    # nothing of the frozen CLIP requires grad; the context did move
    assert [n for n, p in t.model.named_parameters() if p.requires_grad] == ["prompt_learner.ctx"]


def test_checkpoint_freq_keeps_multiples(demo_root, tmp_path):
    t = build(demo_root, tmp_path, "OPTIM.MAX_EPOCH", 3, "TRAIN.CHECKPOINT_FREQ", 2)
    t.train()
    assert sorted(os.listdir(tmp_path / "prompt_learner")) == ["checkpoint", "model.pth.tar-2", "model.pth.tar-3"]


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_result(demo_root, tmp_path, monkeypatch):
    ref = build(demo_root, tmp_path / "ref", "OPTIM.MAX_EPOCH", 3)
    ref.train()
    ref_ctx = ref.model.prompt_learner.ctx.detach().clone()
    ref_res = json.load(open(tmp_path / "ref" / "results.json"))

    # First attempt dies after epoch 2 has been checkpointed.
    orig = TrainerBase.after_epoch

    def dying(self):
        orig(self)
        if self.epoch == 1:
            raise Interrupt()

    monkeypatch.setattr(TrainerBase, "after_epoch", dying)
    with pytest.raises(Interrupt):
        build(demo_root, tmp_path / "run", "OPTIM.MAX_EPOCH", 3).train()
    monkeypatch.setattr(TrainerBase, "after_epoch", orig)
    assert not (tmp_path / "run" / "results.json").exists()

    # Same command again: resumes from epoch 2 and ends where the uninterrupted run ended.
    again = build(demo_root, tmp_path / "run", "OPTIM.MAX_EPOCH", 3)
    again.train()
    assert again.start_epoch == 2
    assert torch.equal(again.model.prompt_learner.ctx.detach(), ref_ctx)
    res = json.load(open(tmp_path / "run" / "results.json"))
    assert res["accuracy"] == ref_res["accuracy"] and res["correct"] == ref_res["correct"]
    log = open(tmp_path / "run" / sorted(f for f in os.listdir(tmp_path / "run") if f.startswith("log.txt"))[-1]).read() \
        if os.path.exists(tmp_path / "run" / "log.txt") else ""
    assert log == "" or "will resume training" in log


def test_same_seed_same_numbers(demo_root, tmp_path):
    a = build(demo_root, tmp_path / "a")
    a.train()
    b = build(demo_root, tmp_path / "b")
    b.train()
    assert torch.equal(a.model.prompt_learner.ctx, b.model.prompt_learner.ctx)


def test_base_trained_prompt_evaluates_on_new_classes(demo_root, tmp_path):
    base = build(demo_root, tmp_path / "base", "DATASET.SUBSAMPLE_CLASSES", "base")
    base.train()
    new = build(demo_root, tmp_path / "new", "DATASET.SUBSAMPLE_CLASSES", "new")
    assert new.classnames != base.classnames and len(new.classnames) == 5
    new.load_model(str(tmp_path / "base"), epoch=2)
    assert torch.equal(new.model.prompt_learner.ctx, base.model.prompt_learner.ctx)
    # the new-class prompts carry the new class names
    assert not torch.equal(new.model.prompt_learner.token_suffix, base.model.prompt_learner.token_suffix)
    acc = new.test()
    res = json.load(open(tmp_path / "new" / "results.json"))
    assert res["subsample"] == "new" and res["num_classes"] == 5 and res["accuracy"] == acc
    assert res["epoch"] == 2
    with pytest.raises(Exception, match="Model not found"):
        new.load_model(str(tmp_path / "base"), epoch=7)


def test_zeroshot_records_templates(demo_root, tmp_path):
    t = build(demo_root, tmp_path, trainer="ZeroshotCLIP2")
    t.test()
    res = json.load(open(tmp_path / "results.json"))
    assert res["templates"][-1] == "a photo of a {}, a type of fruit." and len(res["templates"]) == 8


PROGRESS = re.compile(r"^epoch \[(\d+)/(\d+)\] batch \[(\d+)/(\d+)\] time \d+\.\d{3} \(\d+\.\d{3}\) "
                      r"data \d+\.\d{3} \(\d+\.\d{3}\) loss \d+\.\d{4} \(\d+\.\d{4}\) "
                      r"acc \d+\.\d{4} \(\d+\.\d{4}\) lr \d\.\d{4}e[-+]\d\d eta \d+:\d\d:\d\d$")
RESULT = re.compile(r"=> result\n\* total: ([\d,]+)\n\* correct: ([\d,]+)\n\* accuracy: (\d+\.\d)%\n"
                    r"\* error: (\d+\.\d)%\n\* macro_f1: (\d+\.\d)%\n")


def run_train(*argv):
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_train_py_end_to_end_log_lines_and_results(demo_root, tmp_path):
    out = tmp_path / "out"
    r = run_train(*demo_args(demo_root, str(out), "DATASET.SUBSAMPLE_CLASSES", "base", "TRAIN.PRINT_FREQ", 2))
    assert r.returncode == 0, r.stdout + r.stderr
    log = (out / "log.txt").read_text()
    assert log in r.stdout or log.strip() in r.stdout  # console and file carry the same lines
    progress = [m.groups() for m in map(PROGRESS.match, log.splitlines()) if m]
    # 5 base classes x 4 shots = 20 images, batch 8 -> 2 full batches, printed every 2
    assert [(int(e), int(b)) for e, _, b, _ in progress] == [(1, 2), (2, 2)]
    assert "\nFinish training\n" in log and "Deploy the last-epoch model" in log
    m = RESULT.search(log)
    assert m, log[-800:]
    res = json.loads((out / "results.json").read_text())
    assert int(m.group(1)) == res["total"] == 30 and int(m.group(2)) == res["correct"]
    assert m.group(3) == f"{res['accuracy']:.1f}" and m.group(5) == f"{res['macro_f1']:.1f}"
    for k, v in {"split": "test", "trainer": "CoOp", "dataset": "Demo", "seed": 1, "shots": 4,
                 "subsample": "base", "num_classes": 5, "backbone": "random:tiny"}.items():
        assert res[k] == v, k
    assert (out / "tensorboard").is_dir() and (out / "prompt_learner" / "model.pth.tar-2").is_file()
    # a second run into the same folder gets a new timestamped log and says it resumes
    r = run_train(*demo_args(demo_root, str(out), "DATASET.SUBSAMPLE_CLASSES", "base"))
    assert r.returncode == 0 and "Found checkpoint at" in r.stdout and "will resume training" in r.stdout
    assert len([f for f in os.listdir(out) if f.startswith("log.txt")]) == 2


def run_main(capsys, *argv):
    """train.py's main() in-process (spawning Python per case costs seconds of imports)."""
    from e2mim_engine.cli import main
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_bad_input_is_one_paragraph(tmp_path, capsys):
    code, err = run_main(capsys, "--root", tmp_path, "--trainer", "CoOpp", "--output-dir", tmp_path / "o",
                         "DATASET.NAME", "Demo")
    assert code == 2 and "Traceback" not in err
    assert "Unknown trainer 'CoOpp'" in err and "ZeroshotCLIP" in err
    assert not (tmp_path / "o").exists()  # nothing written for a run that cannot start
    code, err = run_main(capsys, "--root", tmp_path / "missing", "--trainer", "CoOp", "--output-dir", tmp_path / "o2",
                         "DATASET.NAME", "Caltech101", "MODEL.BACKBONE.NAME", "random:tiny")
    assert code == 2 and str(tmp_path / "missing") in err and "--root" in err
    # a path error is found before anything is written (no log, no folder left behind)
    assert err.startswith("error: ") and not (tmp_path / "o2").exists()
    code, err = run_main(capsys, "--root", tmp_path, "--trainer", "CoOp", "OPTIM.MAXEPOCH", 3)
    assert code == 2 and "closest valid key is OPTIM.MAX_EPOCH." in err
    code, err = run_main(capsys, "--root", tmp_path, "--trainer", "CoOp", "--output-dir", tmp_path / "o3",
                         "DATASET.NAME", "Demo", "MODEL.BACKBONE.NAME", "ViT-B/16",
                         "MODEL.BACKBONE.CACHE_DIR", tmp_path / "clip")
    assert code == 2 and str(tmp_path / "clip" / "ViT-B-16.pt") in err


def test_best_val_model_selection(demo_root, tmp_path):
    t = build(demo_root, tmp_path, "TEST.FINAL_MODEL", "best_val")
    t.train()
    best = torch.load(tmp_path / "prompt_learner" / "model-best.pth.tar", weights_only=True)
    assert best["val_result"] == t.best_result and 1 <= best["epoch"] <= 2
    # the checkpoint file still names the newest epoch file, not the best copy
    assert (tmp_path / "prompt_learner" / "checkpoint").read_text() == "model.pth.tar-2\n"
    resumed = build(demo_root, tmp_path, "TEST.FINAL_MODEL", "best_val")
    resumed.before_train()
    assert resumed.best_result == best["val_result"]
    resumed.close_writer()
