"""The fused encoders (e2mim_clip.fused) against CLIP's own modules: same features, same
gradients, same state dict; the stock path where the fused one does not apply; and the
text-encoder checkpoint switch (same loss and gradients, far less kept for backward)."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from e2mim_clip import fused
from e2mim_clip.loader import build_random_clip, cast_clip
from e2mim_clip.prompting import PromptLearner, TextEncoder, encode_images

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from clip import model as clip_model_lib


@pytest.fixture(scope="module")
def tiny():
    return build_random_clip("tiny")


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def _stock_text(model, prompts, tokens):
    """CLIP's encode_text on embeddings: its modules, sequence-first, full ln_final."""
    x = prompts + model.positional_embedding[:prompts.shape[1]]
    x = model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = model.ln_final(x)
    return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ model.text_projection


def _close(a, b, rel=1e-5):
    return float((a.float() - b.float()).abs().max()) <= rel * float(b.float().abs().max())


@pytest.mark.parametrize("patches", fused.PATCH_MODES)
def test_fused_vit_equals_clip_encode_image(tiny, images, patches):
    with torch.no_grad():
        ref = tiny.encode_image(images)
        out = fused.vit_forward(tiny.visual, images, patches)
    assert out.shape == ref.shape and _close(out, ref)


def test_encode_images_is_the_fused_path_and_its_output_joins_autograd(tiny, images):
    assert fused.supports_fused_visual(tiny.visual)
    with torch.no_grad():
        ref = F.normalize(tiny.encode_image(images), dim=-1)
    feats = encode_images(tiny, images)
    assert _close(feats, ref) and not feats.is_inference()
    txt = torch.randn(4, feats.shape[1], requires_grad=True)
    (feats @ txt.t()).sum().backward()  # an inference tensor here would raise
    assert torch.allclose(txt.grad, feats.sum(0).expand(4, -1))


def test_state_dict_untouched(tiny, images):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    encode_images(tiny, images)
    enc = TextEncoder(tiny)
    pl = PromptLearner(tiny, ["a", "b"], n_ctx=2)
    enc(pl(), pl.tokenized_prompts)
    after = tiny.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)


def test_fused_vit_in_bf16_and_under_autocast(tiny, images):
    """bf16 weights (as PREC bf16 stores them) and fp32 weights under CPU autocast (PREC amp):
    the fused path stays within bf16 rounding of CLIP's own forward in the same precision."""
    bf = cast_clip(build_random_clip("tiny"), torch.bfloat16)
    with torch.no_grad():
        ref_bf, out_bf = bf.encode_image(images.bfloat16()), fused.vit_forward(bf.visual, images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref_amp, out_amp = tiny.encode_image(images), fused.vit_forward(tiny.visual, images)
    assert out_bf.dtype == ref_bf.dtype == torch.bfloat16
    for out, ref in ((out_bf, ref_bf), (out_amp, ref_amp)):
        assert F.cosine_similarity(out.float(), ref.float(), dim=-1).min() > 0.999


def test_resnet_keeps_the_stock_path():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rn = clip_model_lib.CLIP(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=16,
                                 vision_patch_size=None, context_length=77, vocab_size=49408,
                                 transformer_width=32, transformer_heads=2, transformer_layers=1).eval()
    assert not fused.supports_fused_visual(rn.visual)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = F.normalize(rn.encode_image(x), dim=-1)
    assert torch.equal(encode_images(rn, x), ref)


def _grads(enc, pl, model=None):
    pl.ctx.grad = None
    prompts = pl()
    out = _stock_text(model, prompts, pl.tokenized_prompts) if model is not None else enc(prompts, pl.tokenized_prompts)
    loss = (F.normalize(out, dim=-1) * torch.linspace(-1, 1, out.shape[1])).sum()
    loss.backward()
    return out.detach(), loss.detach(), pl.ctx.grad.clone()


@pytest.mark.parametrize("csc", [False, True])
def test_fused_text_encoder_output_and_gradients_equal_stock(tiny, csc):
    pl = PromptLearner(tiny, ["cat", "small dog", "airliner"], n_ctx=4, csc=csc)
    enc = TextEncoder(tiny)
    assert enc._fused and enc._attention == "causal"
    out_ref, loss_ref, g_ref = _grads(None, pl, tiny)
    out, loss, g = _grads(enc, pl)
    assert _close(out, out_ref) and _close(loss, loss_ref) and _close(g, g_ref, 1e-4)


def test_unknown_blocks_fall_back_to_clip_modules(tiny):
    class Wrapped(clip_model_lib.ResidualAttentionBlock):
        pass

    model = build_random_clip("tiny")
    b = model.transformer.resblocks[0]
    w = Wrapped(b.attn.embed_dim, b.attn.num_heads, b.attn_mask)
    w.load_state_dict(b.state_dict())
    model.transformer.resblocks[0] = w
    enc = TextEncoder(model)
    assert not enc._fused
    pl = PromptLearner(model, ["cat", "dog"], n_ctx=2)
    out_ref, _, g_ref = _grads(None, pl, model)
    out, _, g = _grads(enc, pl)
    assert _close(out, out_ref) and _close(g, g_ref, 1e-4)


def _saved_bytes(fn):
    """Bytes autograd keeps for backward while ``fn`` runs (what checkpointing removes)."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total[0]


@pytest.mark.parametrize("fused_blocks", [True, False])
def test_checkpoint_same_loss_and_gradients_less_memory(tiny, fused_blocks):
    pl = PromptLearner(tiny, [f"class {i}" for i in range(20)], n_ctx=8)
    plain, ckpt = TextEncoder(tiny), TextEncoder(tiny)
    ckpt.checkpoint = True
    if not fused_blocks:
        plain._fused = ckpt._fused = False  # the stock-module path checkpoints too
    results = {}
    for name, enc in (("plain", plain), ("ckpt", ckpt)):
        (out, loss, g), saved = _saved_bytes(lambda: _grads(enc, pl))
        results[name] = (out, loss, g, saved)
    (o1, l1, g1, s1), (o2, l2, g2, s2) = results["plain"], results["ckpt"]
    assert torch.allclose(o1, o2, atol=1e-6) and torch.allclose(l1, l2, atol=1e-6)
    assert torch.allclose(g1, g2, rtol=1e-5, atol=1e-7)
    # plain keeps every block's activations (~20 tensors of the sequence per block); with
    # checkpointing a block keeps only its input: several times less for 2 blocks already
    assert s2 * 3 < s1, (s1, s2)
