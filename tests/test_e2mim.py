"""The E2MIM trainer on the generated demo data with a tiny random CLIP (CPU, a few steps).

The estimators and the sampler have their own tests (test_mi_estimators.py,
test_mixup_sampler.py); here: config, start-up errors, the training step (text-encoder
calls, image-encoder batches, gradients, soft labels, ablations), checkpoints, new-class
evaluation without the critic, resume, and determinism.
"""
import dataclasses
import json
import math
import os
import shutil

import pytest
import torch

import e2mim_trainers.e2mim as e2mim_module
from conftest import DEMO_CFG, ROOT, make_cfg
from e2mim_engine.data.mixup_sampler import ClassMixupBatchSampler
from e2mim_engine.errors import ConfigError
from e2mim_engine.trainer import build_trainer
from e2mim_engine.seeding import set_random_seed
from e2mim_clip.prompting import TextEncoder

E2_TINY = os.path.join(ROOT, "configs", "trainers", "E2MIM", "demo_tiny.yaml")


def e2_cfg(root, out, *extra, seed=1):
    return make_cfg("--root", root, "--seed", seed, "--trainer", "E2MIM", "--dataset-config-file", DEMO_CFG,
                    "--config-file", E2_TINY, "--output-dir", out, "DATASET.NUM_SHOTS", 2,
                    "DATASET.SUBSAMPLE_CLASSES", "base", "DATALOADER.NUM_WORKERS", 0,
                    "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "OPTIM.MAX_EPOCH", 1, "VERBOSE", False,
                    "TRAINER.E2MIM.MI_HIDDEN", 32, *extra)


def build(root, out, *extra, seed=1):
    set_random_seed(seed)  # as train.py does before building the trainer
    return build_trainer(e2_cfg(root, out, *extra, seed=seed))


def first_batch(trainer):
    trainer.set_model_mode("train")
    trainer.before_epoch()
    return next(iter(trainer.train_loader_x))


def clip_params(trainer):
    return list(trainer.model.clip.parameters())


# ---- config and start-up errors -----------------------------------------------------

def test_config_node_defaults():
    cfg = make_cfg("--trainer", "E2MIM")
    c = cfg.TRAINER.E2MIM
    assert (c.N_CTX, c.CTX_INIT, c.CSC, c.CLASS_TOKEN_POSITION, c.PREC) == (4, "a photo of a", False, "end", "fp16")
    assert (c.CONSISTENCY, c.MI_ESTIMATOR, c.MI_WEIGHT, c.MI_HIDDEN) == ("mi", "jsd", 1.0, 512)
    # The defaults chosen on base-class validation accuracy (docs/METHOD.md, section 11).
    assert (c.MIXUP, c.MIXUP_ALPHA, c.MIX_LEVEL, c.MIX_PROB, c.MIX_WEIGHT) == (True, 1.0, "feature", 1.0, 0.0)
    assert (c.MI_INPUT, c.MI_ON, c.MI_WARMUP, c.MI_INDEPENDENT_MARGINALS) == ("log_prob", "both", False, True)
    assert (c.INFERENCE, c.ENSEMBLE_WEIGHT, c.TEMPLATE_SET, c.TEMPLATE_ENSEMBLE) == ("soft", 0.5, "coop", False)
    # The shipped protocol configs load.
    for name in ("vit_b16_base2new.yaml", "vit_b16_cross_dataset.yaml", "vit_b16_fewshot.yaml"):
        cfg = make_cfg("--trainer", "E2MIM", "--config-file", os.path.join(ROOT, "configs", "trainers", "E2MIM", name))
        assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16" and cfg.OPTIM.LR == 0.002


@pytest.mark.parametrize("extra,key", [
    (("DATALOADER.TRAIN_X.BATCH_SIZE", 1), "DATALOADER.TRAIN_X.BATCH_SIZE"),
    (("DATALOADER.TRAIN_X.BATCH_SIZE", 1, "TRAINER.E2MIM.MIXUP", False), "DATALOADER.TRAIN_X.BATCH_SIZE"),
    (("TRAINER.E2MIM.MI_ESTIMATOR", "mine2"), "TRAINER.E2MIM.MI_ESTIMATOR"),
    (("TRAINER.E2MIM.MI_WEIGHT", -0.5), "TRAINER.E2MIM.MI_WEIGHT"),
    (("TRAINER.E2MIM.MIX_LEVEL", "pixel"), "TRAINER.E2MIM.MIX_LEVEL"),
    (("TRAINER.E2MIM.MIXUP_ALPHA", 0.0), "TRAINER.E2MIM.MIXUP_ALPHA"),
    (("TRAINER.E2MIM.ENSEMBLE_WEIGHT", 1.5), "TRAINER.E2MIM.ENSEMBLE_WEIGHT"),
])
def test_bad_config_is_a_clear_startup_error(tmp_path, extra, key):
    # Raised by check_cfg, before any data or model is built (the root does not exist).
    with pytest.raises(ConfigError) as info:
        build(str(tmp_path / "nodata"), str(tmp_path / "out"), *extra)
    assert key in str(info.value)


