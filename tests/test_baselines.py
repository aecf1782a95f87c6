"""CoCoOp and KgCoOp on the shared CLIP pieces: checkpoints, losses and logits against slow
hand-written references, and KgCoOp's published config keys."""
import dataclasses
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import DEMO_CFG, ROOT, make_cfg
from e2mim_engine.errors import ConfigError
from e2mim_engine.trainer import build_trainer
from e2mim_engine.seeding import set_random_seed
from e2mim_clip.prompting import clip

COCOOP_TINY = os.path.join(ROOT, "configs", "trainers", "CoCoOp", "demo_tiny.yaml")
KGCOOP_TINY = os.path.join(ROOT, "configs", "trainers", "KgCoOp", "demo_tiny.yaml")

# KgCoOp's published configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml, verbatim.
KGCOOP_PUBLISHED_YAML = """DATALOADER:
  TRAIN_X:
    BATCH_SIZE: 128
  TEST:
    BATCH_SIZE: 100
  NUM_WORKERS: 8

INPUT:
  SIZE: (224, 224)
  INTERPOLATION: "bicubic"
  PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]
  PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]
  TRANSFORMS: ["random_resized_crop", "random_flip", "normalize"]

OPTIM:
  NAME: "sgd"
  LR: 0.002
  MAX_EPOCH: 100
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
    CTX_INIT: True
"""


def build(trainer, root, out, *extra, config=None):
    cfg = make_cfg("--root", root, "--seed", 1, "--trainer", trainer, "--dataset-config-file", DEMO_CFG,
                   "--config-file", config or {"CoCoOp": COCOOP_TINY, "KgCoOp": KGCOOP_TINY}[trainer],
                   "--output-dir", str(out), "DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", 1,
                   "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "VERBOSE", False, *extra)
    set_random_seed(1)
    return build_trainer(cfg)


def fake_batch(n, n_cls, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"img": torch.randn(n, 3, 224, 224, generator=g), "label": torch.arange(n) % n_cls}


def reference_text_features(clip_model, texts_or_tokens, ctx=None, n_ctx=0):
    """CLIP's own full-77-token text path (independent of trainers/prompting.py), with
    positions 1..n_ctx replaced by ``ctx`` when given."""
    tok = texts_or_tokens if torch.is_tensor(texts_or_tokens) else clip.tokenize(texts_or_tokens)
    x = clip_model.token_embedding(tok).float()
    if ctx is not None:
        x = torch.cat([x[:, :1], ctx.unsqueeze(0).expand(len(tok), -1, -1), x[:, 1 + n_ctx:]], dim=1)
    x = x + clip_model.positional_embedding
    x = clip_model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = clip_model.ln_final(x)
    f = x[torch.arange(len(tok)), tok.argmax(dim=-1)] @ clip_model.text_projection
    return F.normalize(f, dim=-1)


# ---- CoCoOp ---------------------------------------------------------------------------
def test_cocoop_logits_equal_slow_per_image_reference(demo_root, tmp_path):
    t = build("CoCoOp", demo_root, tmp_path, "DATASET.SUBSAMPLE_CLASSES", "base")
    pl, clip_model = t.model.prompt_learner, t.model.clip
    with torch.no_grad():  # a non-zero context and meta-net, as after training
        pl.meta_net.linear2.bias.normal_(std=0.05)
    images = fake_batch(3, 5)["img"]
    t.set_model_mode("eval")
    with torch.no_grad():
        fast = t.model_inference(images)
        img = F.normalize(clip_model.encode_image(images).float(), dim=-1)
        names = [c.replace("_", " ") for c in t.classnames]
        tok = clip.tokenize([f"{pl.prompt_prefix} {n}." for n in names])
        assert pl.tokenized_prompts.shape[1] < tok.shape[1] == 77  # the fast path is truncated
        ref = []
        for v in img:  # CoCoOp's loop: one full-length text-encoder pass per image
            ctx = pl.ctx + pl.meta_net(v)
            ref.append(t.model.logit_scale * v @ reference_text_features(clip_model, tok, ctx, pl.n_ctx).t())
        ref = torch.stack(ref)
    assert fast.shape == (3, 5)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)
    # grouping the images into several text-encoder calls changes nothing
    t.hparams = dataclasses.replace(t.hparams, prompts_per_call=5)  # one image (5 classes) per call
    assert t.images_per_call == 1
    with torch.no_grad():
        torch.testing.assert_close(t.model_inference(images), fast, rtol=1e-5, atol=1e-5)


