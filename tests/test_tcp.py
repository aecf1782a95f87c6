"""TCP (trainers/tcp.py): the loss and the class-aware text features against a slow hand-written
reference, what is learned and checkpointed, Adam's eps, and TCP's published config file and
script keys (htyao89/Textual-based_Class-aware_prompt_tuning)."""
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import DEMO_CFG, ROOT, make_cfg
from e2mim_clip.prompting import clip
from e2mim_engine.errors import ConfigError
from e2mim_engine.seeding import set_random_seed
from e2mim_engine.trainer import build_trainer

TINY = os.path.join(ROOT, "configs", "trainers", "TCP", "demo_tiny.yaml")
SHIPPED = os.path.join(ROOT, "configs", "trainers", "TCP", "vit_b16_ep100_ctxv1.yaml")
# TCP's published configs/trainers/TCP/vit_b16_ep100_ctxv1.yaml, verbatim.
PUBLISHED_YAML = """DATALOADER:
  TRAIN_X:
    BATCH_SIZE: 32
  TEST:
    BATCH_SIZE: 500
  NUM_WORKERS: 8

INPUT:
  SIZE: (224, 224)
  INTERPOLATION: "bicubic"
  PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]
  PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]
  TRANSFORMS: ["random_resized_crop", "random_flip", "normalize"]

OPTIM:
  NAME: "adam"
  LR: 0.002
  MAX_EPOCH: 50
  LR_SCHEDULER: "cosine"
  WARMUP_EPOCH: 1
  WARMUP_TYPE: "constant"
  WARMUP_CONS_LR: 1e-5

TRAIN:
  PRINT_FREQ: 5

MODEL:
  BACKBONE:
    NAME: "ViT-B/16"

TRAINER:
  COOP:
    CTX_INIT: False
"""
# Its base2new_train.sh: TRAINER.COOP.{N_CTX, CSC, W, CLASS_TOKEN_POSITION}
SCRIPT_KEYS = ("TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.CSC", False, "TRAINER.COOP.W", 1.0,
               "TRAINER.COOP.CLASS_TOKEN_POSITION", "end")


def build(root, out, *extra):
    cfg = make_cfg("--root", root, "--seed", 1, "--trainer", "TCP", "--dataset-config-file", DEMO_CFG,
                   "--config-file", TINY, "--output-dir", str(out), "DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", 1,
                   "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "VERBOSE", False, *extra)
    set_random_seed(1)
    return build_trainer(cfg)


def reference_text(m, texts, ctx=None, deep=None, layer=0):
    """CLIP's full 77-token text path, written out: positions 1..n <- ctx at the input, and
    <- deep[c] (per class) at the input of block ``layer``."""
    tok = clip.tokenize(texts)
    x = m.token_embedding(tok).float()
    n = 0 if ctx is None else ctx.shape[0]
    if ctx is not None:
        x = torch.cat([x[:, :1], ctx.expand(len(texts), -1, -1), x[:, 1 + n:]], dim=1)
    x = (x + m.positional_embedding).permute(1, 0, 2)
    for i, block in enumerate(m.transformer.resblocks):
        if deep is not None and i == layer:
            x = torch.cat([x[:1], deep.permute(1, 0, 2), x[1 + n:]], dim=0)
        x = block(x)
    x = m.ln_final(x.permute(1, 0, 2))
    return F.normalize(x[torch.arange(len(texts)), tok.argmax(dim=-1)] @ m.text_projection, dim=-1)


def test_loss_and_class_aware_features_equal_the_hand_computed_ones(demo_root, tmp_path):
    t = build(demo_root, tmp_path, "DATASET.SUBSAMPLE_CLASSES", "base")
    m, pl = t.model.clip, t.model.prompt_learner
    names = [c.replace("_", " ") for c in t.classnames]
    batch = {"img": torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(3)),
             "label": torch.arange(4) % len(names)}
    assert t.model.class_layer == 1  # TCP's layer 8 on the 2-block tiny CLIP: its last block
    t.set_model_mode("train")
    with torch.no_grad():
        hand = reference_text(m, [t.templates[0].format(c) for c in names])
        w1, w2 = pl.meta_net.linear1, pl.meta_net.linear2
        hidden = hand @ w1.weight.t() + w1.bias
        tokens = ((hidden * torch.sigmoid(1.702 * hidden)) @ w2.weight.t() + w2.bias).view(len(names), 4, -1)
        learned = reference_text(m, ["X X X X " + c + "." for c in names], pl.ctx, tokens, layer=1)
        torch.testing.assert_close(t.model.text_features(), learned, rtol=1e-4, atol=1e-5)
        # the class-aware tokens matter: without them the features differ
        assert (reference_text(m, ["X X X X " + c + "." for c in names], pl.ctx) - learned).abs().max() > 1e-3
        img = F.normalize(m.encode_image(batch["img"]).float(), dim=-1)
        logits = m.logit_scale.exp() * img @ learned.t()
        ce = F.cross_entropy(logits, batch["label"])
        term = 1 - (learned * hand).sum(-1).mean()
    out = t.forward_backward(batch)
    assert out["loss_ce"] == pytest.approx(ce.item(), abs=1e-4)
    assert out["loss_kg"] == pytest.approx(term.item(), abs=1e-5)
    assert out["loss"] == pytest.approx((ce + 8.0 * term).item(), abs=1e-4)


