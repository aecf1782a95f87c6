"""ProGrad: the projected gradient against hand-computed projections (conflicting and
non-conflicting, constructed, not found by luck), where LAMBDA and T enter, the AMP scaler
path, checkpoints, base-to-new, and ProGrad's published config keys."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import DEMO_CFG, ROOT, make_cfg
from e2mim_clip.prompting import encode_images
from e2mim_engine.errors import ConfigError
from e2mim_engine.seeding import set_random_seed
from e2mim_engine.trainer import build_trainer
from e2mim_trainers.prograd import project_gradient

PROGRAD_TINY = os.path.join(ROOT, "configs", "trainers", "ProGrad", "demo_tiny.yaml")

# ProGrad's published configs/trainers/ProGrad/rn50_ep100.yaml, verbatim.
PROGRAD_PUBLISHED_YAML = """DATALOADER:
  TRAIN_X:
    BATCH_SIZE: 32
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

LOSS:
  NAME: "prograd"
  T: 1.0

TRAIN:
  PRINT_FREQ: 5

MODEL:
  BACKBONE:
    NAME: "RN50"

TRAINER:
  COOP:
    CTX_INIT: True
"""


def build(root, out, *extra):
    cfg = make_cfg("--root", root, "--seed", 1, "--trainer", "ProGrad", "--dataset-config-file", DEMO_CFG,
                   "--config-file", PROGRAD_TINY, "--output-dir", str(out), "DATASET.NUM_SHOTS", 2,
                   "OPTIM.MAX_EPOCH", 1, "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "VERBOSE", False,
                   "TRAINER.PROGRAD.N_CTX", 8, "DATASET.SUBSAMPLE_CLASSES", "base", *extra)
    set_random_seed(1)
    return build_trainer(cfg)


def fake_batch(n, n_cls, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"img": torch.randn(n, 3, 224, 224, generator=g), "label": torch.arange(n) % n_cls}


def logits(t, batch, text):
    """Prompt (or teacher) logits on the frozen image features the trainer uses (the fused
    encoder equals CLIP's own to ~1e-6, tests/test_perf_fused.py; the projection here is
    checked to 1e-4 relative, tighter than what that difference allows near orthogonal
    gradients)."""
    with torch.no_grad():
        img = encode_images(t.model.clip, batch["img"])
    return t.model.clip.logit_scale.exp().float() * img @ text.t()


def reference_grads(t, batch, T):
    """g_ce and g_kl at the current context, with the true KL (same gradient as ProGrad's
    soft-target cross-entropy), and the published kl_loss value."""
    ctx = t.model.prompt_learner.ctx
    s, z = logits(t, batch, t.model.text_features()), logits(t, batch, t.text_h)
    ce = F.cross_entropy(s, batch["label"])
    kl = F.kl_div(F.log_softmax(s / T, -1), F.softmax(z / T, -1), reduction="batchmean") * T * T
    published_kl = (T * T * -(F.softmax(z / T, -1) * F.log_softmax(s / T, -1)).sum(1)).mean()
    g_ce, = torch.autograd.grad(ce, ctx, retain_graph=True)
    g_kl, = torch.autograd.grad(kl, ctx)
    return g_ce, g_kl, ce.item(), published_kl.item()


def set_teacher_along_ce(t, batch, sign, eps=0.05):
    """The teacher := the prompt moved by eps along +-g_ce. Pulling towards a teacher one CE
    descent step away agrees with CE (g_ce . g_kl = eps g^T F g > 0, F the Fisher matrix);
    one ascent step away conflicts with it. So both cases are made, not searched for."""
    ctx = t.model.prompt_learner.ctx
    g_ce, _, _, _ = reference_grads(t, batch, 1.0)
    ctx0 = ctx.detach().clone()
    with torch.no_grad():
        ctx.add_(sign * eps * ctx0.norm() * g_ce / g_ce.norm())
        t.text_h = t.model.text_features().detach()
        ctx.copy_(ctx0)


def test_projection_rule_on_hand_made_vectors():
    g_ce, g_kl = torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.0])
    # conflict (dot -1): remove LAMBDA times the component along g_kl
    torch.testing.assert_close(project_gradient(g_ce, g_kl, 1.0), torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(project_gradient(g_ce, g_kl, 0.5), torch.tensor([0.5, 2.0]))
    # no conflict, or no zero-shot direction at all: g_ce as it is
    torch.testing.assert_close(project_gradient(g_ce, -g_kl, 1.0), g_ce)
    torch.testing.assert_close(project_gradient(g_ce, torch.zeros(2), 1.0), g_ce)


@pytest.mark.parametrize("sign,lam,T", [(+1, 1.0, 1.0), (+1, 0.5, 2.0), (-1, 1.0, 1.0), (-1, 0.8, 2.0)])
def test_trainer_step_puts_the_projected_gradient_on_the_context(demo_root, tmp_path, sign, lam, T):
    t = build(demo_root, tmp_path, "LOSS.LAMBDA", lam, "LOSS.T", T)
    t.set_model_mode("train")
    batch = fake_batch(4, t.num_classes)
    set_teacher_along_ce(t, batch, sign)
    g_ce, g_kl, ce, kl = reference_grads(t, batch, T)
    dot = torch.dot(g_ce.flatten(), g_kl.flatten())
    assert (dot < 0) == (sign > 0), "the constructed case is not what it should be"
    if sign > 0:
        expected = g_ce - lam * dot / g_kl.pow(2).sum() * g_kl
    else:
        expected = g_ce
    out = t.forward_backward(batch)
    got = t.model.prompt_learner.ctx.grad
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)
    if sign > 0 and lam == 1.0:  # nothing left against the zero-shot direction
        assert abs(torch.dot(got.flatten(), g_kl.flatten())) < 1e-4 * got.norm() * g_kl.norm()
    assert out["xe_loss"] == pytest.approx(ce, rel=1e-5) and out["loss"] == out["xe_loss"]
    assert out["kl_loss"] == pytest.approx(kl, rel=1e-5)
    diag = t.epoch_diagnostics()  # the step's conflict, logged per epoch
    assert diag["conflict_share"] == (1.0 if sign > 0 else 0.0)
    assert diag["grad_cos"] == pytest.approx(float(dot / (g_ce.norm() * g_kl.norm())), rel=1e-4)
    assert "conflict_share" not in t.epoch_diagnostics()  # counted afresh each epoch


def test_amp_scaler_sees_the_scaled_projection(demo_root, tmp_path):
    """Under a GradScaler both passes are scaled alike: the step uses the unscaled projection."""
    t = build(demo_root, tmp_path)
    t.set_model_mode("train")
    batch = fake_batch(4, t.num_classes)
    set_teacher_along_ce(t, batch, +1)
    g_ce, g_kl, _, _ = reference_grads(t, batch, 1.0)
    dot = torch.dot(g_ce.flatten(), g_kl.flatten())
    assert dot < 0
    expected = g_ce - dot / g_kl.pow(2).sum() * g_kl
    t.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    before = t.model.prompt_learner.ctx.detach().clone()
    t.forward_backward(batch)
    torch.testing.assert_close(t.model.prompt_learner.ctx.grad, expected, rtol=1e-4, atol=1e-7)
    lr = t.get_current_lr()
    wd = t.cfg.OPTIM.WEIGHT_DECAY
    torch.testing.assert_close(t.model.prompt_learner.ctx.detach(), before - lr * (expected + wd * before),
                               rtol=1e-5, atol=1e-8)


def test_context_init_from_the_template_and_teacher_once(demo_root, tmp_path):
    t = build(demo_root, tmp_path)
    pl = t.model.prompt_learner
    words = t.templates[0].split("{}")[0].strip()
    assert pl.prompt_prefix == "X X X X " + words and words == "a photo of a"
    from e2mim_clip.prompting import clip
    emb = t.model.clip.token_embedding(clip.tokenize(words))[0, 1:5].float()
    torch.testing.assert_close(pl.ctx[4:].detach(), emb)
    assert not pl.ctx[:4].any()
    assert t.text_h.shape[0] == t.num_classes and not t.text_h.requires_grad
    assert sum(isinstance(m, type(t.model.clip)) for m in t.__dict__.values()) == 0  # no second CLIP


def test_checkpoint_holds_only_the_context_and_base_prompt_evaluates_on_new(demo_root, tmp_path):
    t = build(demo_root, tmp_path / "base")
    t.train()
    ckpt = torch.load(tmp_path / "base" / "prompt_learner" / "model.pth.tar-1", weights_only=True)
    assert list(ckpt["state_dict"]) == ["ctx"] and ckpt["state_dict"]["ctx"].shape == (8, 128)
    assert [n for n, p in t.model.named_parameters() if p.requires_grad] == ["prompt_learner.ctx"]
    res = json.load(open(tmp_path / "base" / "results.json"))
    assert res["lambda"] == 1.0 and res["T"] == 1.0 and res["keys_from"] == "TRAINER.PROGRAD"
    new = build(demo_root, tmp_path / "new", "DATASET.SUBSAMPLE_CLASSES", "new")
    assert set(new.classnames).isdisjoint(t.classnames)
    new.load_model(str(tmp_path / "base"), epoch=1)
    torch.testing.assert_close(new.model.prompt_learner.ctx, t.model.prompt_learner.ctx)
    assert 0 <= new.test() <= 100


def _settings(cfg):
    c = cfg.TRAINER.PROGRAD
    return {k: c[k] for k in c if k != "KEYS_FROM"}, c.KEYS_FROM, dict(cfg.LOSS)


def test_published_yaml_and_script_keys_load_unchanged(tmp_path):
    published = tmp_path / "rn50_ep100.yaml"
    published.write_text(PROGRAD_PUBLISHED_YAML)
    ours = make_cfg("--trainer", "ProGrad", "--config-file",
                    os.path.join(ROOT, "configs/trainers/ProGrad/rn50_ep100.yaml"))
    # ProGrad's base2new_train_prograd.sh adds these
    theirs = make_cfg("--trainer", "ProGrad", "--config-file", published, "LOSS.LAMBDA", 1.0,
                      "TRAINER.COOP.N_CTX", 16, "TRAINER.COOP.CSC", False, "TRAINER.COOP.CLASS_TOKEN_POSITION", "end")
    s_ours, node_ours, loss_ours = _settings(ours)
    s_theirs, node_theirs, loss_theirs = _settings(theirs)
    assert (node_ours, node_theirs) == ("TRAINER.PROGRAD", "TRAINER.COOP")
    assert s_ours == s_theirs == {"N_CTX": 16, "CSC": False, "CTX_INIT": "{template}", "PREC": "fp16",
                                  "CLASS_TOKEN_POSITION": "end", "TEMPLATE_SET": "prograd"}
    assert loss_ours == loss_theirs == {"NAME": "prograd", "LAMBDA": 1.0, "T": 1.0}
    assert ours.OPTIM == theirs.OPTIM and ours.MODEL.BACKBONE.NAME == "RN50"
    assert theirs.TRAINER.COOP == make_cfg().TRAINER.COOP  # CoOp's node untouched
    # ProGrad's code default CTX_INIT False: random init
    s, node, _ = _settings(make_cfg("--trainer", "ProGrad", "TRAINER.COOP.N_CTX", 16))
    assert node == "TRAINER.COOP" and s["CTX_INIT"] == ""
    with pytest.raises(ConfigError, match="TRAINER.COOP.N_CTX.*TRAINER.PROGRAD.CSC"):
        make_cfg("--trainer", "ProGrad", "TRAINER.COOP.N_CTX", 8, "TRAINER.PROGRAD.CSC", True)


def test_loss_node_defaults_and_checks(demo_root, tmp_path):
    d = make_cfg()
    assert dict(d.LOSS) == {"NAME": "", "LAMBDA": 1.0, "T": 1.0}
    assert make_cfg("--trainer", "CoOp").TRAINER.COOP == d.TRAINER.COOP
    for key, value, match in (("LOSS.NAME", "ce", "LOSS.NAME"), ("LOSS.T", 0.0, "LOSS.T"),
                              ("LOSS.LAMBDA", -1.0, "LOSS.LAMBDA")):
        with pytest.raises(ConfigError, match=match):
            build(demo_root, tmp_path, key, value)
    with pytest.raises(ConfigError, match="N_CTX 2 is shorter"):
        build(demo_root, tmp_path, "TRAINER.PROGRAD.N_CTX", 2)


def test_prograd_template_set_is_the_published_one():
    from e2mim_clip.templates import dataset_template
    cfg = make_cfg("--trainer", "ProGrad", "DATASET.NAME", "OxfordPets")
    assert dataset_template(cfg, None, "prograd") == "a type of pet, a photo of a {}."
    cfg = make_cfg("--trainer", "ProGrad", "DATASET.NAME", "DescribableTextures")
    assert dataset_template(cfg, None, "prograd") == "a texture of {}."