def test_cocoop_grouped_backward_equals_one_call(demo_root, tmp_path):
    batch = fake_batch(4, 5)
    params = []
    for ppc in (0, 5, 10):
        t = build("CoCoOp", demo_root, tmp_path / str(ppc), "DATASET.SUBSAMPLE_CLASSES", "base",
                  "TRAINER.COCOOP.PROMPTS_PER_CALL", ppc, "OPTIM.WARMUP_EPOCH", -1)
        t.set_model_mode("train")
        out = t.forward_backward(batch)
        params.append([p.detach().clone() for p in t.model.prompt_learner.parameters()])
        assert out["loss"] > 0
    for other in params[1:]:
        for a, b in zip(params[0], other):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_cocoop_checkpoint_holds_context_and_meta_net_only(demo_root, tmp_path):
    t = build("CoCoOp", demo_root, tmp_path / "base", "DATASET.SUBSAMPLE_CLASSES", "base")
    t.train()
    ckpt = torch.load(tmp_path / "base" / "prompt_learner" / "model.pth.tar-1", weights_only=True)
    assert sorted(ckpt["state_dict"]) == ["ctx", "meta_net.linear1.bias", "meta_net.linear1.weight",
                                          "meta_net.linear2.bias", "meta_net.linear2.weight"]
    vis, ctx_dim = 128, 128  # tiny CLIP: embed 128, text width 128 -> hidden 128 // 16
    assert ckpt["state_dict"]["meta_net.linear1.weight"].shape == (vis // 16, vis)
    assert ckpt["state_dict"]["meta_net.linear2.weight"].shape == (ctx_dim, vis // 16)
    assert ckpt["state_dict"]["ctx"].shape == (4, ctx_dim)
    assert {n.split(".")[0] for n, p in t.model.named_parameters() if p.requires_grad} == {"prompt_learner"}
    new = build("CoCoOp", demo_root, tmp_path / "new", "DATASET.SUBSAMPLE_CLASSES", "new")
    new.load_model(str(tmp_path / "base"), epoch=1)
    torch.testing.assert_close(new.model.prompt_learner.meta_net.linear1.weight,
                               t.model.prompt_learner.meta_net.linear1.weight)
    assert 0 <= new.test() <= 100


def test_cocoop_published_yaml_keys():
    cfg = make_cfg("--config-file", os.path.join(ROOT, "configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"))
    c = cfg.TRAINER.COCOOP
    assert (c.N_CTX, c.CTX_INIT, c.PREC) == (4, "a photo of a", "fp16")
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 1 and cfg.OPTIM.MAX_EPOCH == 10
    d = make_cfg().TRAINER.COCOOP
    assert (d.N_CTX, d.CTX_INIT, d.PREC) == (16, "", "fp16")


# ---- KgCoOp ---------------------------------------------------------------------------
def test_kgcoop_loss_is_ce_plus_w_times_cosine_term(demo_root, tmp_path):
    t = build("KgCoOp", demo_root, tmp_path, "DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.KGCOOP.W", 8.0)
    assert t.templates == ["a photo of a {}, a type of fruit."]
    batch = fake_batch(4, 5, seed=3)
    clip_model = t.model.clip
    t.set_model_mode("train")
    with torch.no_grad():
        learned = t.model.text_features()
        hand = reference_text_features(clip_model, [t.templates[0].format(c.replace("_", " "))
                                                    for c in t.classnames])
        img = F.normalize(clip_model.encode_image(batch["img"]).float(), dim=-1)
        logits = clip_model.logit_scale.exp() * img @ learned.t()
        ce = -logits.log_softmax(dim=-1)[torch.arange(4), batch["label"]].mean()
        cos = torch.stack([(learned[c] @ hand[c]) / (learned[c].norm() * hand[c].norm()) for c in range(5)])
        term = 1 - cos.mean()
    assert term > 1e-4  # the learned prompt differs from the hand-crafted one
    out = t.forward_backward(batch)
    assert out["loss_kg"] == pytest.approx(term.item(), abs=1e-5)
    assert out["loss_ce"] == pytest.approx(ce.item(), abs=1e-4)
    assert out["loss"] == pytest.approx((ce + 8.0 * term).item(), abs=1e-4)
    # the term pulls the context: W=0 moves it differently
    t0 = build("KgCoOp", demo_root, tmp_path / "w0", "DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.KGCOOP.W", 0.0)
    t0.set_model_mode("train")
    out0 = t0.forward_backward(batch)
    assert out0["loss"] == pytest.approx(out0["loss_ce"], abs=1e-6)
    assert not torch.allclose(t0.model.prompt_learner.ctx, t.model.prompt_learner.ctx)


def test_kgcoop_checkpoint_holds_only_the_context(demo_root, tmp_path):
    t = build("KgCoOp", demo_root, tmp_path, "DATASET.SUBSAMPLE_CLASSES", "base")
    t.train()
    ckpt = torch.load(tmp_path / "prompt_learner" / "model.pth.tar-1", weights_only=True)
    assert list(ckpt["state_dict"]) == ["ctx"] and ckpt["state_dict"]["ctx"].shape == (4, 128)
    assert [n for n, p in t.model.named_parameters() if p.requires_grad] == ["prompt_learner.ctx"]
    import json
    res = json.load(open(tmp_path / "results.json"))
    assert res["kg_weight"] == 8.0 and res["keys_from"] == "TRAINER.KGCOOP"
    assert res["templates"] == ["a photo of a {}, a type of fruit."] and res["prompt_init"] == "a photo of a"


def _kgcoop_settings(cfg):
    """The keys KgCoOp reads, and the layout they were read from."""
    c = cfg.TRAINER.KGCOOP
    return {k: c[k] for k in c if k != "KEYS_FROM"}, c.KEYS_FROM


def test_kgcoop_published_yaml_and_script_keys_load_unchanged(tmp_path):
    published = tmp_path / "vit_b16_ep100_ctxv1.yaml"
    published.write_text(KGCOOP_PUBLISHED_YAML)
    ours = make_cfg("--trainer", "KgCoOp", "--config-file",
                    os.path.join(ROOT, "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1.yaml"))
    # KgCoOp's base2new_train.sh: TRAINER.COOP.{N_CTX, CSC, W, CLASS_TOKEN_POSITION}
    theirs = make_cfg("--trainer", "KgCoOp", "--config-file", published, "TRAINER.COOP.N_CTX", 4,
                      "TRAINER.COOP.CSC", False, "TRAINER.COOP.W", 8.0, "TRAINER.COOP.CLASS_TOKEN_POSITION", "end")
    s_ours, node_ours = _kgcoop_settings(ours)
    s_theirs, node_theirs = _kgcoop_settings(theirs)
    assert (node_ours, node_theirs) == ("TRAINER.KGCOOP", "TRAINER.COOP")
    assert s_ours == s_theirs == {"TEMPLATE_SET": "kgcoop", "N_CTX": 4, "CSC": False,
                                  "CTX_INIT": "a photo of a", "PREC": "fp16",
                                  "CLASS_TOKEN_POSITION": "end", "W": 8.0}
    assert ours.DATALOADER.TRAIN_X.BATCH_SIZE == theirs.DATALOADER.TRAIN_X.BATCH_SIZE == 128
    assert ours.OPTIM == theirs.OPTIM
    # the published keys leave CoOp's own node at CoOp's defaults
    assert theirs.TRAINER.COOP == make_cfg().TRAINER.COOP
    # their yaml without W (e.g. base2new_test.sh): KgCoOp's default weight 1.0
    s, node = _kgcoop_settings(make_cfg("--trainer", "KgCoOp", "--config-file", published))
    assert node == "TRAINER.COOP" and s["W"] == 1.0 and s["CTX_INIT"] == "a photo of a" and s["N_CTX"] == 16
    # CTX_INIT False in KgCoOp's sense: random init with N_CTX vectors
    s, _ = _kgcoop_settings(make_cfg("--trainer", "KgCoOp", "TRAINER.COOP.CTX_INIT", False, "TRAINER.COOP.N_CTX", 16))
    assert s["CTX_INIT"] == "" and s["N_CTX"] == 16
    # keys under both nodes: an error naming both
    with pytest.raises(ConfigError, match="TRAINER.COOP.W.*TRAINER.KGCOOP.N_CTX"):
        make_cfg("--trainer", "KgCoOp", "TRAINER.COOP.W", 2.0, "TRAINER.KGCOOP.N_CTX", 8)
    # CoOp is unaffected: its CTX_INIT is a string ("" = random init), it has no W, and
    # KgCoOp's published keys mean nothing to it
    d = make_cfg()
    assert d.TRAINER.COOP.CTX_INIT == "" and "W" not in d.TRAINER.COOP and d.TRAINER.KGCOOP.W == 8.0
    with pytest.raises(ConfigError, match="TRAINER.COOP.W"):
        make_cfg("--trainer", "CoOp", "TRAINER.COOP.W", 8.0)
