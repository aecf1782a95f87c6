"""Nothing lost, nothing mixed up, no tracebacks: run identity, the output-folder lock, the
checkpoint manifest under simulated kills, NaN, file permissions, and bad input as one
paragraph (exit code 2, first line "error: ...")."""
import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import DEMO_CFG, ROOT, demo_args, make_cfg
from e2mim_engine import checkpoint as ckpt_mod
from e2mim_engine.cli import main
from e2mim_engine.errors import StorageError, UserError, storage_error, user_message
from e2mim_engine.run import LOCK_FILE, MANIFEST, OutputLock
from e2mim_engine.seeding import set_random_seed
from e2mim_engine.trainer import TrainerBase, build_trainer
from e2mim_engine.utils import atomic_write, read_json

E2_TINY = os.path.join(ROOT, "configs", "trainers", "E2MIM", "demo_tiny.yaml")


def build(root, out, *extra, **kw):
    cfg = make_cfg(*demo_args(root, str(out), *extra, **kw))
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def e2mim_args(root, out, *extra):
    return ["--root", root, "--seed", 1, "--trainer", "E2MIM", "--dataset-config-file", DEMO_CFG,
            "--config-file", E2_TINY, "--output-dir", str(out), "DATASET.NUM_SHOTS", 2,
            "DATASET.SUBSAMPLE_CLASSES", "base", "DATALOADER.NUM_WORKERS", 0, "DATALOADER.TRAIN_X.BATCH_SIZE", 4,
            "OPTIM.MAX_EPOCH", 3, "VERBOSE", False, "TRAINER.E2MIM.MI_HIDDEN", 16, *extra]


def run_main(capsys, *argv):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def first_line(err):
    return err.strip().splitlines()[0] if err.strip() else ""


# ---- identity ----------------------------------------------------------------------------------
def test_identity_is_recorded_everywhere(demo_root, tmp_path):
    t = build(demo_root, tmp_path, "DATASET.SUBSAMPLE_CLASSES", "base")
    t.train()
    ident = dict(t.identity)
    assert set(ident) == {"trainer", "dataset", "backbone", "backbone_sha256", "seed", "shots", "subsample",
                          "config_hash", "version"}
    assert (ident["trainer"], ident["dataset"], ident["seed"], ident["shots"], ident["subsample"]) == \
        ("CoOp", "Demo", 1, 4, "base")
    assert read_json(tmp_path / "results.json")["identity"] == ident
    manifest = read_json(tmp_path / MANIFEST)
    assert manifest["identity"] == ident and manifest["epoch"] == 2
    assert manifest["models"] == {"prompt_learner": "model.pth.tar-2"}
    assert torch.load(tmp_path / "prompt_learner" / "model.pth.tar-2", weights_only=True)["identity"] == ident


def test_identity_ignores_where_and_how_verbosely(demo_root, tmp_path):
    a = make_cfg(*demo_args(demo_root, str(tmp_path / "a")))
    b = make_cfg(*demo_args(demo_root + "/", str(tmp_path / "b"), "VERBOSE", True, "DATALOADER.NUM_WORKERS", 2,
                            "TRAIN.PRINT_FREQ", 1))
    from e2mim_engine.run import run_identity
    assert run_identity(a) == run_identity(b)
    c = make_cfg(*demo_args(demo_root, str(tmp_path / "a"), "OPTIM.LR", 0.01))
    assert run_identity(a)["config_hash"] != run_identity(c)["config_hash"]