def test_single_class_training_set_names_mixup(tmp_path):
    # Few-shot and base/new never leave one class; a custom split could.
    cfg = e2_cfg(str(tmp_path), str(tmp_path))
    items = [type("Item", (), {"label": 3})] * 4
    with pytest.raises(ConfigError, match=r"TRAINER\.E2MIM\.MIXUP.*single class"):
        e2mim_module.mixup_batch_sampler(cfg, items)


# ---- the training step --------------------------------------------------------------

def test_one_text_encoder_pass_per_step_and_once_per_evaluation(demo_root, tmp_path, monkeypatch):
    calls = []
    orig = TextEncoder.forward

    def counting(self, prompts, tokenized):
        calls.append(prompts.shape[0])
        return orig(self, prompts, tokenized)

    monkeypatch.setattr(TextEncoder, "forward", counting)
    trainer = build(demo_root, str(tmp_path), "TRAINER.E2MIM.INFERENCE", "ensemble",
                    "TRAINER.E2MIM.TEMPLATE_ENSEMBLE", True)
    assert len(trainer.templates) == 8
    build_calls = len(calls)
    assert build_calls == 1 and calls[0] == 5 * 8  # hand-crafted features: one batched call
    batch = first_batch(trainer)
    for _ in range(3):
        trainer.forward_backward(batch)
    assert calls[build_calls:] == [5, 5, 5]  # one soft-prompt pass per step, never hand-crafted
    trainer.test()
    assert calls[build_calls + 3:] == [5]  # once per evaluation, whatever the number of batches
    trainer.set_model_mode("eval")  # what test() does first: the next evaluation encodes again
    image = batch["img"]
    trainer.model_inference(image)
    trainer.model_inference(image)
    assert calls[build_calls + 3:] == [5, 5]


@pytest.mark.parametrize("level,expected", [("image", [6]), ("feature", [4])])
def test_image_encoder_one_call_per_step(demo_root, tmp_path, level, expected):
    trainer = build(demo_root, str(tmp_path), "TRAINER.E2MIM.MIX_LEVEL", level)
    sizes = []
    orig = e2mim_module.encode_images

    def counting(clip_model, x, normalize=True):
        sizes.append(x.shape[0])
        assert not torch.is_grad_enabled()  # the frozen image encoder runs without autograd
        return orig(clip_model, x, normalize)

    e2mim_module.encode_images = counting
    try:
        trainer.forward_backward(first_batch(trainer))
    finally:
        e2mim_module.encode_images = orig
    assert sizes == expected  # image level: 4 clean + 2 mixed in one call; feature level: 4


@pytest.mark.parametrize("extra", [("TRAINER.E2MIM.MIX_LEVEL", "image"), ("TRAINER.E2MIM.MIX_LEVEL", "feature"),
                                   ("TRAINER.E2MIM.MI_ESTIMATOR", "dv"), ("TRAINER.E2MIM.MI_ESTIMATOR", "infonce")],
                         ids=["image-jsd", "feature-jsd", "dv", "infonce"])
def test_gradients_reach_context_and_critic_but_no_clip_weight(demo_root, tmp_path, extra):
    trainer = build(demo_root, str(tmp_path), *extra)
    out = trainer.forward_backward(first_batch(trainer))
    assert {"loss", "loss_ce", "loss_mix", "mi", "acc"} <= set(out)
    ctx = trainer.model.prompt_learner.ctx
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0
    critic = list(trainer.critic.parameters())
    # The critic as a whole learns; single tensors may get an exactly-zero gradient (the DV
    # bound is invariant to a constant shift of the score, so the last bias's is 0 analytically).
    assert critic and all(p.grad is not None for p in critic)
    assert sum(float(p.grad.abs().sum()) for p in critic) > 0
    assert all(not p.requires_grad and p.grad is None for p in clip_params(trainer))
    assert trainer.get_model_names() == ["prompt_learner", "mi_estimator"]


