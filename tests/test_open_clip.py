"""open_clip backbones (``open_clip:MODEL:WEIGHTS``): the loader's names and offline errors,
identity with the clip package on the same OpenAI-architecture weights (features, CoOp and
E2MIM losses), what the shared encoders read from SigLIP- and EVA-shaped models (tokenizer
without a start token, full attention, last-position pooling, attention-pool heads, rotary
embeddings, towers of different widths), every method end to end on each family, fused
blocks, precision, and the feature cache's key. Tiny models from tests/open_clip_fixtures.py;
nothing is downloaded."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

import open_clip_fixtures as ocf
from conftest import DEMO_CFG, ROOT, make_cfg
from e2mim_clip import loader as L
from e2mim_clip.deep_prompts import DeepPromptCLIP, DeepTextEncoder, DeepVisionEncoder, IVLPPromptLearner
from e2mim_clip.prompting import (PromptLearner, TextEncoder, encode_images, handcrafted_text_features, tokenize)
from e2mim_clip.towers import towers
from e2mim_engine.errors import ConfigError, DataError, WeightsError
from e2mim_engine.seeding import set_random_seed
from e2mim_engine.trainer import build_trainer

CPU = torch.device("cpu")
FAMILIES = ("e2mim-tiny-openai", "e2mim-tiny-siglip", "e2mim-tiny-eva")
METHODS = ("ZeroshotCLIP", "CoOp", "CoCoOp", "KgCoOp", "ProGrad", "E2MIM", "IVLP", "MaPLe", "PromptSRC")


@pytest.fixture(scope="module", autouse=True)
def tiny_configs(tmp_path_factory):
    return ocf.register(str(tmp_path_factory.mktemp("open_clip_configs")))


def oc(name):
    return L.load_clip(f"open_clip:{name}:random", CPU)


def images(name, n=2, seed=0):
    s = ocf.SIZES[name]
    return torch.randn(n, 3, s, s, generator=torch.Generator().manual_seed(seed))


# ---- names and offline errors ---------------------------------------------------------

def test_backbone_names_parse():
    assert L.parse_open_clip("open_clip:ViT-B-16:openai") == ("ViT-B-16", "openai")
    assert L.parse_open_clip("open_clip:ViT-L-14:/w/x.safetensors") == ("ViT-L-14", "/w/x.safetensors")
    assert L.parse_open_clip("open_clip:hf-hub:timm/ViT-B-16-SigLIP") == ("hf-hub:timm/ViT-B-16-SigLIP", "hub")
    with pytest.raises(ConfigError, match="open_clip:MODEL:WEIGHTS"):
        L.parse_open_clip("open_clip:ViT-B-16")


def test_offline_errors_say_which_file_goes_where(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "clip"))
    with pytest.raises(ConfigError, match="Unknown open_clip model 'ViT-Q-99'"):
        L.load_clip("open_clip:ViT-Q-99:openai", CPU)
    with pytest.raises(ConfigError, match="laion2b_s34b_b88k"):  # the model's tags are listed
        L.load_clip("open_clip:ViT-B-16:no_such_tag", CPU)
    with pytest.raises(WeightsError) as e:
        L.load_clip("open_clip:ViT-B-16:laion2b_s34b_b88k", CPU)
    msg = str(e.value)
    assert "never downloads" in msg and "laion/CLIP-ViT-B-16-laion2B-s34B-b88K" in msg and str(tmp_path / "hf") in msg
    with pytest.raises(WeightsError) as e:
        L.load_clip("open_clip:ViT-B-16:openai", CPU)
    assert str(tmp_path / "clip") in str(e.value) and "openaipublic" in str(e.value)
    # SigLIP's real tokenizer is a Hugging Face one: not cached here, a paragraph says where it goes
    with pytest.raises(WeightsError) as e:
        L.open_clip_tokenizer("ViT-B-16-SigLIP", L.open_clip_config("ViT-B-16-SigLIP")["text_cfg"])
    assert "timm/ViT-B-16-SigLIP" in str(e.value) and "models--timm--ViT-B-16-SigLIP" in str(e.value)
    with pytest.raises(WeightsError, match="not in the local Hugging Face cache"):
        L.load_clip("open_clip:hf-hub:org/model", CPU)


def test_weights_from_a_local_file_with_checksum(tmp_path):
    model = oc("e2mim-tiny-eva")
    path = str(tmp_path / "eva.pt")
    torch.save(model.state_dict(), path)
    again = L.load_clip(f"open_clip:e2mim-tiny-eva:{path}", CPU)
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    assert L.backbone_checksum(f"open_clip:e2mim-tiny-eva:{path}") == L._sha256(path)
    assert L.backbone_checksum("open_clip:e2mim-tiny-eva:random") is None
    torch.save({"visual.nothing": torch.zeros(1)}, str(tmp_path / "bad.pt"))
    with pytest.raises(WeightsError, match="Cannot load .*bad.pt into open_clip e2mim-tiny-eva"):
        L.load_clip(f"open_clip:e2mim-tiny-eva:{tmp_path / 'bad.pt'}", CPU)
    with pytest.raises(ConfigError, match=r"INPUT.SIZE \(224, 224\) .* 64"):
        L.load_clip("open_clip:e2mim-tiny-eva:random", CPU, input_size=(224, 224))


# ---- identity with the clip package -----------------------------------------------------

@pytest.fixture(scope="module")
def b16_file(tmp_path_factory):
    """OpenAI ViT-B/16-shaped random weights (2 layers per tower), saved as a plain state dict."""
    from e2mim_clip.loader import clip_model_lib
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = clip_model_lib.CLIP(**ocf.B16_2L).float()
    path = str(tmp_path_factory.mktemp("b16") / "vit_b16_2l.pt")
    torch.save(model.state_dict(), path)
    return path


def test_same_weights_same_features_through_clip_and_open_clip(b16_file):
    a = L.load_clip(b16_file, CPU)
    b = L.load_clip(f"open_clip:e2mim-b16-2l-quickgelu:{b16_file}", CPU)
    assert towers(a).family == "clip" and towers(b).family == "open_clip"
    x = images("e2mim-b16-2l-quickgelu", 2)
    fa, fb = encode_images(a, x), encode_images(b, x)
    torch.testing.assert_close(fa, fb, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # and the models' own forwards agree
        torch.testing.assert_close(a.encode_image(x), b.encode_image(x), rtol=1e-4, atol=1e-4)
    names, templates = ["dog", "hot_air balloon", "red apple"], ["a photo of a {}.", "itap of a {}."]
    texts = [t.format(n) for n in names for t in templates]
    assert torch.equal(tokenize(texts, model=a), tokenize(texts, model=b))
    ta = handcrafted_text_features(a, names, templates)
    tb = handcrafted_text_features(b, names, templates)
    torch.testing.assert_close(ta, tb, rtol=1e-5, atol=1e-5)
    print(f"identity: image features max |diff| {float((fa - fb).abs().max()):.2e}, "
          f"text features {float((ta - tb).abs().max()):.2e}")


def test_same_weights_same_deep_prompt_features_through_clip_and_open_clip(tmp_path):
    """IVLP/MaPLe/PromptSRC's encoders on the same weights and the same prompts: CLIP's
    sequence-first blocks and open_clip's batch-first ones give the same features."""
    path = str(tmp_path / "tiny.pt")
    torch.save(L.build_random_clip("tiny").state_dict(), path)
    a = L.load_clip(path, CPU)
    b = L.load_clip(f"open_clip:e2mim-tiny-openai:{path}", CPU)
    torch.manual_seed(0)
    pa = IVLPPromptLearner(a, ["dog", "red apple"], 2, "a photo of a", 2, 2, 2)
    pb = IVLPPromptLearner(b, ["dog", "red apple"], 2, "a photo of a", 2, 2, 2)
    pb.load_state_dict(pa.state_dict())
    x = images("e2mim-tiny-openai")
    with torch.no_grad():
        ma, mb = DeepPromptCLIP(a, pa), DeepPromptCLIP(b, pb)
        torch.testing.assert_close(ma.text_features(), mb.text_features(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ma.image_features(x), mb.image_features(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ma(x), mb(x), rtol=1e-4, atol=1e-4)


def build(trainer, backbone, size, root, out, *extra, shots=1, epochs=1):
    cfg = make_cfg("--root", root, "--seed", 1, "--trainer", trainer, "--dataset-config-file", DEMO_CFG,
                   "--config-file", os.path.join(ROOT, "configs", "trainers", trainer, "demo_tiny.yaml"),
                   "--backbone", backbone, "--output-dir", str(out), "DATASET.NUM_SHOTS", shots,
                   "OPTIM.MAX_EPOCH", epochs, "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "DATALOADER.NUM_WORKERS", 0,
                   "DATASET.SUBSAMPLE_CLASSES", "base", "INPUT.SIZE", f"({size}, {size})", "VERBOSE", False, *extra)
    set_random_seed(1)
    return build_trainer(cfg)


def batches(trainer, n):
    trainer.set_model_mode("train")
    trainer.before_epoch()
    it = iter(trainer.train_loader_x)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("method,extra", [("CoOp", ("TRAINER.COOP.N_CTX", 4)),
                                          ("E2MIM", ("TRAINER.E2MIM.MI_HIDDEN", 32))])
def test_same_weights_same_losses_through_clip_and_open_clip(demo_root, tmp_path, b16_file, method, extra):
    """Per-batch losses over several steps (the prompts learn between them) are equal."""
    ta = build(method, b16_file, 224, demo_root, tmp_path / "clip", *extra, shots=4)
    tb = build(method, f"open_clip:e2mim-b16-2l-quickgelu:{b16_file}", 224, demo_root, tmp_path / "oc", *extra,
               shots=4)
    # the same learnable start (loading a file through clip draws from the global generator:
    # clip.build_model initialises a model before the weights are copied in)
    for name, module in ta._models.items():
        tb._models[name].load_state_dict(module.state_dict())
    steps = batches(ta, 3)
    tb.set_model_mode("train")
    tb.before_epoch()
    la = [ta.forward_backward(b) for b in steps]
    lb = [tb.forward_backward(b) for b in steps]
    for step, (a, b) in enumerate(zip(la, lb)):
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (step, k)
    assert la[0]["loss"] != la[-1]["loss"]  # the prompts did change between the steps
    print(f"identity {method}: losses clip {[round(x['loss'], 6) for x in la]} "
          f"open_clip {[round(x['loss'], 6) for x in lb]}")


# ---- what the encoders read from each family ---------------------------------------------

@pytest.mark.parametrize("name", FAMILIES + ("e2mim-tiny-laion",))
def test_encoders_without_prompts_equal_the_models_own_forward(name):
    model = oc(name)
    t = towers(model)
    texts = ["a photo of a dog.", "x", "a photo of a hot air balloon."]
    with torch.no_grad():
        ref_t = model.encode_text(t.tokenizer(texts))
        tok = tokenize(texts, model=model)
        emb = t.token_embedding(tok)
        torch.testing.assert_close(TextEncoder(model)(emb, tok), ref_t, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(DeepTextEncoder(model)(emb, tok), ref_t, rtol=1e-5, atol=1e-5)
        x = images(name)
        ref_v = F.normalize(model.encode_image(x), dim=-1)
        torch.testing.assert_close(encode_images(model, x), ref_v, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(F.normalize(DeepVisionEncoder(model)(x), dim=-1), ref_v, rtol=1e-5, atol=1e-5)


def test_siglip_text_side_no_start_token_full_attention_last_position():
    model = oc("e2mim-tiny-siglip")
    t = towers(model)
    assert (t.tokenizer.n_prefix, t.causal, t.pool, t.truncates, t.context_length) == (0, False, "last", False, 64)
    tok = tokenize(["a dog.", "x"], model=model)
    assert tok.shape == (2, 64)  # non-causal: no EOT cut, every position reaches the feature
    pl = PromptLearner(model, ["red apple", "dog"], n_ctx=4)
    assert pl.token_prefix.shape[1] == 0 and pl().shape == (2, 64, 32)
    # context vectors sit at positions 0..3 (no start token): changing them changes the feature
    enc = TextEncoder(model)
    with torch.no_grad():
        before = enc(pl(), pl.tokenized_prompts)
        pl.ctx.add_(1.0)
        assert not torch.allclose(enc(pl(), pl.tokenized_prompts), before)
    with pytest.raises(DataError, match="text context of 64 tokens"):
        tokenize(["y" * 70], model=model)


def test_eva_text_side_is_causal_and_truncated():
    model = oc("e2mim-tiny-eva")
    t = towers(model)
    assert (t.tokenizer.n_prefix, t.causal, t.pool, t.truncates) == (1, True, "argmax", True)
    full = tokenize(["a photo of a dog."], truncate_to_eot=False, model=model)
    short = tokenize(["a photo of a dog."], model=model)
    assert full.shape[1] == 77 and short.shape[1] == 8
    with torch.no_grad():
        torch.testing.assert_close(TextEncoder(model)(t.token_embedding(short), short), model.encode_text(full),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,head", [("e2mim-tiny-siglip", "attn_pool"), ("e2mim-tiny-eva", "norm")])
def test_vision_prompts_never_reach_the_pooling_head(name, head):
    """An attention-pool head (SigLIP's MAP) or the final norm and class-token pool of EVA read
    the same token positions with prompts as without: the prompts change the feature only
    through the blocks."""
    model = oc(name)
    seen = []
    hook = getattr(model.visual.trunk, head).register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    pl = IVLPPromptLearner(model, ["dog", "cat"], 2, "", 2, 3, 3)
    enc = DeepVisionEncoder(model)
    with torch.no_grad():
        plain = enc(images(name))
        ctx, deep = pl.vision_prompts()
        prompted = enc(images(name), ctx, deep)
    hook.remove()
    assert len(seen) == 2 and seen[0] == seen[1], seen  # [N, tokens, D]: no prompt positions
    assert not torch.allclose(plain, prompted)
    # the output width is the model's embedding size, not the trunk's or the text tower's
    assert prompted.shape == (2, towers(model).embed_dim)


def test_resnet_is_a_config_error_listing_what_works():
    from e2mim_clip.deep_prompts import check_vit
    model = oc("e2mim-tiny-rn")
    with pytest.raises(ConfigError, match="ViT image encoder.*open_clip:ViT-.*EVA02.*shallow methods"):
        check_vit(model)


def test_fused_blocks_apply_to_open_clip_blocks():
    from e2mim_clip import fused
    for name in ("e2mim-tiny-openai", "e2mim-tiny-laion", "e2mim-tiny-siglip"):
        model = oc(name)
        assert TextEncoder(model)._fused, name
        assert fused.supports_fused_visual(model.visual) == (name != "e2mim-tiny-siglip")


def test_deep_prompt_gradients_reach_prompts_only_on_timm_towers():
    for name in ("e2mim-tiny-siglip", "e2mim-tiny-eva"):
        model = oc(name)
        pl = IVLPPromptLearner(model, ["dog", "cat"], 2, "a photo of a", 2, 2, 2)
        m = DeepPromptCLIP(model, pl)
        loss = m(images(name)).logsumexp(-1).mean()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pl.parameters()), name
        assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("prec", ["bf16"])
@pytest.mark.parametrize("name", ["e2mim-tiny-openai", "e2mim-tiny-eva"])
def test_low_precision_layout(name, prec):
    from open_clip.transformer import LayerNormFp32
    model = L.load_clip(f"open_clip:{name}:random", CPU, torch.bfloat16)
    lns = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    native = [m for m in lns if type(m).__module__.startswith("open_clip")]
    assert native and all(type(m) is LayerNormFp32 and m.weight.dtype == torch.float32 for m in native)
    if name == "e2mim-tiny-eva":  # timm towers wholly in the precision's dtype, as open_clip's fp16 does
        assert all(p.dtype == torch.bfloat16 for p in model.visual.trunk.parameters())
    ref = L.load_clip(f"open_clip:{name}:random", CPU)
    x = images(name)
    torch.testing.assert_close(encode_images(model, x), encode_images(ref, x), rtol=0.05, atol=0.05)


# ---- every method end to end ---------------------------------------------------------------

EXTRA = {"CoOp": ("TRAINER.COOP.N_CTX", 4), "E2MIM": ("TRAINER.E2MIM.MI_HIDDEN", 32)}


NEWER = ("TCP", "MMRL", "CoPrompt", "ExtrasLinearProbeCoOp", "ExtrasLinearProbeMaPLe")


@pytest.mark.parametrize("family", ["e2mim-tiny-laion", "e2mim-tiny-siglip", "e2mim-tiny-eva"])
@pytest.mark.parametrize("method", METHODS + NEWER)
def test_every_method_trains_and_evaluates(demo_root, tmp_path, method, family):
    if method == "MMRL" and family != "e2mim-tiny-laion":   # its tokens need a CLIP-style ViT (SigLIP, EVA: timm)
        with pytest.raises(ConfigError, match="representation tokens.*timm trunk"):
            build(method, f"open_clip:{family}:random", ocf.SIZES[family], demo_root, tmp_path).train()
        return
    trainer = build(method, f"open_clip:{family}:random", ocf.SIZES[family], demo_root, tmp_path,
                    *EXTRA.get(method, ()))
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if v.requires_grad} \
        if hasattr(trainer, "model") and hasattr(trainer.model, "named_parameters") else {}
    trainer.train()
    with open(tmp_path / "results.json") as f:
        res = json.load(f)
    assert 0.0 <= res["accuracy"] <= 100.0 and res["backbone"] == f"open_clip:{family}:random"
    if method == "CoOp":  # the feature caches key on the open_clip model, its weights and versions
        ident = trainer.frozen_feature_identity()
        assert (ident["open_clip_model"], ident["open_clip_weights"]) == (family, "random")
        assert ident["open_clip_version"] and ident["timm_version"]
    if method != "ZeroshotCLIP":
        after = dict(trainer.model.named_parameters())
        assert before and any(not torch.equal(before[k], after[k]) for k in before), "nothing learned"


@pytest.mark.parametrize("method", ["CoOp", "E2MIM"])
def test_shallow_methods_on_a_resnet_image_tower(demo_root, tmp_path, method):
    trainer = build(method, "open_clip:e2mim-tiny-rn:random", ocf.SIZES["e2mim-tiny-rn"], demo_root, tmp_path,
                    *EXTRA.get(method, ()))
    trainer.train()
    with open(tmp_path / "results.json") as f:
        assert 0.0 <= json.load(f)["accuracy"] <= 100.0


def test_input_size_and_pixel_statistics_come_from_the_model(demo_root, tmp_path):
    """A published-style yaml (224 pixels, CLIP's mean/std) on a model built for 64 pixels."""
    cfg = make_cfg("--root", demo_root, "--trainer", "CoOp", "--dataset-config-file", DEMO_CFG,
                   "--config-file", os.path.join(ROOT, "configs", "trainers", "CoOp", "demo_tiny.yaml"),
                   "--backbone", "open_clip:e2mim-tiny-eva:random", "--output-dir", str(tmp_path),
                   "DATASET.NUM_SHOTS", 1, "DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.COOP.N_CTX", 4)
    assert tuple(cfg.INPUT.SIZE) == (224, 224)
    set_random_seed(1)
    trainer = build_trainer(cfg)
    assert tuple(trainer.cfg.INPUT.SIZE) == (64, 64) and trainer.cfg.INPUT.PIXEL_MEAN == cfg.INPUT.PIXEL_MEAN
    assert next(iter(trainer.test_loader))["img"].shape[-2:] == (64, 64)
    # SigLIP's tags carry their own statistics (0.5)
    pre = L.open_clip_preprocessing("open_clip:ViT-B-16-SigLIP-256:webli")
    assert pre == {"SIZE": (256, 256), "PIXEL_MEAN": [0.5] * 3, "PIXEL_STD": [0.5] * 3}
    assert L.open_clip_preprocessing("ViT-B/16") == {}
