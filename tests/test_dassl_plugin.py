"""The E2MIM plugin for Dassl projects (e2mim_dassl).

Without Dassl (CI): the package imports without Dassl, torch or CLIP, and extend_cfg says what is
missing. With Dassl: the published CoOp train.py with the two lines of README.md trains E2MIM
through Dassl's engine, and equals the toolbox's trainer on identical inputs.

The Dassl tests run only where `dassl` is importable and E2MIM_DASSL_CHECKOUT names a checkout of
a Dassl project (KaiyangZhou/CoOp), e.g. with a venv holding Dassl.pytorch and its requirements:

    E2MIM_DASSL_CHECKOUT=~/src/CoOp /path/to/dassl-venv/bin/python -m pytest tests/test_dassl_plugin.py
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

CHECKOUT = os.environ.get("E2MIM_DASSL_CHECKOUT", "")
try:
    import dassl  # noqa: F401
    HAVE_DASSL = True
except ImportError:
    HAVE_DASSL = False
needs_dassl = pytest.mark.skipif(
    not (HAVE_DASSL and os.path.isfile(os.path.join(CHECKOUT, "train.py"))),
    reason="needs `dassl` importable and E2MIM_DASSL_CHECKOUT=<a CoOp checkout>: run "
           "E2MIM_DASSL_CHECKOUT=~/src/CoOp <python of a venv with Dassl.pytorch> -m pytest tests/test_dassl_plugin.py")


def python(code, env=None):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, **(env or {})))


def test_plugin_imports_nothing_of_dassl_torch_or_clip():
    r = python("import sys, e2mim_dassl\n"
               "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dassl', 'torch', 'clip')))\n"
               "print(callable(e2mim_dassl.extend_cfg))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[]", "True"]
    r = python("import sys, e2mim_dassl\ne2mim_dassl.dassl_shims()\n"
               "print(sorted({m.split('.')[0] for m in sys.modules} & {'dassl', 'clip'}))")
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


@pytest.mark.skipif(HAVE_DASSL, reason="checks the error shown where Dassl is missing")
def test_extend_cfg_without_dassl_says_what_is_missing():
    r = python("import e2mim_dassl\nfrom yacs.config import CfgNode\ne2mim_dassl.extend_cfg(CfgNode())")
    assert r.returncode != 0
    assert "`dassl` is not importable" in r.stderr and "pip install -e Dassl.pytorch" in r.stderr


# ---- with Dassl and a CoOp checkout ------------------------------------------------------
@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    from e2mim_tools.dassl_parity import make_fixture
    work = tmp_path_factory.mktemp("dassl")
    return str(work), make_fixture(str(work))


# Builds the trainer as the checkout's train.py does (its datasets registered, its clip on the
# path) and reports what Dassl's engine holds.
INSPECT = """
import json, sys
import e2mim_dassl
e2mim_dassl.dassl_shims()  # the published Dassl on current PyTorch
import datasets.caltech101
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from dassl.utils import set_random_seed
cfg = get_cfg_default()
cfg.DATASET.SUBSAMPLE_CLASSES = "all"
e2mim_dassl.extend_cfg(cfg)
cfg.merge_from_file(sys.argv[1])
cfg.merge_from_list(json.loads(sys.argv[2]))
set_random_seed(cfg.SEED)
t = build_trainer(cfg)
import clip.model
sampler = t.train_loader_x.batch_sampler
labels = [d.label for d in t.dm.dataset.train_x]
batches = list(sampler)
m = len(batches[0]) // 2
print(json.dumps({
    "trainer": type(t).__mro__[1].__module__ + "." + type(t).__mro__[1].__name__,
    "dassl_base": [c.__module__ + "." + c.__name__ for c in type(t).__mro__ if c.__module__.startswith("dassl.")],
    "models": list(t._models),
    "optims": {n: type(o).__name__ for n, o in t._optims.items()},
    "critic_lr": t._optims["mi_estimator"].param_groups[0]["lr"],
    "sampler": type(sampler).__name__,
    "batches": len(batches), "loader_len": len(t.train_loader_x),
    "pairs_cross_class": all(labels[b[k]] != labels[b[m + k]] for b in batches for k in range(m)),
    "clip_module": clip.model.__file__,
    "clip_block": type(t.model.clip.transformer.resblocks[0]).__module__,
    "template": t.templates,
    "dataset_wrapper": type(t.train_loader_x.dataset.dataset).__module__,
    "index": t.train_loader_x.dataset[5]["index"],
}))
"""


def dassl_opts(root, ckpt, out, *extra):
    return ["DATASET.ROOT", root, "MODEL.BACKBONE.NAME", ckpt, "OUTPUT_DIR", out, "SEED", "1",
            "TRAINER.NAME", "E2MIM", "DATASET.NAME", "Caltech101", "TRAINER.E2MIM.PREC", "fp32",
            "DATASET.NUM_SHOTS", "8", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "DATALOADER.NUM_WORKERS", "0",
            "INPUT.TRANSFORMS", "['normalize']", "OPTIM.MAX_EPOCH", "2"] + list(extra)


@needs_dassl
def test_trainer_is_built_from_dassl_pieces(fixture_dir):
    work, ckpt = fixture_dir
    cfg = os.path.join(ROOT, "configs", "trainers", "E2MIM", "vit_b16_base2new.yaml")
    r = subprocess.run([sys.executable, "-c", INSPECT, cfg, json.dumps(dassl_opts(
        os.path.join(work, "fixture"), ckpt, os.path.join(work, "inspect")))], capture_output=True, text=True,
        cwd=CHECKOUT, env=dict(os.environ, PYTHONPATH=os.pathsep.join([CHECKOUT, os.environ.get("PYTHONPATH", "")])))
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().split("\n")[-1])
    assert info["trainer"] == "e2mim_trainers.e2mim.E2MIMMethod"
    assert "dassl.engine.trainer.TrainerX" in info["dassl_base"]
    assert info["models"] == ["prompt_learner", "mi_estimator"]
    assert info["optims"] == {"prompt_learner": "SGD", "mi_estimator": "Adam"}
    assert info["critic_lr"] == 1e-3  # TRAINER.E2MIM.MI_LR through Dassl's optimizer builder
    # 6 classes x 8 shots, batches of 8 (4 cross-class pairs): as many as Dassl's loader would give
    assert info["sampler"] == "ClassMixupBatchSampler" and info["batches"] == info["loader_len"] == 48 // 8
    assert info["pairs_cross_class"]
    assert info["dataset_wrapper"] == "dassl.data.data_manager" and info["index"] == 5
    # the checkout's clip package built the model
    assert os.path.realpath(info["clip_module"]).startswith(os.path.realpath(CHECKOUT))
    assert info["clip_block"] == "clip.model"
    assert info["template"] == ["a photo of a {}."]  # the toolbox's Caltech101 template


@needs_dassl
def test_published_coop_with_the_two_lines_equals_the_toolbox(tmp_path):
    from e2mim_tools import dassl_parity
    assert dassl_parity.main(["--checkout", CHECKOUT, "--work", str(tmp_path / "parity"),
                              "--python", sys.executable, "--tol", "1e-5"]) == 0
    logs = {side: open(tmp_path / "parity" / f"{side}_base.log").read() for side in ("dassl", "toolbox")}
    assert "epoch [3/3] batch [3/3]" in logs["dassl"] and "* accuracy:" in logs["dassl"]
    out = tmp_path / "parity" / "out_dassl"
    assert all((out / name / "model.pth.tar-3").is_file() for name in ("prompt_learner", "mi_estimator"))


MERGE = """
import json, sys
import e2mim_dassl
from dassl.config import get_cfg_default
out = {}
for path in sys.argv[1:]:
    cfg = get_cfg_default()
    e2mim_dassl.extend_cfg(cfg)
    cfg.merge_from_file(path)
    c = cfg.TRAINER.E2MIM
    out[path] = [c.N_CTX, c.CTX_INIT, c.MI_ESTIMATOR, cfg.DATASET.TEMPLATE]
