"""Every trainer yaml of CoOp, CoCoOp, KgCoOp and ProGrad loads with its trainer, and the
published files are all there with their published values (KaiyangZhou/CoOp, htyao89/KgCoOp,
BeierZhu/Prompt-align; KgCoOp's and ProGrad's written with their own nodes)."""
import glob
import os

import pytest

from conftest import ROOT, make_cfg

FAMILIES = ("CoOp", "CoCoOp", "KgCoOp", "ProGrad")
NODE = {"CoOp": "COOP", "CoCoOp": "COCOOP", "KgCoOp": "KGCOOP", "ProGrad": "PROGRAD"}
FILES = sorted(p for f in FAMILIES for p in glob.glob(os.path.join(ROOT, "configs", "trainers", f, "*.yaml")))


def _coop(bb, ep, ctxv1=False):
    return {"MODEL.BACKBONE.NAME": bb, "OPTIM.MAX_EPOCH": ep, "OPTIM.LR": 0.002,
            "DATALOADER.TRAIN_X.BATCH_SIZE": 32, "N_CTX": 16, "CTX_INIT": "a photo of a" if ctxv1 else ""}


def _cocoop(n_ctx, init=""):
    return {"MODEL.BACKBONE.NAME": "ViT-B/16", "OPTIM.MAX_EPOCH": 10, "OPTIM.LR": 0.002,
            "DATALOADER.TRAIN_X.BATCH_SIZE": 1, "N_CTX": n_ctx, "CTX_INIT": init, "PREC": "fp16"}


def _kgcoop(bb):
    return {"MODEL.BACKBONE.NAME": bb, "OPTIM.MAX_EPOCH": 100, "OPTIM.LR": 0.002,
            "DATALOADER.TRAIN_X.BATCH_SIZE": 128, "N_CTX": 4, "CTX_INIT": "a photo of a", "W": 8.0}


def _prograd(ep):
    return {"MODEL.BACKBONE.NAME": "RN50", "OPTIM.MAX_EPOCH": ep, "OPTIM.LR": 0.002,
            "DATALOADER.TRAIN_X.BATCH_SIZE": 32, "N_CTX": 16, "CTX_INIT": "{template}",
            "LOSS.NAME": "prograd", "LOSS.T": 1.0, "LOSS.LAMBDA": 1.0}


PUBLISHED = {
    ("CoOp", "rn50"): _coop("RN50", 200), ("CoOp", "rn50_ep50"): _coop("RN50", 50),
    ("CoOp", "rn50_ep100"): _coop("RN50", 100), ("CoOp", "rn50_ctxv1"): _coop("RN50", 200, True),
    ("CoOp", "rn50_ep50_ctxv1"): _coop("RN50", 50, True),
    ("CoOp", "rn50_val"): {"MODEL.BACKBONE.NAME": "RN50", "DATALOADER.TRAIN_X.BATCH_SIZE": 200,
                           "DATALOADER.TEST.BATCH_SIZE": 200},
    ("CoOp", "rn101"): _coop("RN101", 200), ("CoOp", "rn101_ep50"): _coop("RN101", 50),
    ("CoOp", "vit_b32"): _coop("ViT-B/32", 200), ("CoOp", "vit_b32_ep50"): _coop("ViT-B/32", 50),
    ("CoOp", "vit_b16"): _coop("ViT-B/16", 200), ("CoOp", "vit_b16_ep50"): _coop("ViT-B/16", 50),
    ("CoOp", "vit_b16_ep100"): _coop("ViT-B/16", 100), ("CoOp", "vit_b16_ctxv1"): _coop("ViT-B/16", 200, True),
    ("CoOp", "vit_b16_ep50_ctxv1"): _coop("ViT-B/16", 50, True),
    ("CoOp", "vit_b16_ep100_ctxv1"): _coop("ViT-B/16", 100, True),
    ("CoCoOp", "vit_b16_c4_ep10_batch1"): _cocoop(4), ("CoCoOp", "vit_b16_c8_ep10_batch1"): _cocoop(8),
    ("CoCoOp", "vit_b16_c16_ep10_batch1"): _cocoop(16),
    ("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1"): _cocoop(4, "a photo of a"),
    ("KgCoOp", "rn50_ep100"): _kgcoop("RN50"), ("KgCoOp", "vit_b16_ep100_ctxv1"): _kgcoop("ViT-B/16"),
    ("ProGrad", "rn50"): _prograd(200), ("ProGrad", "rn50_ep50"): _prograd(50),
    ("ProGrad", "rn50_ep100"): _prograd(100),
}


def _path(family, name):
    return os.path.join(ROOT, "configs", "trainers", family, f"{name}.yaml")


def _get(cfg, family, key):
    node = cfg if "." in key else cfg.TRAINER[NODE[family]]
    for part in key.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(p, ROOT) for p in FILES])
def test_every_trainer_yaml_loads_with_its_trainer(path):
    family = os.path.basename(os.path.dirname(path))
    cfg = make_cfg("--trainer", family, "--config-file", path)
    assert cfg.TRAINER.NAME == family


def test_every_published_file_is_there():
    missing = [f"{f}/{n}.yaml" for f, n in PUBLISHED if not os.path.isfile(_path(f, n))]
    assert not missing
    assert sum(f == "CoOp" for f, _ in PUBLISHED) == 16 and sum(f == "CoCoOp" for f, _ in PUBLISHED) == 4


@pytest.mark.parametrize("family,name", sorted(PUBLISHED), ids=[f"{f}/{n}" for f, n in sorted(PUBLISHED)])
def test_published_values(family, name):
    cfg = make_cfg("--trainer", family, "--config-file", _path(family, name))
    got = {k: _get(cfg, family, k) for k in PUBLISHED[(family, name)]}
    assert got == PUBLISHED[(family, name)]
    # the recipe every one of these files shares
    assert cfg.INPUT.INTERPOLATION == "bicubic" and cfg.DATALOADER.TEST.BATCH_SIZE in (100, 200)
    if name != "rn50_val":
        assert (cfg.OPTIM.NAME, cfg.OPTIM.LR_SCHEDULER, cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_CONS_LR) == \
            ("sgd", "cosine", 1, 1e-5)
