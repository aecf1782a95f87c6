"""Tiny open_clip models of each family, built offline for tests.

``register(folder)`` writes open_clip model configs into ``folder`` and registers them with
open_clip (``add_model_config``), so ``open_clip:<name>:random`` builds them through the
product's loader:

* e2mim-tiny-openai: OpenAI's layout (open_clip's own ViT and text tower, QuickGELU), the
  shape of ``random:tiny``; e2mim-tiny-laion the same with exact GELU (LAION's, DataComp's);
* e2mim-b16-2l-quickgelu: OpenAI's ViT-B/16 widths with 2 layers per tower (``B16_2L``);
* e2mim-tiny-siglip: SigLIP's layout: timm ViT with an attention-pool (MAP) head, a
  non-causal text tower pooled at the last position with a biased projection, context 64,
  and a Hugging Face tokenizer without a start token (a small word-piece one saved in
  ``folder``, standing in for SigLIP's sentencepiece model, which would need a download);
* e2mim-tiny-eva: EVA-CLIP's layout: a timm EVA-02 trunk (rotary position embedding,
  SwiGLU) at 64 pixels and 3 layers, its width (64) different from the text tower's (32).
"""
import json
import os
import string

CONTEXT_SIGLIP = 64


def _word_piece_tokenizer(folder):
    """A Hugging Face tokenizer (tokenizer.json + config) in SigLIP's layout: no start token,
    EOS appended, padding after it. Its vocabulary holds the words of the prompt templates as
    single tokens and single characters for everything else (class names become several
    tokens); built here, so nothing is downloaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from e2mim_trainers.promptsrc import PROMPTSRC_TEMPLATES

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    words = {w for t in PROMPTSRC_TEMPLATES for w in t.replace("{}", " ").replace(".", " ").split()} | {"x"}
    for piece in sorted(words) + list(string.ascii_lowercase + string.digits) + \
            ["##" + c for c in string.ascii_lowercase + string.digits]:
        vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", continuing_subword_prefix="##"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    path = os.path.join(folder, "siglip-style-tokenizer")
    fast.save_pretrained(path)
    return path, len(vocab)


def _register_tiny_eva():
    """timm name e2mim_test_eva02: EVA-02 blocks (rotary embedding, SwiGLU) at test size."""
    import timm
    from timm.models import eva, register_model

    if "e2mim_test_eva02" in timm.list_models("e2mim_test_eva02"):
        return

    @register_model
    def e2mim_test_eva02(pretrained=False, **kwargs):  # noqa: ARG001 - timm's signature
        head = {k: kwargs[k] for k in ("num_classes", "global_pool") if k in kwargs}
        return eva.Eva(img_size=64, patch_size=16, embed_dim=64, depth=3, num_heads=2, mlp_ratio=4 * 2 / 3,
                       swiglu_mlp=True, use_rot_pos_emb=True, ref_feat_shape=(4, 4), **head)


# OpenAI's ViT-B/16 with 2 layers per tower (widths, heads, patch, context as published): the
# shape the clip/open_clip identity tests load the same weights into (clip.model.CLIP arguments).
B16_2L = dict(embed_dim=512, image_resolution=224, vision_layers=2, vision_width=768, vision_patch_size=16,
              context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=2)


def configs(tokenizer_path, vocab_size):
    tiny_text = {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2}
    tiny_vision = {"image_size": 224, "layers": 2, "width": 128, "patch_size": 32, "head_width": 64}
    return {
        "e2mim-tiny-openai": {"embed_dim": 128, "quick_gelu": True, "vision_cfg": tiny_vision, "text_cfg": tiny_text},
        # a ResNet image tower (no token sequence: the shallow methods only)
        "e2mim-tiny-rn": {"embed_dim": 128, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
                          "text_cfg": tiny_text},
        # LAION/DataComp/MetaCLIP layout: the same towers with exact GELU
        "e2mim-tiny-laion": {"embed_dim": 128, "vision_cfg": tiny_vision, "text_cfg": tiny_text},
        "e2mim-b16-2l-quickgelu": {
            "embed_dim": 512, "quick_gelu": True,
            "vision_cfg": {"image_size": 224, "layers": 2, "width": 768, "patch_size": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 2},
        },
        "e2mim-tiny-siglip": {
            "embed_dim": 64, "init_logit_bias": -10, "custom_text": True,
            "vision_cfg": {"image_size": 160, "timm_model_name": "test_vit", "timm_model_pretrained": False,
                           "timm_pool": "map", "timm_proj": "none"},
            "text_cfg": {"context_length": CONTEXT_SIGLIP, "vocab_size": vocab_size,
                         "hf_tokenizer_name": tokenizer_path, "tokenizer_kwargs": {"clean": "canonicalize"},
                         "width": 32, "heads": 2, "layers": 2, "no_causal_mask": True, "proj_bias": True,
                         "pool_type": "last", "norm_kwargs": {"eps": 1e-6}},
        },
        "e2mim-tiny-eva": {
            "embed_dim": 48, "custom_text": True,
            "vision_cfg": {"image_size": 64, "timm_model_name": "e2mim_test_eva02", "timm_model_pretrained": False,
                           "timm_pool": "token", "timm_proj": None},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        },
    }


# The input size each tiny model was built for (INPUT.SIZE of a run on it).
SIZES = {"e2mim-tiny-openai": 224, "e2mim-tiny-rn": 64, "e2mim-tiny-laion": 224, "e2mim-b16-2l-quickgelu": 224,
         "e2mim-tiny-siglip": 160, "e2mim-tiny-eva": 64}


def register(folder):
    """Write the tiny configs (and the SigLIP-style tokenizer) into ``folder``; register them."""
    import open_clip

    _register_tiny_eva()
    os.makedirs(folder, exist_ok=True)
    tok_path, vocab = _word_piece_tokenizer(folder)
    for name, cfg in configs(tok_path, vocab).items():
        with open(os.path.join(folder, f"{name}.json"), "w") as f:
            json.dump(cfg, f)
    open_clip.add_model_config(folder)
    return folder