def test_restart_with_other_settings_is_refused(demo_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(capsys, *demo_args(demo_root, str(out)))[0] == 0
    before = (out / "results.json").read_bytes()
    code, err = run_main(capsys, *demo_args(demo_root, str(out), "OPTIM.LR", 0.01))
    assert code == 2 and "Traceback" not in err
    assert "OPTIM.LR: 0.002 -> 0.01" in err and "new --output-dir" in err
    code, err = run_main(capsys, *demo_args(demo_root, str(out), seed=2))
    assert code == 2 and "seed: 1 -> 2" in err
    assert (out / "results.json").read_bytes() == before  # nothing overwritten


def test_extending_a_finished_run_is_refused_clearly(demo_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(capsys, *demo_args(demo_root, str(out)))[0] == 0
    code, err = run_main(capsys, *demo_args(demo_root, str(out), "OPTIM.MAX_EPOCH", 3))
    assert code == 2 and "OPTIM.MAX_EPOCH: 2 -> 3" in err and "Extending a run" in err


def test_finished_run_is_reported_not_retested(demo_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(capsys, *demo_args(demo_root, str(out)))[0] == 0
    res = read_json(out / "results.json")
    mtime = os.path.getmtime(out / "results.json")
    code = main([str(a) for a in demo_args(demo_root, str(out))])
    printed = capsys.readouterr().out
    assert code == 0 and "already finished" in printed and "=> result" not in printed.split("already finished")[-1]
    assert os.path.getmtime(out / "results.json") == mtime and read_json(out / "results.json") == res
    # a finished run whose final test was interrupted (no results.json) is tested, epoch right
    os.remove(out / "results.json")
    assert main([str(a) for a in demo_args(demo_root, str(out))]) == 0
    capsys.readouterr()
    again = read_json(out / "results.json")
    assert again["epoch"] == 2 and again["accuracy"] == res["accuracy"]


def test_resume_folder_must_exist(demo_root, tmp_path, capsys):
    code, err = run_main(capsys, "--resume", tmp_path / "nowhere", *demo_args(demo_root, str(tmp_path / "o2")))
    assert code == 2 and "--resume" in err and "no such folder" in err


# ---- the lock ----------------------------------------------------------------------------------
def test_second_writer_of_a_folder_is_refused(demo_root, tmp_path, capsys):
    out = tmp_path / "run"
    with OutputLock(str(out)):
        code, err = run_main(capsys, *demo_args(demo_root, str(out)))
    assert code == 2 and "being written by another run" in err and str(os.getpid()) in err
    assert not (out / "log.txt").exists()  # refused before writing anything
    assert run_main(capsys, *demo_args(demo_root, str(out)))[0] == 0  # released


def test_lock_dies_with_its_process(tmp_path):
    d = tmp_path / "run"
    code = textwrap.dedent(f"""
        import os, time
        from e2mim_engine.run import OutputLock
        lock = OutputLock({str(d)!r}).__enter__()
        print("locked", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match="another run"):
            OutputLock(str(d)).__enter__()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    with OutputLock(str(d)):  # the OS released it with the process
        assert (d / LOCK_FILE).exists()


# ---- several models are one unit; kills between and inside writes -------------------------------
class Killed(Exception):
    pass


def _uninterrupted(root, out):
    set_random_seed(1)
    t = build_trainer(make_cfg(*e2mim_args(root, out)))
    t.train()
    return t


def test_kill_between_model_writes_resumes_to_the_same_result(demo_root, tmp_path, monkeypatch):
    ref = _uninterrupted(demo_root, tmp_path / "ref")
    ref_res = read_json(tmp_path / "ref" / "results.json")
    # The run dies in epoch 2's save, after the prompt learner's file and before the critic's.
    real = ckpt_mod.save_checkpoint
    calls = []

    def dying(state, directory, model_name=""):
        calls.append(os.path.basename(directory))
        if state["epoch"] == 2 and os.path.basename(directory) == "mi_estimator":
            raise Killed()
        return real(state, directory, model_name)

    monkeypatch.setattr("e2mim_engine.checkpointer.save_checkpoint", dying)
    set_random_seed(1)
    with pytest.raises(Killed):
        build_trainer(make_cfg(*e2mim_args(demo_root, tmp_path / "run"))).train()
    monkeypatch.setattr("e2mim_engine.checkpointer.save_checkpoint", real)
    run = tmp_path / "run"
    # on disk: prompt learner at epoch 2, critic at epoch 1; the manifest still says epoch 1
    assert (run / "prompt_learner" / "model.pth.tar-2").exists()
    assert not (run / "mi_estimator" / "model.pth.tar-2").exists()
    assert read_json(run / MANIFEST)["epoch"] == 1
    set_random_seed(1)
    again = build_trainer(make_cfg(*e2mim_args(demo_root, run)))
    again.train()
    assert again.start_epoch == 1
    assert torch.equal(again.model.prompt_learner.ctx, ref.model.prompt_learner.ctx)
    for a, b in zip(again.critic.parameters(), ref.critic.parameters()):
        assert torch.equal(a, b)
    res = read_json(run / "results.json")
    assert (res["accuracy"], res["epoch"]) == (ref_res["accuracy"], ref_res["epoch"])


def test_kill_inside_a_write_leaves_the_old_file_and_no_temp(demo_root, tmp_path, monkeypatch):
    ref = build(demo_root, tmp_path / "ref", "OPTIM.MAX_EPOCH", 3)
    ref.train()
    real_save = torch.save

    def dies_midway(obj, f, *a, **k):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            f.write(b"half a checkpoint")
            raise Killed()
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(Killed):
        build(demo_root, tmp_path / "run", "OPTIM.MAX_EPOCH", 3).train()
    monkeypatch.setattr(torch, "save", real_save)
    d = tmp_path / "run" / "prompt_learner"
    assert sorted(os.listdir(d)) == ["checkpoint", "model.pth.tar-1"]  # no half file, no temp left
    # a temp file that a SIGKILL would leave behind is removed when the run resumes
    (d / ".model.pth.tar-2.abc123.tmp").write_bytes(b"junk")
    again = build(demo_root, tmp_path / "run", "OPTIM.MAX_EPOCH", 3)
    again.train()
    assert again.start_epoch == 1 and torch.equal(again.model.prompt_learner.ctx, ref.model.prompt_learner.ctx)
    assert not [f for f in os.listdir(d) if f.endswith(".tmp")]


def test_folder_without_manifest_and_mixed_epochs_is_refused(demo_root, tmp_path):
    t = _uninterrupted(demo_root, tmp_path / "run")
    run = tmp_path / "run"
    os.remove(run / MANIFEST)  # as written by a version without manifests
    (run / "mi_estimator" / "checkpoint").write_text("model.pth.tar-1\n")
    shutil.copy(run / "mi_estimator" / "model.pth.tar-3", run / "mi_estimator" / "model.pth.tar-1")
    set_random_seed(1)
    again = build_trainer(make_cfg(*e2mim_args(demo_root, run)))
    with pytest.raises(UserError, match="different epochs"):
        again.before_train()
    again.close_writer()
    assert t.start_epoch == 0


def test_manifest_naming_missing_files_is_refused(demo_root, tmp_path):
    build(demo_root, tmp_path).train()
    os.remove(tmp_path / "prompt_learner" / "model.pth.tar-2")
    t = build(demo_root, tmp_path)
    with pytest.raises(UserError, match="names files that are gone"):
        t.before_train()


# ---- NaN --------------------------------------------------------------------------------------
def test_nan_loss_stops_with_epoch_batch_lr_and_keeps_the_good_checkpoint(demo_root, tmp_path, capsys, monkeypatch):
    orig = TrainerBase.run_epoch

    def poisoned(self):
        if self.epoch == 1:
            with torch.no_grad():
                self.model.prompt_learner.ctx.fill_(float("nan"))
        return orig(self)

    monkeypatch.setattr(TrainerBase, "run_epoch", poisoned)
    out = tmp_path / "run"
    code, err = run_main(capsys, *demo_args(demo_root, str(out)))
    assert code == 2 and "Traceback" not in err
    line = first_line(err)
    assert "NaN" in line and "epoch 2/2" in line and "batch 1/" in line and "lr " in line
    assert read_json(out / MANIFEST)["epoch"] == 1 and not (out / "results.json").exists()
    ck = torch.load(out / "prompt_learner" / "model.pth.tar-1", weights_only=True)
    assert torch.isfinite(ck["state_dict"]["ctx"]).all()


def test_nan_weights_are_never_saved(demo_root, tmp_path):
    t = build(demo_root, tmp_path)
    with torch.no_grad():
        t.model.prompt_learner.ctx[0, 0] = float("inf")
    with pytest.raises(UserError, match="NaN or infinite"):
        t.save_model(0, str(tmp_path))
    assert not (tmp_path / "prompt_learner" / "model.pth.tar-1").exists()


# ---- results are true --------------------------------------------------------------------------
def test_results_name_the_shots_drawn_and_warn_when_short(demo_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(capsys, *demo_args(demo_root, str(out), "DATASET.NUM_SHOTS", 50, "OPTIM.MAX_EPOCH", 1))[0] == 0
    res = read_json(out / "results.json")
    assert res["shots"] == 50 and res["shots_drawn"]["max"] < 50 and res["epoch"] == 1
    assert "fewer than NUM_SHOTS=50" in (out / "log.txt").read_text()
    out2 = tmp_path / "run2"
    assert run_main(capsys, *demo_args(demo_root, str(out2), "OPTIM.MAX_EPOCH", 1))[0] == 0
    assert read_json(out2 / "results.json")["shots_drawn"] == {"min": 4, "max": 4}
    assert "fewer than NUM_SHOTS" not in (out2 / "log.txt").read_text()


def test_eval_only_needs_a_model_dir_unless_zero_shot(demo_root, tmp_path, capsys):
    code, err = run_main(capsys, *demo_args(demo_root, str(tmp_path / "a")), "--eval-only")
    # --eval-only after the pairs is a flag in the wrong place; put it first
    assert code == 2 and "flags come first" in err
    code, err = run_main(capsys, "--eval-only", *demo_args(demo_root, str(tmp_path / "a")))
    assert code == 2 and "--eval-only with CoOp needs --model-dir" in err
    assert not (tmp_path / "a" / "results.json").exists()
    code, err = run_main(capsys, "--eval-only", *demo_args(demo_root, str(tmp_path / "z"), trainer="ZeroshotCLIP"))
    assert code == 0 and (tmp_path / "z" / "results.json").exists()


# ---- files follow the umask --------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        p = tmp_path / "x.json"
        atomic_write(str(p), lambda f: f.write("{}"))
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~umask
    finally:
        os.umask(old)


def test_run_files_follow_the_umask(demo_root, tmp_path):
    old = os.umask(0o002)
    try:
        t = build(demo_root, tmp_path / "run", "OPTIM.MAX_EPOCH", 1)
        t.train()
    finally:
        os.umask(old)
    for rel in ("results.json", MANIFEST, "prompt_learner/model.pth.tar-1", "prompt_learner/checkpoint"):
        assert stat.S_IMODE(os.stat(tmp_path / "run" / rel).st_mode) == 0o664, rel


# ---- bad input: one paragraph, exit code 2 ------------------------------------------------------
def _yaml(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


BAD_PAIRS = [
    (("DATALOADER.TRAIN_X.BATCH_SIZE", 0), "DATALOADER.TRAIN_X.BATCH_SIZE must be a positive integer"),
    (("DATALOADER.TEST.BATCH_SIZE", -1), "DATALOADER.TEST.BATCH_SIZE must be a positive integer"),
    (("OPTIM.MAX_EPOCH", -1), "OPTIM.MAX_EPOCH must be an integer >= 0"),
    (("DATALOADER.NUM_WORKERS", -2), "DATALOADER.NUM_WORKERS must be an integer >= 0"),
    (("TRAINER.COOP.N_CTX", 0), "TRAINER.COOP.N_CTX must be a positive integer"),
    (("TRAINER.COOP.W", 8.0), "Unknown config key TRAINER.COOP.W"),
    (("OPTIM.LR", "fast"), "Bad value"),
    (("DATASET.NAME", "Demoo"), "Unknown dataset 'Demoo'. Did you mean 'Demo'?"),
    (("MODEL.BACKBONE.NAME", "random:huge"), "Unknown CLIP shape 'huge'"),
    (("TRAINER.COOP.PREC", "fp8"), "PREC"),
    (("OPTIM.NAME", "adamw2"), "optimizer"),
    (("INPUT.TRANSFORMS", "['random_rotate']"), "INPUT.TRANSFORMS has unsupported name"),
    (("DATASET.SUBSAMPLE_CLASSES", "half"), "SUBSAMPLE_CLASSES"),
]


@pytest.mark.parametrize("pair,message", BAD_PAIRS, ids=[p[0][0] + "=" + str(p[0][1]) for p in BAD_PAIRS])
def test_bad_values_are_one_paragraph(demo_root, tmp_path, capsys, pair, message):
    code, err = run_main(capsys, *demo_args(demo_root, str(tmp_path / "o"), *pair))
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert first_line(err).startswith("error: ") and message.lower() in err.lower(), err
    assert not (tmp_path / "o" / "results.json").exists()


def test_yaml_syntax_error_names_file_and_line(demo_root, tmp_path, capsys):
    bad = _yaml(tmp_path, "bad.yaml", "OPTIM:\n  LR: 0.002\n  MAX_EPOCH: [3\n")
    code, err = run_main(capsys, "--root", demo_root, "--trainer", "CoOp", "--config-file", bad)
    assert code == 2 and str(bad) in err and "not valid YAML at line" in err and "Traceback" not in err


def test_yaml_that_is_not_a_mapping(demo_root, tmp_path, capsys):
    bad = _yaml(tmp_path, "list.yaml", "- OPTIM\n- LR\n")
    code, err = run_main(capsys, "--root", demo_root, "--trainer", "CoOp", "--dataset-config-file", bad)
    assert code == 2 and "holds a list, not a mapping" in err and str(bad) in err


def test_yaml_with_a_value_where_a_section_belongs(demo_root, tmp_path, capsys):
    bad = _yaml(tmp_path, "scalar.yaml", "OPTIM: 3\n")
    code, err = run_main(capsys, "--root", demo_root, "--trainer", "CoOp", "--config-file", bad)
    assert code == 2 and str(bad) in err and "Traceback" not in err


def test_empty_yaml_is_no_settings(tmp_path):
    from e2mim_engine.config import get_cfg_default, load_cfg_file
    assert dict(load_cfg_file(get_cfg_default(), str(_yaml(tmp_path, "empty.yaml", "")))) == {}


def test_flag_after_the_pairs(demo_root, tmp_path, capsys):
    code, err = run_main(capsys, "--root", demo_root, "--trainer", "CoOp", "OPTIM.LR", 0.1, "--seed", 2)
    assert code == 2 and "--seed appears among the trailing KEY VALUE pairs" in err and "flags come first" in err


def test_odd_number_of_pairs(demo_root, capsys):
    code, err = run_main(capsys, "--root", demo_root, "--trainer", "CoOp", "OPTIM.LR")
    assert code == 2 and "KEY VALUE pairs" in err


def test_unwritable_output_folder(demo_root, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, err = run_main(capsys, *demo_args(demo_root, str(blocker / "run")))
    assert code == 2 and "Traceback" not in err and "Cannot create the folder" in err and str(blocker) in err


@pytest.mark.parametrize("code,expected", [(errno.ENOSPC, "disk is full"), (errno.EACCES, "permissions"),
                                           (errno.EROFS, "read-only"), (errno.EDQUOT, "quota")])
def test_storage_errors_say_what_to_do(tmp_path, code, expected):
    e = storage_error(str(tmp_path / "f"), OSError(code, os.strerror(code)))
    assert isinstance(e, StorageError) and str(tmp_path / "f") in str(e) and expected in str(e)


def test_disk_full_while_writing_is_one_paragraph_and_leaves_nothing(tmp_path):
    def full(f):
        f.write("x")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(StorageError, match="disk is full"):
        atomic_write(str(tmp_path / "results.json"), full)
    assert os.listdir(tmp_path) == []


def test_corrupt_image_same_message_with_any_number_of_workers(demo_root, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(os.path.join(demo_root, "demo"), root / "demo")
    images = sorted(p for p in (root / "demo").rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    assert images
    for p in images:  # every image corrupt: whichever the sampler draws first fails
        p.write_bytes(b"\x89PNG broken")
    lines = []
    for workers in (0, 2):
        code, err = run_main(capsys, *demo_args(str(root), str(tmp_path / f"o{workers}"),
                                                "DATALOADER.NUM_WORKERS", workers))
        assert code == 2 and "Traceback" not in err and "worker" not in err, err
        assert len(err.strip().splitlines()) == 1, err
        lines.append(first_line(err))
    assert lines[0].startswith("error: Cannot read image ") and "corrupt or not an image" in lines[0]
    assert lines[0] == lines[1]


def test_user_message_unwraps_worker_errors():
    from e2mim_engine.errors import DataError
    wrapped = DataError("Caught DataError in DataLoader worker process 1.\nOriginal Traceback (most recent "
                        "call last):\n  File \"x.py\", line 3, in f\n    raise DataError(msg)\n"
                        "e2mim_engine.errors.DataError: Cannot read image /a/b.png: truncated.\n")
    assert user_message(wrapped) == "Cannot read image /a/b.png: truncated."
    assert user_message(DataError("plain")) == "plain"


def test_protocol_script_stops_on_a_dataset_typo_before_any_run(tmp_path):
    env = dict(os.environ, DATASETS="caltech101 caltec101", PYTHON=sys.executable)
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "coop", "base2new.sh"), "--data", str(tmp_path),
                        "--output", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: unknown dataset name(s): caltec101.")
    out = tmp_path / "out"
    assert "caltech101" in r.stderr and (not out.exists() or not os.listdir(out))  # no job started


def test_identity_leaves_out_other_methods_nodes(demo_root, tmp_path):
    """A new method adds a node to every run's config; CoOp's identity must not move."""
    from e2mim_engine.run import declared_keys, run_identity
    from e2mim_trainers.coop import CoOp
    from e2mim_trainers.kgcoop import KgCoOp
    cfg = make_cfg(*demo_args(demo_root, str(tmp_path)))
    keys = declared_keys(CoOp)
    assert "TRAINER.COOP.N_CTX" in keys and "OPTIM.LR" in keys and not any(k.startswith("TRAINER.KGCOOP") for k in keys)
    other = make_cfg(*demo_args(demo_root, str(tmp_path), "TRAINER.KGCOOP.W", 2.0))
    assert run_identity(cfg, keys=keys) == run_identity(other, keys=keys)
    assert run_identity(other, keys=declared_keys(KgCoOp)) != run_identity(cfg, keys=declared_keys(KgCoOp))


def test_read_only_dataset_folder_still_trains(demo_root, tmp_path, capsys, monkeypatch):
    """Caches the run would write into the dataset folder (few-shot draw) stay in memory, with
    one log line, when the folder cannot be written (simulated: root ignores permissions)."""
    import tempfile as tempfile_mod
    root = tmp_path / "data"
    shutil.copytree(os.path.join(demo_root, "demo"), root / "demo")
    shutil.rmtree(root / "demo" / "split_fewshot", ignore_errors=True)
    real = tempfile_mod.mkstemp

    def read_only(*a, dir=None, **k):
        if dir and str(dir).startswith(str(root)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr("e2mim_engine.utils.tempfile.mkstemp", read_only)
    out = tmp_path / "run"
    code, err = run_main(capsys, *demo_args(str(root), str(out), "DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", 1))
    assert code == 0, err
    log = (out / "log.txt").read_text()
    assert log.count("few-shot draw is kept in memory for this run") == 1 and "read-only" in log
    assert not (root / "demo" / "split_fewshot").exists() or not os.listdir(root / "demo" / "split_fewshot")
    assert read_json(out / "results.json")["shots_drawn"] == {"min": 2, "max": 2}


def test_generated_folder_race_keeps_the_first_complete_copy(tmp_path):
    """Two runs generating the same dataset at once: the second to finish keeps the first's."""
    from e2mim_engine.utils import atomic_folder
    target = tmp_path / "demo"
    with atomic_folder(str(target)) as tmp:
        open(os.path.join(tmp, "a.txt"), "w").write("second")
        with atomic_folder(str(target)) as tmp2:   # the other run finishes first
            open(os.path.join(tmp2, "a.txt"), "w").write("first")
    assert (target / "a.txt").read_text() == "first"
    assert sorted(os.listdir(tmp_path)) == ["demo"]  # no temp folder left