def test_beta_scales_the_prompt_gradient_only(demo_root, tmp_path):
    grads = {}
    for beta in (0.0, 2.0):
        trainer = build(demo_root, str(tmp_path / str(beta)), "TRAINER.E2MIM.MI_WEIGHT", beta)
        batch = first_batch(trainer)
        trainer.forward_backward(batch)
        grads[beta] = (trainer.model.prompt_learner.ctx.grad.clone(),
                       [p.grad.clone() for p in trainer.critic.parameters()])
    ref = build(demo_root, str(tmp_path / "none"), "TRAINER.E2MIM.CONSISTENCY", "none")
    ref.forward_backward(first_batch(ref))
    # beta = 0: the prompt sees CE terms only; the critic's gradient does not depend on beta.
    torch.testing.assert_close(grads[0.0][0], ref.model.prompt_learner.ctx.grad)
    assert not torch.allclose(grads[2.0][0], grads[0.0][0])
    for a, b in zip(grads[0.0][1], grads[2.0][1]):
        torch.testing.assert_close(a, b)


def test_mixup_pairs_soft_labels_follow_lambda(demo_root, tmp_path, monkeypatch):
    seen = []
    orig = e2mim_module.mix_targets

    def recording(y_a, y_b, lam, num_classes):
        soft = orig(y_a, y_b, lam, num_classes)
        seen.append((y_a, y_b, lam, soft))
        return soft

    monkeypatch.setattr(e2mim_module, "mix_targets", recording)
    trainer = build(demo_root, str(tmp_path), "DATALOADER.TRAIN_X.BATCH_SIZE", 5)  # odd: 2 pairs
    sampler = trainer.train_loader_x.batch_sampler
    assert isinstance(sampler, ClassMixupBatchSampler)
    assert len(trainer.train_loader_x) == 10 // 5  # EPOCH_BATCHES=dataset: CoOp's batches per epoch
    batch = first_batch(trainer)
    y = batch["label"]
    assert len(y) == 4 and (y[:2] != y[2:]).all()
    trainer.forward_backward(batch)
    y_a, y_b, lam, soft = seen[0]
    torch.testing.assert_close(soft.sum(1), torch.ones(2))
    torch.testing.assert_close(soft[torch.arange(2), y_a], lam)
    torch.testing.assert_close(soft[torch.arange(2), y_b], 1 - lam)
    every = build(demo_root, str(tmp_path / "a"), "TRAINER.E2MIM.EPOCH_BATCHES", "anchors")
    assert len(every.train_loader_x) == math.ceil(10 / 2)  # every image an anchor once


def test_one_shot_small_batch(demo_root, tmp_path):
    trainer = build(demo_root, str(tmp_path), "DATASET.NUM_SHOTS", 1, "DATALOADER.TRAIN_X.BATCH_SIZE", 2)
    out = trainer.forward_backward(first_batch(trainer))
    assert math.isfinite(out["loss"]) and "mi" in out


def test_ablation_switches(demo_root, tmp_path):
    no_mi = build(demo_root, str(tmp_path / "a"), "TRAINER.E2MIM.CONSISTENCY", "none")
    assert no_mi.get_model_names() == ["prompt_learner"] and no_mi.critic is None
    out = no_mi.forward_backward(first_batch(no_mi))
    assert "mi" not in out and "loss_mix" in out

    no_mix = build(demo_root, str(tmp_path / "b"), "TRAINER.E2MIM.MIXUP", False)
    assert not isinstance(no_mix.train_loader_x.batch_sampler, ClassMixupBatchSampler)
    out = no_mix.forward_backward(first_batch(no_mix))
    assert "loss_mix" not in out and "mi" in out

    cos = build(demo_root, str(tmp_path / "c"), "TRAINER.E2MIM.CONSISTENCY", "cosine")
    assert cos.critic is None
    out = cos.forward_backward(first_batch(cos))
    assert "loss_cos" in out and "mi" not in out
    assert 0.0 <= out["loss_cos"] <= 2.0
    assert cos.model.prompt_learner.ctx.grad.abs().sum() > 0


