"""MMRL (trainers/mmrl.py): representation tokens against a hand-written reference laid out as the
published code lays them out (after CLS / after SOS, full 77-token text, its rebuilt mask), the
loss on small tensors by hand, the base/new inference rule, what is frozen, checkpoints (ours
and the published layout), the authors' per-dataset settings and yaml files."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, build_demo_tiny, make_cfg
from e2mim_clip.loader import CLIP_SPECS
from e2mim_clip.prompting import clip
from e2mim_engine.errors import ConfigError
from e2mim_trainers.mmrl import PUBLISHED_DATASET_SETTINGS, MMRLCLIP, RepresentationLearner, mmrl_losses

CFG_DIR = os.path.join(ROOT, "configs", "trainers", "MMRL")
CLASSES = ["red apple", "green_pear", "dog"]
TEMPLATE = "a photo of a {}."


@pytest.fixture(scope="module")
def clip4():
    """A random tiny-width CLIP with 4 layers per encoder (tokens enter at 2, replaced at 3)."""
    torch.manual_seed(0)
    return clip.model.CLIP(**dict(CLIP_SPECS["tiny"], vision_layers=4, transformer_layers=4)).eval()


def learner(model, layers=(2, 3), k=3, rep_dim=16, seed=1):
    torch.manual_seed(seed)
    return RepresentationLearner(model, CLASSES, TEMPLATE, k, rep_dim, layers)


def reference(model, pl, image):
    """The published layout, by hand: vision tokens after CLS, text tokens after SOS at CLIP's full
    77 tokens with a causal mask rebuilt for 77 + K, the feature read at EOT + K."""
    first = pl.rep_layers[0]
    k = pl.compound_rep_tokens.shape[0]
    v = model.visual
    x = v.conv1(image).flatten(2).transpose(1, 2)
    x = v.ln_pre(torch.cat([v.class_embedding.expand(len(image), 1, -1), x], 1) + v.positional_embedding)
    for i, block in enumerate(v.transformer.resblocks):
        layer = i + 1
        if layer in pl.rep_layers:
            tok = pl.compound_rep_tokens_r2vproj[pl.rep_layers.index(layer)](pl.compound_rep_tokens)
            rest = x[:, 1:] if layer == first else x[:, 1 + k:]
            x = torch.cat([x[:, :1], tok.expand(len(image), -1, -1), rest], 1)
        x = block(x.transpose(0, 1)).transpose(0, 1)
    v_cls = v.ln_post(x[:, 0]) @ v.proj
    v_rep = v.ln_post(x[:, 1:1 + k]).mean(1) @ pl.proj_rep
    ids = clip.tokenize([TEMPLATE.format(c.replace("_", " ")) for c in CLASSES])
    t = (model.token_embedding(ids) + model.positional_embedding).transpose(0, 1)
    for i, block in enumerate(model.transformer.resblocks):
        layer = i + 1
        if layer in pl.rep_layers:
            tok = pl.compound_rep_tokens_r2tproj[pl.rep_layers.index(layer)](pl.compound_rep_tokens)
            rest = t[1:] if layer == first else t[1 + k:]
            t = torch.cat([t[:1], tok.unsqueeze(1).expand(-1, len(ids), -1), rest], 0)
        if layer >= first:
            mask = torch.full((t.shape[0], t.shape[0]), float("-inf")).triu_(1)
            y = block.ln_1(t)
            t = t + block.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
            t = t + block.mlp(block.ln_2(t))
        else:
            t = block(t)
    t = model.ln_final(t.transpose(0, 1))
    t = t[torch.arange(len(ids)), ids.argmax(-1) + k] @ model.text_projection
    return [F.normalize(f, dim=-1) for f in (v_cls, v_rep, t)]


def test_features_equal_the_published_layout_by_hand(clip4):
    pl = learner(clip4)
    model = MMRLCLIP(clip4, pl)
    image = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        v, v_r = model.image_features(image)
        t = model.text_features()
        ref_v, ref_vr, ref_t = reference(clip4, pl, image)
    # ours appends the vision tokens after the patches and cuts the text at the longest EOT:
    # the same math (attention has no positions, the mask is causal), float rounding apart
    torch.testing.assert_close(v, ref_v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v_r, ref_vr, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t, ref_t, rtol=1e-5, atol=1e-5)
    # the tokens change both encoders (not a no-op): without them, plain CLIP
    with torch.no_grad():
        assert not torch.allclose(v, model.frozen_image_features(image), atol=1e-4)
        assert not torch.allclose(t, model.frozen_text_features(), atol=1e-4)


def test_layer_maps_start_as_one_draw_and_only_the_first_layer_adds_tokens(clip4):
    pl = learner(clip4, layers=(2, 4))
    for maps in (pl.compound_rep_tokens_r2vproj, pl.compound_rep_tokens_r2tproj):
        assert len(maps) == 2
        torch.testing.assert_close(maps[0].weight, maps[1].weight)
        assert maps[0].weight.data_ptr() != maps[1].weight.data_ptr()  # copies, trained apart
    _, deep = pl.vision_prompts()
    assert len(deep) == 3
    assert deep[0] is not None and deep[1] is None and deep[2] is not None  # layers 2 and 4 of 4


def test_loss_by_hand_on_small_tensors():
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v_zs = F.normalize(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), dim=-1)
    t = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    t_zs = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
    label = torch.tensor([0, 1])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    logits_rep = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    out = mmrl_losses(logits, logits_rep, label, v, v_zs, t, t_zs, alpha=0.7, reg_weight=2.0)
    ce = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    ce_rep = (math.log(2) + math.log(1 + math.exp(1))) / 2
    reg_image = 1 - (math.sqrt(0.5) + 1.0) / 2
    reg_text = 1 - (0.0 + 1.0) / 2
    assert out["ce"].item() == pytest.approx(ce, abs=1e-6)
    assert out["ce_rep"].item() == pytest.approx(ce_rep, abs=1e-6)
    assert out["reg_image"].item() == pytest.approx(reg_image, abs=1e-6)
    assert out["reg_text"].item() == pytest.approx(reg_text, abs=1e-6)
    assert out["loss"].item() == pytest.approx(0.7 * ce + 0.3 * ce_rep + 2.0 * (reg_image + reg_text), abs=1e-6)


def build(root, out, *extra, epochs=1):
    return build_demo_tiny("MMRL", root, out, *extra, epochs=epochs)


def test_only_the_representation_learner_learns_and_clip_stays_frozen(demo_root, tmp_path):
    tr = build(demo_root, tmp_path / "r")
    trainable = {n for n, p in tr.model.named_parameters() if p.requires_grad}
    assert trainable == {f"prompt_learner.{n}" for n in (
        "proj_rep", "compound_rep_tokens", "compound_rep_tokens_r2vproj.0.weight",
        "compound_rep_tokens_r2vproj.0.bias", "compound_rep_tokens_r2tproj.0.weight",
        "compound_rep_tokens_r2tproj.0.bias")}
    frozen = {k: v.clone() for k, v in tr.model.clip.state_dict().items()}
    learned = {k: v.clone() for k, v in tr.model.prompt_learner.state_dict().items()}
    out = tr.train_step(next(iter(tr.train_loader_x)))
    assert set(out) >= {"loss", "ce", "ce_rep", "reg_image", "reg_text", "acc"}
    assert all(torch.equal(v, tr.model.clip.state_dict()[k]) for k, v in frozen.items())
    assert all(not torch.equal(v, tr.model.prompt_learner.state_dict()[k]) for k, v in learned.items())


def test_inference_rule_base_fused_new_class_token_and_checkpoint_round_trip(demo_root, tmp_path):
    tr = build(demo_root, tmp_path / "base", "DATASET.SUBSAMPLE_CLASSES", "base")
    tr.train()
    assert tr.uses_fusion()  # the run evaluates the classes it trained on
    image = next(iter(tr.test_loader))["img"][:3]
    m = tr.model
    with torch.no_grad():
        v, v_r = m.image_features(image)
        t = m.text_features()
        fused = 0.7 * 100 * v @ t.t() + 0.3 * 100 * v_r @ t.t()
    torch.testing.assert_close(tr.eval_step(image), fused, rtol=1e-5, atol=1e-4)
    ckpt = torch.load(tmp_path / "base" / "prompt_learner" / "model.pth.tar-1", weights_only=False)
    assert not any(k.startswith(("visual", "transformer", "token_embedding")) for k in ckpt["state_dict"])

    new = build(demo_root, tmp_path / "new", "DATASET.SUBSAMPLE_CLASSES", "new")
    new.load_model(str(tmp_path / "base"), epoch=1)
    for k, v in tr.model.prompt_learner.state_dict().items():
        torch.testing.assert_close(new.model.prompt_learner.state_dict()[k], v)
    assert not new.uses_fusion()  # other classes: the class token alone
    with torch.no_grad():
        v, _ = new.model.image_features(image)
        expected = 100 * v @ new.model.text_features().t()
    torch.testing.assert_close(new.eval_step(image), expected, rtol=1e-5, atol=1e-4)
    assert new.result_metadata()["inference"] == "class_token"
    forced = build(demo_root, tmp_path / "forced", "DATASET.SUBSAMPLE_CLASSES", "new", "TRAINER.MMRL.INFERENCE",
                   "fusion")
    assert forced.uses_fusion()

    # a file of the published code: the whole model under its names, no identity or class list
    state = {"representation_learner." + k: v for k, v in tr.model.prompt_learner.state_dict().items()
             if k != "proj_rep"}
    state["image_encoder.proj_rep"] = tr.model.prompt_learner.proj_rep.detach().clone()
    state["image_encoder.conv1.weight"] = torch.zeros(1)          # frozen CLIP weights: not ours
    state["prompt_embeddings"] = torch.zeros(1)
    os.makedirs(tmp_path / "pub" / "MultiModalRepresentationLearner")
    torch.save({"state_dict": state, "epoch": 1},
               tmp_path / "pub" / "MultiModalRepresentationLearner" / "model.pth.tar-1")
    pub = build(demo_root, tmp_path / "pub_new", "DATASET.SUBSAMPLE_CLASSES", "new")
    pub.load_model(str(tmp_path / "pub"), epoch=1)
    torch.testing.assert_close(pub.model.prompt_learner.proj_rep, tr.model.prompt_learner.proj_rep)
    assert not pub.uses_fusion()  # unknown training classes: SUBSAMPLE_CLASSES new decides


def test_authors_per_dataset_settings_apply_between_yaml_and_command_line():
    eurosat = os.path.join(ROOT, "configs", "datasets", "eurosat.yaml")
    args = ("--trainer", "MMRL", "--dataset-config-file", eurosat, "--config-file")
    cfg = make_cfg(*args, os.path.join(CFG_DIR, "vit_b16.yaml"))
    assert (cfg.TRAINER.MMRL.REP_DIM, cfg.TRAINER.MMRL.REG_WEIGHT) == (2048, 0.01)
    cfg = make_cfg(*args, os.path.join(CFG_DIR, "vit_b16.yaml"), "TRAINER.MMRL.REG_WEIGHT", "3.0")
    assert (cfg.TRAINER.MMRL.REP_DIM, cfg.TRAINER.MMRL.REG_WEIGHT) == (2048, 3.0)
    cfg = make_cfg(*args, os.path.join(CFG_DIR, "vit_b16_cross_datasets.yaml"))
    assert (cfg.TRAINER.MMRL.REP_DIM, cfg.TRAINER.MMRL.REG_WEIGHT) == (512, 0.2)
    cfg = make_cfg(*args, os.path.join(CFG_DIR, "vit_b16.yaml"), "TRAINER.MMRL.DATASET_SETTINGS", "False")
    assert (cfg.TRAINER.MMRL.REP_DIM, cfg.TRAINER.MMRL.REG_WEIGHT) == (512, 1.0)
    assert len(PUBLISHED_DATASET_SETTINGS) == 11


def _mmrl(ep, batch, reg, warmup=1):
    return {"OPTIM.NAME": "adamw", "OPTIM.LR": 0.001, "OPTIM.MAX_EPOCH": ep, "OPTIM.WARMUP_EPOCH": warmup,
            "OPTIM.LR_SCHEDULER": "cosine", "DATALOADER.TRAIN_X.BATCH_SIZE": batch, "INPUT.RRCROP_SCALE": (0.5, 1),
            "MODEL.BACKBONE.NAME": "ViT-B/16", "ALPHA": 0.7, "REG_WEIGHT": reg, "N_REP_TOKENS": 5,
            "REP_LAYERS": [6, 7, 8, 9, 10, 11, 12], "PREC": "amp", "REP_DIM": 512}


PUBLISHED = {"vit_b16": _mmrl(10, 4, 1.0), "vit_b16_imagenet": _mmrl(5, 32, 1.0),
             "vit_b16_few_shot": _mmrl(50, 32, 0.5), "vit_b16_cross_datasets": _mmrl(1, 32, 0.2, warmup=0)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_yaml_values(name):
    cfg = make_cfg("--trainer", "MMRL", "--config-file", os.path.join(CFG_DIR, f"{name}.yaml"))
    for key, want in PUBLISHED[name].items():
        node = cfg if "." in key else cfg.TRAINER.MMRL
        for part in key.split("."):
            node = node[part]
        assert (list(node) if isinstance(want, list) else node) == want, key


@pytest.mark.parametrize("layers,match", [("[1, 2]", "layer numbers >= 2"), ("[2, 2]", "increasing"),
                                          ("[3, 2]", "increasing"), ("[]", "non-empty")])
def test_bad_rep_layers_are_config_errors(demo_root, tmp_path, layers, match):
    with pytest.raises(ConfigError, match=match):
        build(demo_root, tmp_path / "x", "TRAINER.MMRL.REP_LAYERS", layers)


@pytest.mark.parametrize("layers,used", [("[2, 9]", [2]), ("[6, 7, 8, 9, 10, 11, 12]", [2])])
def test_layers_beyond_the_backbone_are_dropped_so_published_files_run_on_tiny(demo_root, tmp_path, layers, used):
    tr = build(demo_root, tmp_path / "x", "TRAINER.MMRL.REP_LAYERS", layers)
    assert tr.model.prompt_learner.rep_layers == used
    assert len(tr.model.prompt_learner.compound_rep_tokens_r2vproj) == len(used)
    assert tr.result_metadata()["rep_layers"] == used
