"""Deep vision-language prompts (e2mim_clip.deep_prompts) and IVLP, MaPLe, PromptSRC: the
wrapper against CLIP's own encoders and slow hand-written references, where tokens go at each
layer, gradients, widths of every CLIP shape, the ResNet error, PromptSRC's losses and
Gaussian aggregation, checkpoints, base-to-new loading, the published yaml files, bf16/amp."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import DEMO_CFG, ROOT, make_cfg
from e2mim_clip.deep_prompts import (DeepPromptCLIP, DeepTextEncoder, DeepVisionEncoder, IVLPPromptLearner,
                                     MaPLePromptLearner, encoder_shapes)
from e2mim_clip.loader import CLIP_SPECS, build_random_clip
from e2mim_clip.prompting import PromptCLIP, PromptLearner, clip, tokenize
from e2mim_engine.errors import ConfigError
from e2mim_engine.seeding import set_random_seed
from e2mim_engine.trainer import build_trainer
from e2mim_trainers.promptsrc import PROMPTSRC_TEMPLATES, gaussian_weights

CFG = {t: os.path.join(ROOT, "configs", "trainers", t) for t in ("IVLP", "MaPLe", "PromptSRC")}
CLASSES = ["red apple", "green_pear", "dog"]


@pytest.fixture(scope="module")
def tiny():
    return build_random_clip("tiny")


def images(n, seed=0):
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def meta_clip(shape):
    """A CLIP of a published shape without memory or init time (for shapes only)."""
    with torch.device("meta"):
        return clip.model.CLIP(**CLIP_SPECS[shape])


def build(trainer, root, out, *extra, epochs=1):
    cfg = make_cfg("--root", root, "--seed", 1, "--trainer", trainer, "--dataset-config-file", DEMO_CFG,
                   "--config-file", os.path.join(CFG[trainer], "demo_tiny.yaml"), "--output-dir", str(out),
                   "DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", epochs, "DATALOADER.TRAIN_X.BATCH_SIZE", 4,
                   "VERBOSE", False, *extra)
    set_random_seed(1)
    return build_trainer(cfg)


def fake_batch(n, n_cls, seed=0):
    return {"img": images(n, seed), "label": torch.arange(n) % n_cls}


def block_io(blocks):
    """Hooks recording each block's input and output."""
    ins, outs, handles = {}, {}, []
    for i, b in enumerate(blocks):
        handles.append(b.register_forward_pre_hook(lambda m, a, i=i: ins.__setitem__(i, a[0].detach().clone())))
        handles.append(b.register_forward_hook(lambda m, a, o, i=i: outs.__setitem__(i, o.detach().clone())))
    return ins, outs, handles


def reference_vision(model, image, ctx, deep):
    """Slow reference: tokens laid out by hand (batch-first, index assignment), blocks run one by one."""
    v = model.visual
    x = v.conv1(image).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(len(image), 1, -1), x], 1) + v.positional_embedding
    n = ctx.shape[0]
    seq = torch.zeros(len(image), x.shape[1] + n, x.shape[2])
    seq[:, :x.shape[1]] = x
    seq[:, x.shape[1]:] = ctx
    seq = v.ln_pre(seq)
    for i, block in enumerate(v.transformer.resblocks):
        if 1 <= i <= len(deep):
            seq = seq.clone()
            seq[:, -n:] = deep[i - 1]
        seq = block(seq.transpose(0, 1)).transpose(0, 1)
    return v.ln_post(seq[:, 0]) @ v.proj


def reference_text(model, texts, n_ctx, ctx, deep):
    """Slow reference at CLIP's full 77 tokens: positions 1..n_ctx set by hand before each block."""
    tok = clip.tokenize(texts)
    x = model.token_embedding(tok).clone()
    x[:, 1:1 + n_ctx] = ctx
    x = (x + model.positional_embedding).transpose(0, 1)
    for i, block in enumerate(model.transformer.resblocks):
        if 1 <= i <= len(deep):
            x = x.clone()
            x[1:1 + n_ctx] = deep[i - 1].unsqueeze(1)
        x = block(x)
    x = model.ln_final(x.transpose(0, 1))
    return x[torch.arange(len(tok)), tok.argmax(-1)] @ model.text_projection