def test_loss_falls_over_a_short_run(demo_root, tmp_path):
    trainer = build(demo_root, str(tmp_path), "OPTIM.LR", 0.05, "OPTIM.WARMUP_EPOCH", 0,
                    "DATALOADER.TRAIN_X.BATCH_SIZE", 8, "TRAINER.E2MIM.MIX_LEVEL", "feature",
                    "INPUT.TRANSFORMS", "['normalize']")
    batch = first_batch(trainer)
    losses = [trainer.forward_backward(batch) for _ in range(10)]
    first = sum(o["loss"] for o in losses[:3]) / 3
    last = sum(o["loss"] for o in losses[-3:]) / 3
    assert last < first - 0.05, (first, last)
    assert losses[-1]["loss_ce"] < losses[0]["loss_ce"] - 0.1


# ---- evaluation, checkpoints, resume, determinism -----------------------------------

def test_ensemble_inference_interpolates_the_views(demo_root, tmp_path):
    soft = build(demo_root, str(tmp_path / "s"))
    ens = build(demo_root, str(tmp_path / "e"), "TRAINER.E2MIM.INFERENCE", "ensemble",
                "TRAINER.E2MIM.ENSEMBLE_WEIGHT", 1.0)
    ens.model.prompt_learner.load_state_dict(soft.model.prompt_learner.state_dict())
    image = first_batch(soft)["img"]
    soft.set_model_mode("eval")
    ens.set_model_mode("eval")
    with torch.no_grad():
        p_s = soft.model_inference(image).softmax(-1)
        torch.testing.assert_close(ens.model_inference(image).exp(), p_s, atol=1e-6, rtol=1e-5)
        ens.hparams = dataclasses.replace(ens.hparams, ensemble_weight=0.0)  # the view is read per call
        img = torch.nn.functional.normalize(ens.model.clip.encode_image(image).float(), dim=-1)
        p_h = (ens.model.logit_scale * img @ ens.text_h.t()).softmax(-1)
        torch.testing.assert_close(ens.model_inference(image).exp(), p_h, atol=1e-6, rtol=1e-5)


def test_checkpoints_new_class_eval_and_resume(demo_root, tmp_path):
    out = str(tmp_path / "base")
    trainer = build(demo_root, out)
    trainer.train()
    pl = torch.load(os.path.join(out, "prompt_learner", "model.pth.tar-1"), weights_only=True)
    assert set(pl["state_dict"]) == {"ctx"}
    assert set(pl) >= {"state_dict", "epoch", "optimizer", "scheduler", "val_result"}
    critic_ckpt = torch.load(os.path.join(out, "mi_estimator", "model.pth.tar-1"), weights_only=True)
    assert set(critic_ckpt["state_dict"]) == set(trainer.critic.state_dict())
    assert all(k.startswith("critic.") for k in critic_ckpt["state_dict"])

    # Resuming restores the critic too.
    again = build(demo_root, out)
    assert again.resume_model_if_exist(out) == 1
    for k, v in trainer.critic.state_dict().items():
        torch.testing.assert_close(again.critic.state_dict()[k], v)

    # A base-trained prompt evaluates on the new classes; the critic is not needed.
    shutil.rmtree(os.path.join(out, "mi_estimator"))
    new = build(demo_root, str(tmp_path / "new"), "DATASET.SUBSAMPLE_CLASSES", "new",
                "TRAINER.E2MIM.INFERENCE", "ensemble")
    new.load_model(out, epoch=1)
    torch.testing.assert_close(new.model.prompt_learner.ctx, trainer.model.prompt_learner.ctx)
    new.test()
    with open(os.path.join(str(tmp_path / "new"), "results.json")) as f:
        res = json.load(f)
    assert res["num_classes"] == 5 and res["subsample"] == "new" and res["inference"] == "ensemble"


def test_same_seed_same_result(demo_root, tmp_path, monkeypatch):
    runs = []
    for name in ("a", "b"):
        t = build(demo_root, str(tmp_path / name), "OPTIM.MAX_EPOCH", 2, "OPTIM.WARMUP_EPOCH", 0,
                  "TRAINER.E2MIM.MIX_PROB", 0.5, "TEST.NO_TEST", True)
        logged = []
        step = t.forward_backward
        monkeypatch.setattr(t, "forward_backward", lambda batch: logged.append(step(batch)) or logged[-1])
        t.train()
        runs.append((t.model.prompt_learner.ctx.detach().clone(),
                     {k: v.clone() for k, v in t.critic.state_dict().items()}, logged))
    (ctx_a, crit_a, log_a), (ctx_b, crit_b, log_b) = runs
    assert len(log_a) == 4 and log_a == log_b  # every logged number of every step
    assert torch.equal(ctx_a, ctx_b)
    assert all(torch.equal(crit_a[k], crit_b[k]) for k in crit_a)