print(json.dumps(out))
"""


@pytest.mark.skipif(not HAVE_DASSL, reason="needs `dassl` importable (see the module docstring)")
def test_the_toolbox_configs_merge_into_dassls_config():
    folder = os.path.join(ROOT, "configs", "trainers", "E2MIM")
    paths = [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.startswith("vit_b16_")]
    assert len(paths) == 3
    r = subprocess.run([sys.executable, "-c", MERGE] + paths, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    merged = json.loads(r.stdout.strip().split("\n")[-1])
    assert merged == {p: [4, "a photo of a", "jsd", ""] for p in paths}


@needs_dassl
def test_resume_in_dassl_equals_the_uninterrupted_run(fixture_dir, tmp_path):
    """Dassl's own resume (its epoch files and `checkpoint` pointer): killed after epoch 1 of 2,
    restarted into the same folder, the prompt and the MI estimator end as without the stop."""
    import torch
    from e2mim_tools.dassl_parity import host_train_script
    work, ckpt = fixture_dir
    script = str(tmp_path / "train.py")
    host_train_script(CHECKOUT, script)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([CHECKOUT, os.environ.get("PYTHONPATH", "")]))
    env.pop("E2MIM_PROBE", None)
    cfg = os.path.join(ROOT, "configs", "trainers", "E2MIM", "vit_b16_base2new.yaml")

    def train(out):
        args = ["--root", os.path.join(work, "fixture"), "--seed", "1", "--trainer", "E2MIM", "--backbone", ckpt,
                "--config-file", cfg, "--output-dir", out,
                "--dataset-config-file", os.path.join(ROOT, "configs", "datasets", "caltech101.yaml"),
                "TRAINER.E2MIM.PREC", "fp32", "DATASET.NUM_SHOTS", "8", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
                "DATALOADER.NUM_WORKERS", "0", "INPUT.TRANSFORMS", "['normalize']",
                "OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1", "TEST.NO_TEST", "True"]
        r = subprocess.run([sys.executable, script] + args, capture_output=True, text=True, cwd=CHECKOUT, env=env)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        return r.stdout

    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    train(a)
    train(b)
    for name in ("prompt_learner", "mi_estimator"):  # the run is killed before epoch 2 is saved
        os.remove(os.path.join(b, name, "model.pth.tar-2"))
        with open(os.path.join(b, name, "checkpoint"), "w") as f:
            f.write("model.pth.tar-1\n")
    log = train(b)
    assert "Found checkpoint" in log and "epoch [2/2]" in log and "epoch [1/2]" not in log
    for name in ("prompt_learner", "mi_estimator"):
        sa = torch.load(os.path.join(a, name, "model.pth.tar-2"), weights_only=False)["state_dict"]
        sb = torch.load(os.path.join(b, name, "model.pth.tar-2"), weights_only=False)["state_dict"]
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (name, k)