# ---- the mechanism ----------------------------------------------------------------------
def test_wrapper_without_prompts_equals_clip(tiny):
    img = images(2)
    with torch.no_grad():
        torch.testing.assert_close(DeepVisionEncoder(tiny)(img), tiny.encode_image(img), rtol=1e-5, atol=1e-5)
        texts = ["a photo of a dog.", "an apple on a long wooden table."]
        tok = tokenize(texts)
        assert tok.shape[1] < 77  # truncated at the longest EOT
        ours = DeepTextEncoder(tiny)(tiny.token_embedding(tok), tok)
        torch.testing.assert_close(ours, tiny.encode_text(clip.tokenize(texts)), rtol=1e-5, atol=1e-5)


def test_vision_prompts_equal_hand_written_reference_and_only_prompt_positions_change(tiny):
    g = torch.Generator().manual_seed(1)
    ctx, deep = torch.randn(3, 128, generator=g), [torch.randn(3, 128, generator=g)]
    img = images(2)
    enc = DeepVisionEncoder(tiny)
    ins, outs, handles = block_io(tiny.visual.transformer.resblocks)
    with torch.no_grad():
        ours = enc(img, ctx, deep)
        ref = reference_vision(tiny, img, ctx, deep)
    for h in handles:
        h.remove()
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    L = 1 + (224 // 32) ** 2 + 3
    assert ins[0].shape == (L, 2, 128)
    torch.testing.assert_close(ins[0][-3:], tiny.visual.ln_pre(ctx).unsqueeze(1).expand(-1, 2, -1))
    # layer 1's input: the previous outputs everywhere except the prompt positions
    torch.testing.assert_close(ins[1][:-3], outs[0][:-3])
    torch.testing.assert_close(ins[1][-3:], deep[0].unsqueeze(1).expand(-1, 2, -1))
    assert not torch.allclose(outs[0][-3:], ins[1][-3:])
    with torch.no_grad():  # a different layer-1 prompt: layer 0 unchanged, layer 1 and the feature change
        ins2, outs2, handles = block_io(tiny.visual.transformer.resblocks)
        other = enc(img, ctx, [deep[0] + 1.0])
    for h in handles:
        h.remove()
    torch.testing.assert_close(outs2[0], outs[0])
    assert not torch.allclose(outs2[1], outs[1]) and not torch.allclose(other, ours)


def test_text_deep_prompts_equal_full_length_reference(tiny):
    g = torch.Generator().manual_seed(2)
    n = 2
    pl = IVLPPromptLearner(tiny, CLASSES, n, "a photo of a", 2, 0, 0)
    with torch.no_grad():
        pl.ctx.normal_(generator=g)
        pl.text_deep[0].normal_(generator=g)
    assert pl.tokenized_prompts.shape[1] < 77
    enc = DeepTextEncoder(tiny)
    ins, outs, handles = block_io(tiny.transformer.resblocks)
    with torch.no_grad():
        prompts, deep = pl.text_prompts()
        ours = enc(prompts, pl.tokenized_prompts, deep)
        texts = [f"a photo of a {c.replace('_', ' ')}." for c in CLASSES]
        ref = reference_text(tiny, texts, n, pl.ctx, deep)
    for h in handles:
        h.remove()
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    # the input context replaces "a photo" (the published CTX_INIT rule), "of a" stays as words
    tok = clip.tokenize(texts)[:, :pl.tokenized_prompts.shape[1]]
    assert torch.equal(pl.tokenized_prompts, tok)
    torch.testing.assert_close(ins[1][1:1 + n], deep[0].unsqueeze(1).expand(-1, 3, -1))
    torch.testing.assert_close(ins[1][:1], outs[0][:1])
    torch.testing.assert_close(ins[1][1 + n:], outs[0][1 + n:])


def test_ivlp_depth_1_text_only_equals_coop(tiny):
    ivlp = DeepPromptCLIP(tiny, IVLPPromptLearner(tiny, CLASSES, 4, "a photo of a", 1, 0, 0))
    coop = PromptCLIP(tiny, PromptLearner(tiny, CLASSES, n_ctx=4, ctx_init="a photo of a"))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        coop.prompt_learner.ctx.normal_(generator=g)
        ivlp.prompt_learner.ctx.copy_(coop.prompt_learner.ctx)
        img = images(2)
        assert list(ivlp.prompt_learner.parameters()) == [ivlp.prompt_learner.ctx]
        torch.testing.assert_close(ivlp.text_features(), coop.text_features(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ivlp(img), coop(img), rtol=1e-4, atol=1e-4)


def test_gradients_reach_every_prompt_and_no_clip_weight(demo_root, tmp_path):
    for trainer in ("IVLP", "MaPLe"):
        t = build(trainer, demo_root, tmp_path / trainer, "DATASET.SUBSAMPLE_CLASSES", "base")
        t.set_model_mode("train")
        t.model_zero_grad()
        loss = F.cross_entropy(t.model(fake_batch(4, 5)["img"]), torch.arange(4) % 5)
        loss.backward()
        pl = t.model.prompt_learner
        names = sorted(n for n, p in t.model.named_parameters() if p.requires_grad)
        assert names == sorted(f"prompt_learner.{n}" for n, _ in pl.named_parameters())
        for n, p in pl.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (trainer, n)
            assert p.dtype == torch.float32
        assert all(p.grad is None for p in t.model.clip.parameters())
        assert torch.isfinite(loss)


def test_widths_and_layers_are_read_from_every_vit_shape():
    for shape in ("ViT-B/32", "ViT-B/16", "ViT-L/14"):
        m = meta_clip(shape)
        spec = CLIP_SPECS[shape]
        s = encoder_shapes(m)
        assert s == {"vision_width": spec["vision_width"], "vision_layers": spec["vision_layers"],
                     "text_width": spec["transformer_width"], "text_layers": spec["transformer_layers"]}
        pl = IVLPPromptLearner(m, CLASSES, 4, "a photo of a", 9, 4, 9)
        assert pl.vision_ctx.shape == (4, spec["vision_width"]) and len(pl.vision_deep) == 8
        assert pl.ctx.shape == (4, spec["transformer_width"]) and len(pl.text_deep) == 8
        maple = MaPLePromptLearner(m, CLASSES, 2, "a photo of a", 9)
        # the coupling maps text width to vision width (512 -> 768 for ViT-B, 768 -> 1024 for ViT-L)
        assert maple.proj.weight.shape == (spec["vision_width"], spec["transformer_width"])
        assert [f.weight.shape for f in maple.compound_prompt_projections] == [maple.proj.weight.shape] * 8


def test_resnet_backbone_is_a_config_error():
    m = meta_clip("RN50")
    with pytest.raises(ConfigError, match="ViT image encoder.*ModifiedResNet"):
        DeepVisionEncoder(m)
    with pytest.raises(ConfigError, match="ViT image encoder"):
        MaPLePromptLearner(m, CLASSES, 2, "a photo of a", 9)


def test_vit_b16_shape_published_yaml_builds_and_steps_at_batch_1(demo_root, tmp_path):
    """IVLP's published 12-layer file on a random ViT-B/16-shaped CLIP, then MaPLe's deepest
    setting on the same weights: one step / forward at batch 1."""
    cfg = make_cfg("--root", demo_root, "--seed", 1, "--trainer", "IVLP", "--dataset-config-file", DEMO_CFG,
                   "--config-file", os.path.join(CFG["IVLP"], "vit_b16_c2_ep5_batch4_2+2ctx.yaml"),
                   "--backbone", "random:ViT-B/16", "--output-dir", str(tmp_path), "DATASET.NUM_SHOTS", 1,
                   "DATALOADER.NUM_WORKERS", 0, "DATASET.SUBSAMPLE_CLASSES", "base")
    t = build_trainer(cfg)
    pl = t.model.prompt_learner
    assert pl.vision_ctx.shape == (2, 768) and len(pl.vision_deep) == 11
    assert pl.ctx.shape == (2, 512) and len(pl.text_deep) == 11
    t.set_model_mode("train")
    out = t.forward_backward(fake_batch(1, 5))
    assert all(math.isfinite(v) for v in out.values())
    m = t.model.clip
    model = DeepPromptCLIP(m, MaPLePromptLearner(m, t.classnames, 2, "a photo of a", 12))
    with torch.no_grad():
        logits = model(images(1))
        assert logits.shape == (1, 5) and torch.isfinite(logits).all()
        torch.testing.assert_close(model.frozen_image_features(images(1)),
                                   F.normalize(m.encode_image(images(1)), dim=-1), rtol=1e-4, atol=1e-5)


def test_maple_vision_prompts_are_the_coupled_text_prompts(tiny):
    pl = MaPLePromptLearner(tiny, CLASSES, 2, "a photo of a", 2)
    model = DeepPromptCLIP(tiny, pl)
    ins, _, handles = block_io(tiny.visual.transformer.resblocks)
    tins, _, thandles = block_io(tiny.transformer.resblocks)
    with torch.no_grad():
        model.image_features(images(2))
        model.text_features()
    for h in handles + thandles:
        h.remove()
    with torch.no_grad():
        torch.testing.assert_close(ins[0][-2:, 0], tiny.visual.ln_pre(pl.proj(pl.ctx)))
        torch.testing.assert_close(ins[1][-2:, 1], pl.compound_prompt_projections[0](pl.text_deep[0]))
        torch.testing.assert_close(tins[1][1:3, 0], pl.text_deep[0])
    assert len(MaPLePromptLearner(tiny, CLASSES, 2, "a photo of a", 1).compound_prompt_projections) == 0


@pytest.mark.parametrize("n_ctx, ctx_init", [(2, "a photo of a"), (6, "")])
def test_maple_initial_tensors_are_drawn_as_the_published_code_draws_them(tiny, n_ctx, ctx_init):
    """The published MaPLe draws (random context,) the input coupling, the deep text prompts,
    then ONE layer that every deep coupling copies: the deep couplings equal each other, not
    the input coupling, and the same seed gives the same tensors."""
    tw, vw = tiny.ln_final.weight.shape[0], tiny.visual.conv1.weight.shape[0]
    torch.manual_seed(5)
    pl = MaPLePromptLearner(tiny, CLASSES, n_ctx, ctx_init, 3)
    torch.manual_seed(5)
    ctx = torch.nn.init.normal_(torch.empty(n_ctx, tw), std=0.02) if not ctx_init else pl.ctx
    proj = torch.nn.Linear(tw, vw)
    deep_text = [torch.nn.init.normal_(torch.empty(n_ctx, tw), std=0.02) for _ in range(2)]
    single = torch.nn.Linear(tw, vw)
    torch.testing.assert_close(pl.ctx.data, ctx, rtol=0, atol=0)
    torch.testing.assert_close(pl.proj.state_dict(), proj.state_dict(), rtol=0, atol=0)
    for p, q in zip(pl.text_deep, deep_text):
        torch.testing.assert_close(p.data, q, rtol=0, atol=0)
    for f in pl.compound_prompt_projections:
        torch.testing.assert_close(f.state_dict(), single.state_dict(), rtol=0, atol=0)
    assert not torch.equal(pl.compound_prompt_projections[0].weight, pl.proj.weight)
    a, b = pl.compound_prompt_projections  # copies, not one shared module
    assert a.weight.data_ptr() != b.weight.data_ptr()


def test_depth_errors_and_clamping(demo_root, tmp_path):
    with pytest.raises(ConfigError, match="PROMPT_DEPTH_TEXT must be an integer >= 1"):
        build("IVLP", demo_root, tmp_path / "b", "TRAINER.IVLP.PROMPT_DEPTH_TEXT", 0)
    with pytest.raises(ConfigError, match="MAPLE.PROMPT_DEPTH must be an integer >= 1"):
        build("MaPLe", demo_root, tmp_path / "c", "TRAINER.MAPLE.PROMPT_DEPTH", 0)
    with pytest.raises(ConfigError, match="GPA_STD"):
        build("PromptSRC", demo_root, tmp_path / "d", "TRAINER.PROMPTSRC.GPA_STD", 0)
    with pytest.raises(ConfigError, match="CTX_INIT 'a photo' has 2 tokens"):
        build("IVLP", demo_root, tmp_path / "e", "TRAINER.IVLP.CTX_INIT", "a photo", "TRAINER.IVLP.N_CTX_TEXT", 3)
    # the published depth 9 on the 2-layer tiny CLIP prompts both layers (as the published code does)
    t = build("IVLP", demo_root, tmp_path / "a", "TRAINER.IVLP.PROMPT_DEPTH_TEXT", 9,
              "TRAINER.IVLP.PROMPT_DEPTH_VISION", 9)
    pl = t.model.prompt_learner
    assert (pl.text_depth, pl.vision_depth, len(pl.text_deep), len(pl.vision_deep)) == (2, 2, 1, 1)
    t = build("MaPLe", demo_root, tmp_path / "f", "TRAINER.MAPLE.PROMPT_DEPTH", 9)
    assert len(t.model.prompt_learner.compound_prompt_projections) == 1


# ---- PromptSRC ----------------------------------------------------------------------------
def test_promptsrc_losses_equal_hand_computed_values(demo_root, tmp_path):
    t = build("PromptSRC", demo_root, tmp_path, "DATASET.SUBSAMPLE_CLASSES", "base")
    m, pl = t.model.clip, t.model.prompt_learner
    with torch.no_grad():
        for p in pl.parameters():  # prompts away from their init, as during training
            p.add_(0.05 * torch.randn_like(p))
    batch = fake_batch(4, 5, seed=4)
    img_in, label = batch["img"], batch["label"]
    t.set_model_mode("train")
    with torch.no_grad():
        names = [c.replace("_", " ") for c in t.classnames]
        raw = torch.stack([m.encode_text(clip.tokenize([tp.format(n) for n in names])) for tp in PROMPTSRC_TEMPLATES])
        anchor = F.normalize(raw.mean(0), dim=-1)
        torch.testing.assert_close(t.text_anchor, anchor, rtol=1e-5, atol=1e-5)
        text, img = t.model.text_features(), t.model.image_features(img_in)
        img_zs = F.normalize(m.encode_image(img_in), dim=-1)
        scale = m.logit_scale.exp()
        z, z_zs = scale * img @ text.t(), scale * img_zs @ anchor.t()
        ce = -z.log_softmax(-1)[torch.arange(4), label].mean()
        l1_text = (text - anchor).abs().mean() * 25
        l1_img = (img - img_zs).abs().mean() * 10
        p_zs = z_zs.softmax(-1)
        kl = (p_zs * (p_zs.log() - z.log_softmax(-1))).sum() / z.numel()
    assert l1_text > 1e-4 and l1_img > 1e-4 and kl > 1e-6
    calls, encode = [], t.encode_text_anchor
    t.encode_text_anchor = lambda: calls.append(1) or encode()
    out = t.forward_backward(batch)
    t.forward_backward(batch)
    assert calls == []  # encoded once, above, and kept
    assert out["ce"] == pytest.approx(ce.item(), rel=1e-5)
    assert out["scl_text"] == pytest.approx(l1_text.item(), rel=1e-5)
    assert out["scl_image"] == pytest.approx(l1_img.item(), rel=1e-5)
    assert out["scl_logits"] == pytest.approx(kl.item(), rel=1e-4, abs=1e-8)
    assert out["loss"] == pytest.approx((ce + l1_text + l1_img + kl).item(), rel=1e-5)
    assert len(PROMPTSRC_TEMPLATES) == len(set(PROMPTSRC_TEMPLATES)) == 60


def test_gaussian_weights_sum_to_one_and_follow_the_gaussian():
    for n, mean, std in [(20, 15, 1), (20, 6, 10), (50, 30, 30), (5, 100, 1)]:
        w = gaussian_weights(n, mean, std)
        assert w.shape == (n,) and torch.isfinite(w).all()
        assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
        dens = [math.exp(-0.5 * ((e - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi)) for e in range(1, n + 1)]
        if sum(dens) > 0:
            torch.testing.assert_close(w, torch.tensor(dens, dtype=torch.float64) / sum(dens))
    assert int(gaussian_weights(20, 15, 1).argmax()) == 14


def test_promptsrc_aggregates_the_per_epoch_prompts(demo_root, tmp_path):
    t = build("PromptSRC", demo_root, tmp_path, "DATASET.SUBSAMPLE_CLASSES", "base",
              "TRAINER.PROMPTSRC.GPA_MEAN", 2, "TRAINER.PROMPTSRC.GPA_STD", 1, "OPTIM.LR", 0.5, epochs=3)
    pl, snaps, run_epoch = t.model.prompt_learner, [], t.run_epoch

    def recording_run_epoch():
        run_epoch()
        snaps.append({n: p.detach().clone() for n, p in pl.named_parameters()})

    t.run_epoch = recording_run_epoch
    t.train()
    w = gaussian_weights(3, 2, 1)
    assert len(snaps) == 3 and not torch.allclose(snaps[0]["ctx"], snaps[2]["ctx"])
    for n, p in pl.named_parameters():
        expected = sum(float(w[e]) * snaps[e][n] for e in range(3))
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6)
    ckpt = torch.load(tmp_path / "prompt_learner" / "model.pth.tar-3", weights_only=True)
    torch.testing.assert_close(ckpt["state_dict"]["ctx"], pl.ctx.detach())


# ---- checkpoints, base-to-new, configs, precision ----------------------------------------
@pytest.mark.parametrize("trainer", ["IVLP", "MaPLe", "PromptSRC"])
def test_checkpoint_holds_learnable_tensors_and_base_model_evaluates_on_new(demo_root, tmp_path, trainer):
    t = build(trainer, demo_root, tmp_path / "base", "DATASET.SUBSAMPLE_CLASSES", "base")
    t.train()
    ckpt = torch.load(tmp_path / "base" / "prompt_learner" / "model.pth.tar-1", weights_only=True)
    pl = t.model.prompt_learner
    learnable = [n for n, _ in pl.named_parameters()]
    gpa = [f"gpa.{n.replace('.', '_')}" for n in learnable] if trainer == "PromptSRC" else []
    assert sorted(ckpt["state_dict"]) == sorted(learnable + gpa)
    assert not any(k.startswith(("token_", "tokenized")) for k in ckpt["state_dict"])
    new = build(trainer, demo_root, tmp_path / "new", "DATASET.SUBSAMPLE_CLASSES", "new")
    assert new.classnames != t.classnames
    new.load_model(str(tmp_path / "base"), epoch=1)
    for (n, a), b in zip(pl.named_parameters(), new.model.prompt_learner.parameters()):
        torch.testing.assert_close(a, b, msg=n)
    assert 0 <= new.test() <= 100
    if trainer == "PromptSRC":
        assert new._text_anchor is None  # evaluation never encodes the 60-template anchor


PUBLISHED = {
    ("IVLP", "vit_b16_c2_ep5_batch4_2+2ctx"): (0.0035, 5, dict(N_CTX_VISION=2, N_CTX_TEXT=2, PROMPT_DEPTH_VISION=12,
                                                               PROMPT_DEPTH_TEXT=12)),
    ("IVLP", "vit_b16_c2_ep5_batch4_4ctx_language_only"): (0.0025, 5, dict(N_CTX_VISION=0, N_CTX_TEXT=4,
                                                                           PROMPT_DEPTH_VISION=0, PROMPT_DEPTH_TEXT=12)),
    ("IVLP", "vit_b16_c2_ep20_batch4_4+4ctx"): (0.0025, 20, dict(N_CTX_VISION=4, N_CTX_TEXT=4, PROMPT_DEPTH_VISION=9,
                                                                 PROMPT_DEPTH_TEXT=9)),
    ("MaPLe", "vit_b16_c2_ep5_batch4_2ctx"): (0.0035, 5, dict(N_CTX=2, PROMPT_DEPTH=9)),
    ("MaPLe", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"): (0.0026, 2, dict(N_CTX=2, PROMPT_DEPTH=3)),
    # DePT's MaPLe baseline (Koorye/DePT), beside its ExtrasLinearProbeMaPLe file
    ("MaPLe", "vit_b16_c2_ep10_batch4_2ctx"): (0.0035, 10, dict(N_CTX=2, PROMPT_DEPTH=9)),
    ("PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx"): (0.0025, 20, dict(PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9,
                                                                      GPA_MEAN=15, GPA_STD=1)),
    ("PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets"): (0.0025, 20, dict(
        PROMPT_DEPTH_VISION=3, PROMPT_DEPTH_TEXT=3, GPA_MEAN=6, GPA_STD=10)),
    ("PromptSRC", "vit_b16_c2_ep50_batch4_4+4ctx_few_shot"): (0.0025, 50, dict(
        PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9, GPA_MEAN=30, GPA_STD=30)),
}


@pytest.mark.parametrize("trainer,name", sorted(PUBLISHED))
def test_published_yaml_loads_with_its_trainer(trainer, name):
    lr, epochs, keys = PUBLISHED[(trainer, name)]
    cfg = make_cfg("--trainer", trainer, "--config-file", os.path.join(CFG[trainer], name + ".yaml"))
    node = cfg.TRAINER[{"IVLP": "IVLP", "MaPLe": "MAPLE", "PromptSRC": "PROMPTSRC"}[trainer]]
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (lr, epochs, 4)
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16" and node.PREC == "fp16" and node.CTX_INIT == "a photo of a"
    assert {k: node[k] for k in keys} == keys
    if trainer == "PromptSRC":
        assert (node.N_CTX_VISION, node.N_CTX_TEXT, node.TEXT_LOSS_WEIGHT, node.IMAGE_LOSS_WEIGHT) == (4, 4, 25, 10)
    # demo_tiny is the tests' own; compworld_bench is the bench rule's output (tests/test_bench.py)
    shipped = {f[:-5] for f in os.listdir(CFG[trainer]) if f not in ("demo_tiny.yaml", "compworld_bench.yaml")}
    assert shipped == {n for t, n in PUBLISHED if t == trainer}


def test_published_defaults():
    cfg = make_cfg().TRAINER
    assert dict(cfg.MAPLE) == dict(N_CTX=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=9)
    assert dict(cfg.IVLP) == dict(N_CTX_VISION=2, N_CTX_TEXT=2, CTX_INIT="a photo of a", PREC="fp16",
                                  PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9)
    assert dict(cfg.PROMPTSRC) == dict(N_CTX_VISION=4, N_CTX_TEXT=4, CTX_INIT="a photo of a", PREC="fp16",
                                       PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9, TEXT_LOSS_WEIGHT=25,
                                       IMAGE_LOSS_WEIGHT=10, GPA_MEAN=15, GPA_STD=1)


@pytest.mark.parametrize("prec", ["bf16", "amp"])
@pytest.mark.parametrize("trainer", ["IVLP", "MaPLe", "PromptSRC"])
def test_reduced_precision_trains_on_cpu(demo_root, tmp_path, trainer, prec):
    node = {"IVLP": "IVLP", "MaPLe": "MAPLE", "PromptSRC": "PROMPTSRC"}[trainer]
    t = build(trainer, demo_root, tmp_path, "DATASET.SUBSAMPLE_CLASSES", "base", f"TRAINER.{node}.PREC", prec)
    weight = t.model.clip.visual.conv1.weight.dtype
    assert weight == (torch.bfloat16 if prec == "bf16" else torch.float32)
    before = [p.detach().clone() for p in t.model.prompt_learner.parameters()]
    t.set_model_mode("train")
    out = t.forward_backward(fake_batch(4, 5))
    assert all(math.isfinite(v) for v in out.values())
    params = list(t.model.prompt_learner.parameters())
    assert all(p.dtype == torch.float32 for p in params)
    assert any(not torch.equal(a, b) for a, b in zip(before, params))
    t.set_model_mode("eval")
    with torch.no_grad():
        assert torch.isfinite(t.model_inference(fake_batch(2, 5)["img"]).float()).all()


def test_loss_falls_on_a_short_run(demo_root, tmp_path):
    batch = fake_batch(8, 5, seed=5)
    for trainer in ("IVLP", "MaPLe", "PromptSRC"):
        t = build(trainer, demo_root, tmp_path / trainer, "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.LR", 0.01,
                  "OPTIM.WARMUP_EPOCH", -1)
        t.set_model_mode("train")
        losses = [t.forward_backward(batch)["loss"] for _ in range(8)]
        assert losses[-1] < 0.98 * losses[0], (trainer, losses)


def test_promptsrc_resumed_run_aggregates_as_the_uninterrupted_one(demo_root, tmp_path):
    extra = ("DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.PROMPTSRC.GPA_MEAN", 2, "OPTIM.LR", 0.5)
    full = build("PromptSRC", demo_root, tmp_path / "full", *extra, epochs=3)
    full.train()
    cut = build("PromptSRC", demo_root, tmp_path / "cut", *extra, epochs=3)
    before_epoch = cut.before_epoch

    def stop_at_third():
        if cut.epoch == 2:
            raise KeyboardInterrupt
        before_epoch()

    cut.before_epoch = stop_at_third
    with pytest.raises(KeyboardInterrupt):
        cut.train()
    resumed = build("PromptSRC", demo_root, tmp_path / "cut", *extra, epochs=3)
    resumed.train()
    assert resumed.start_epoch == 2
    want, got = full.model.prompt_learner.state_dict(), resumed.model.prompt_learner.state_dict()
    for k in want:
        torch.testing.assert_close(got[k], want[k], msg=k)