def test_context_and_meta_net_are_learned_and_checkpointed_with_adam_eps(demo_root, tmp_path):
    t = build(demo_root, tmp_path, "DATASET.SUBSAMPLE_CLASSES", "base")
    assert [n for n, p in t.model.named_parameters() if p.requires_grad] == [
        "prompt_learner.ctx", "prompt_learner.meta_net.linear1.weight", "prompt_learner.meta_net.linear1.bias",
        "prompt_learner.meta_net.linear2.weight", "prompt_learner.meta_net.linear2.bias"]
    assert pl_shapes(t) == {"ctx": (4, 128), "meta_net.linear1.weight": (32, 128), "meta_net.linear2.weight": (512, 32)}
    assert {g["eps"] for g in t._optims["prompt_learner"].param_groups} == {1e-3}
    t.train()
    sd = torch.load(tmp_path / "prompt_learner" / "model.pth.tar-1", weights_only=True)["state_dict"]
    assert sorted(sd) == ["ctx", "meta_net.linear1.bias", "meta_net.linear1.weight", "meta_net.linear2.bias",
                          "meta_net.linear2.weight"]
    # the base-trained model on the new classes: their own hand-crafted features feed the meta-net
    n = build(demo_root, tmp_path / "new", "DATASET.SUBSAMPLE_CLASSES", "new")
    n.load_model(str(tmp_path), epoch=1)
    torch.testing.assert_close(n.model.prompt_learner.meta_net.linear2.weight, sd["meta_net.linear2.weight"])
    assert n.model.text_h.shape[0] == len(n.classnames) and set(n.classnames).isdisjoint(t.classnames)


def pl_shapes(t):
    sd = t.model.prompt_learner.state_dict()
    return {k: tuple(sd[k].shape) for k in ("ctx", "meta_net.linear1.weight", "meta_net.linear2.weight")}


def _settings(cfg):
    c = cfg.TRAINER.TCP
    return {k: c[k] for k in c if k != "KEYS_FROM"}, c.KEYS_FROM


def test_shipped_file_equals_the_published_file_and_script_keys(tmp_path):
    published = tmp_path / "vit_b16_ep100_ctxv1.yaml"
    published.write_text(PUBLISHED_YAML)
    ours = make_cfg("--trainer", "TCP", "--config-file", SHIPPED)
    theirs = make_cfg("--trainer", "TCP", "--config-file", published, *SCRIPT_KEYS)
    s_ours, node_ours = _settings(ours)
    s_theirs, node_theirs = _settings(theirs)
    assert (node_ours, node_theirs) == ("TRAINER.TCP", "TRAINER.COOP")
    assert s_ours == s_theirs == {"N_CTX": 4, "CSC": False, "CTX_INIT": "", "PREC": "fp16",
                                  "CLASS_TOKEN_POSITION": "end", "W": 8.0, "CLASS_LAYER": 8, "ADAM_EPS": 1e-3,
                                  "TEMPLATE_SET": "tcp", "PUBLISHED_W": 1.0}
    for c in (ours, theirs):
        assert (c.OPTIM.NAME, c.OPTIM.LR, c.OPTIM.MAX_EPOCH, c.OPTIM.LR_SCHEDULER) == ("adam", 0.002, 50, "cosine")
        assert (c.OPTIM.WARMUP_EPOCH, c.OPTIM.WARMUP_TYPE, c.OPTIM.WARMUP_CONS_LR) == (1, "constant", 1e-5)
        assert (c.DATALOADER.TRAIN_X.BATCH_SIZE, c.DATALOADER.TEST.BATCH_SIZE) == (32, 500)
        assert c.INPUT.TRANSFORMS == ("random_resized_crop", "random_flip", "normalize")
        assert c.MODEL.BACKBONE.NAME == "ViT-B/16" and c.INPUT.INTERPOLATION == "bicubic"
    assert ours.OPTIM == theirs.OPTIM and ours.INPUT == theirs.INPUT and ours.DATALOADER == theirs.DATALOADER
    # its script's W reaches a key that changes nothing (the published code ignores it)
    s, _ = _settings(make_cfg("--trainer", "TCP", "--config-file", published, "TRAINER.COOP.W", 3.0))
    assert s["PUBLISHED_W"] == 3.0 and s["W"] == 8.0 and s["N_CTX"] == 16  # TCP's train.py default N_CTX
    with pytest.raises(ConfigError, match="TRAINER.COOP.N_CTX.*TRAINER.TCP.N_CTX"):
        make_cfg("--trainer", "TCP", "TRAINER.COOP.N_CTX", 4, "TRAINER.TCP.N_CTX", 8)


def test_only_a_generic_context_at_the_end(demo_root, tmp_path):
    with pytest.raises(ConfigError, match="generic context with the class token at the end"):
        build(demo_root, tmp_path, "TRAINER.TCP.CSC", True)
