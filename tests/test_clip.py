"""The shared CLIP pieces: loader errors, EOT truncation equality, prompt builder, precision."""
import hashlib
import os

import pytest
import torch

from e2mim_engine.device import resolve_precision
from e2mim_engine.errors import ConfigError, WeightsError
from e2mim_clip import loader as clip_loader
from e2mim_clip.loader import build_random_clip, load_clip
from e2mim_clip.prompting import PromptLearner, TextEncoder, handcrafted_text_features, tokenize

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    return load_clip("random:tiny", CPU)


def test_random_clip_is_reproducible_and_frozen(tiny):
    again = load_clip("random:tiny", CPU)
    for (k, a), (_, b) in zip(tiny.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    assert not any(p.requires_grad for p in tiny.parameters())
    assert tiny.transformer.width == 128 and tiny.transformer.layers == 2


def test_eot_truncation_equals_full_length_encoder(tiny):
    texts = ["a photo of a dog.", "a photo of a very long class name with many many words.", "x"]
    full = tokenize(texts, truncate_to_eot=False)
    short = tokenize(texts)
    assert full.shape[1] == 77 and short.shape[1] == int(full.argmax(-1).max()) + 1 < 20
    with torch.no_grad():
        ref = tiny.encode_text(full)  # CLIP's own forward over all 77 positions
        enc = TextEncoder(tiny)
        got = enc(tiny.token_embedding(short), short)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_prompt_learner_truncated_equals_untruncated(tiny):
    names = ["dog", "hot_air balloon", "x"]
    torch.manual_seed(0)
    a = PromptLearner(tiny, names, n_ctx=4, truncate=True)
    torch.manual_seed(0)
    b = PromptLearner(tiny, names, n_ctx=4, truncate=False)
    enc = TextEncoder(tiny)
    with torch.no_grad():
        fa = enc(a(), a.tokenized_prompts)
        fb = enc(b(), b.tokenized_prompts)
    assert a.tokenized_prompts.shape[1] < 20 and b.tokenized_prompts.shape[1] == 77
    torch.testing.assert_close(fa, fb, rtol=1e-5, atol=1e-5)


def test_prompt_positions_and_init(tiny):
    for pos in ("end", "middle", "front"):
        pl = PromptLearner(tiny, ["dog", "traffic light"], n_ctx=4, class_token_position=pos)
        assert pl().shape == (2, pl.tokenized_prompts.shape[1], 128)
    pl = PromptLearner(tiny, ["dog"], ctx_init="a photo of a")
    assert pl.n_ctx == 4 and pl.prompt_prefix == "a photo of a"
    # with the init words as context, the prompt equals the hand-written sentence's embeddings
    tok = tokenize(["a photo of a dog."])
    with torch.no_grad():
        torch.testing.assert_close(pl(), tiny.token_embedding(tok))
    csc = PromptLearner(tiny, ["dog", "cat", "cow"], n_ctx=2, csc=True)
    assert csc.ctx.shape == (3, 2, 128)
    # class-name buffers never go into a checkpoint
    assert list(pl.state_dict()) == ["ctx"]


def test_handcrafted_ensemble_is_normalized_mean(tiny):
    one = handcrafted_text_features(tiny, ["dog", "cat"], ["a photo of a {}."])
    two = handcrafted_text_features(tiny, ["dog", "cat"], ["a photo of a {}.", "art of the {}."])
    other = handcrafted_text_features(tiny, ["dog", "cat"], ["art of the {}."])
    torch.testing.assert_close(two, torch.nn.functional.normalize(one + other, dim=-1))


def test_loader_errors(tmp_path):
    with pytest.raises(WeightsError) as e:
        load_clip("ViT-B/16", CPU, cache_dir=str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path / "ViT-B-16.pt") in msg and "never downloads" in msg and "CLIP_CACHE_DIR" in msg
    (tmp_path / "ViT-B-16.pt").write_bytes(b"truncated download")
    with pytest.raises(WeightsError, match="SHA256"):
        load_clip("ViT-B/16", CPU, cache_dir=str(tmp_path))
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="Cannot load CLIP weights from .*weights.pt"):
        load_clip(str(bad), CPU)
    with pytest.raises(WeightsError, match="neither a CLIP name"):
        load_clip("ViT-B/17", CPU)
    with pytest.raises(ConfigError, match="random:tiny"):
        load_clip("random:huge", CPU)
    with pytest.raises(ConfigError, match="empty"):
        load_clip("", CPU)
    with pytest.raises(ConfigError, match="INPUT.SIZE"):
        load_clip("random:tiny", CPU, input_size=(32, 32))


def test_loader_by_name_from_cache_and_by_path(tmp_path, monkeypatch):
    """A state-dict file found in the cache folder under the name's file, checksum verified."""
    model = build_random_clip("tiny")
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(clip_loader.clip.clip._MODELS, "Tiny-Test", f"https://example.invalid/{digest}/tiny.pt")
    monkeypatch.setattr(clip_loader.clip, "available_models", lambda: list(clip_loader.clip.clip._MODELS))
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path))
    by_name = load_clip("Tiny-Test", CPU)
    by_path = load_clip(str(path), CPU)
    for k, v in model.state_dict().items():
        assert torch.equal(by_name.state_dict()[k], v) and torch.equal(by_path.state_dict()[k], v)


def test_precisions_on_cpu(tiny):
    assert resolve_precision("fp16", CPU).name == "fp32"  # clear fallback, no crash
    with pytest.raises(ConfigError, match="fp32, fp16, amp, bf16"):
        resolve_precision("half", CPU)
    img = torch.randn(2, 3, 224, 224)
    ref = tiny.encode_image(img)
    bf = load_clip("random:tiny", CPU, dtype=torch.bfloat16)
    assert bf.visual.conv1.weight.dtype == torch.bfloat16 and bf.ln_final.weight.dtype == torch.float32
    out = bf.encode_image(img.bfloat16()).float()
    assert torch.nn.functional.cosine_similarity(out, ref).min() > 0.98
    with resolve_precision("amp", CPU).autocast():
        out = tiny.encode_image(img).float()
    assert torch.nn.functional.cosine_similarity(out, ref).min() > 0.98


def test_no_cuda_calls_in_code():
    """Device placement lives in e2mim_engine/device.py: no `.cuda(` call in any code token."""
    import io
    import tokenize as tk
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder in ("e2mim_engine", "e2mim_clip", "e2mim_tools", "trainers", "datasets"):
        for dirpath, _, files in os.walk(os.path.join(root, folder)):
            for f in files:
                if not f.endswith(".py"):
                    continue
                toks = [t for t in tk.generate_tokens(io.StringIO(open(os.path.join(dirpath, f)).read()).readline)
                        if t.type in (tk.OP, tk.NAME)]
                for a, b, c in zip(toks, toks[1:], toks[2:]):
                    assert not (a.string == "." and b.string == "cuda" and c.string == "("), f"{f}:{b.start[0]}"
