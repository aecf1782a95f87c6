"""What the shared text encoder, prompt builder and image encoders read from a CLIP model.

OpenAI's ``clip`` models and ``open_clip`` models (CLIP, CustomTextCLIP; native or timm image
towers) keep the same pieces under different names and layouts. ``towers(model)`` describes
them once, so the encoders in ``prompting`` and ``deep_prompts`` never ask which family a model
is:

* text: token embedding, positional embedding, the transformer's blocks and their layout
  (CLIP's are sequence-first, open_clip's batch-first), the final norm, the projection (a
  matrix, a Linear with bias, or none), the attention (causal or full), the context length,
  the pooled position (the EOT token, or the last position for SigLIP) and the tokenizer;
* image: the kind of image tower ("vit": CLIP's or open_clip's own ViT; "timm": a timm ViT or
  EVA trunk inside open_clip; anything else has no token sequence for deep prompts).

The EOT truncation shortcut (prompting) applies only where it is exact: a causal text
transformer whose feature is read at the EOT token.
"""
import warnings
import weakref

import torch
import torch.nn as nn
import torch.nn.functional as F

from e2mim_engine.errors import ConfigError, DataError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import clip
    from clip import model as clip_model_lib
    from clip.clip import _tokenizer as _clip_bpe


class Tokenizer:
    """Texts -> token ids [n, context_length]: [SOT] words [EOT] padding.

    ``encode`` gives a text's word tokens (no special tokens); ``sot`` is None for tokenizers
    without a start token (SigLIP's). A text that does not fit is a DataError naming it (as
    CoOp, prompts are never cut)."""

    def __init__(self, encode, context_length, sot, eot, pad=0, name="CLIP"):
        self.encode, self.context_length = encode, context_length
        self.sot, self.eot, self.pad, self.name = sot, eot, pad, name

    @property
    def n_prefix(self):
        """Special tokens before a text's words (the context starts after them)."""
        return 0 if self.sot is None else 1

    def __call__(self, texts):
        texts = [texts] if isinstance(texts, str) else list(texts)
        start = [] if self.sot is None else [self.sot]
        rows = [start + self.encode(t) + [self.eot] for t in texts]
        long = [(len(r), t) for r, t in zip(rows, texts) if len(r) > self.context_length]
        if long:
            n, text = max(long)
            raise DataError(
                f"{len(long)} prompt(s) do not fit {self.name}'s text context of {self.context_length} tokens "
                f"(start and end included); the longest, {n} tokens: '{text}'. Class names "
                f"come from the dataset (for your own data, DATASET.CUSTOM.CLASSNAMES); shorten the longest, or "
                f"use fewer context tokens (N_CTX) or a shorter template.")
        out = torch.full((len(rows), self.context_length), self.pad, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r)
        return out


def clip_tokenizer(context_length=77):
    """OpenAI CLIP's BPE tokenizer (EOT has the largest id, padding 0)."""
    enc = _clip_bpe.encoder
    return Tokenizer(_clip_bpe.encode, context_length, enc["<|startoftext|>"], enc["<|endoftext|>"], 0, "CLIP")


class Towers:
    """The pieces of one CLIP model the encoders run, read from the model (see the module doc)."""

    def __init__(self, model, tokenizer=None):
        text = getattr(model, "text", None)
        is_clip = isinstance(model, clip_model_lib.CLIP)
        if text is not None and not hasattr(text, "token_embedding"):
            raise ConfigError(
                f"This open_clip model's text tower is {type(text).__name__} (a Hugging Face text model), which "
                f"the prompt builder cannot splice context vectors into. Prompt tuning works on models whose text "
                f"tower is open_clip's own TextTransformer: ViT-*, ViT-*-quickgelu, ViT-*-SigLIP*, EVA02-*, "
                f"EVA01-*, convnext_* and RN* (zero-shot and the shallow methods), with any weights tag.")
        src = text if text is not None else model
        self.family = "clip" if is_clip else "open_clip"
        # the modules themselves (never the model: the description must not keep it alive)
        self.token_embedding = src.token_embedding
        self.positional_embedding = src.positional_embedding
        self.transformer = src.transformer
        self.ln_final = src.ln_final
        self.projection = src.text_projection
        self.visual = model.visual
        self.batch_first = bool(getattr(src.transformer, "batch_first", False))
        # CLIP's blocks carry its causal mask; open_clip's text tower holds it (None: full attention)
        self.causal = is_clip or getattr(src, "attn_mask", None) is not None
        pool = "argmax" if is_clip else getattr(src, "pool_type", None) or getattr(model, "text_pool_type", "argmax")
        if pool not in ("argmax", "last", "first", "eos"):
            raise ConfigError(f"open_clip text pooling '{pool}' has no single pooled token; supported: argmax "
                              f"(EOT), last, first, eos.")
        if getattr(src, "cls_emb", None) is not None:
            raise ConfigError("open_clip text towers with an appended class embedding (CoCa) are not supported "
                              "by the prompt builder; use a CLIP-style model (ViT-*, *-SigLIP*, EVA02-*).")
        self.pool = pool
        self.eos_id = getattr(src, "eos_id", getattr(model, "text_eos_id", None))
        self.context_length = int(src.positional_embedding.shape[0])
        self.tokenizer = tokenizer or clip_tokenizer(self.context_length)
        self.vision_kind = vision_kind(model.visual)

    @property
    def blocks(self):
        return self.transformer.resblocks

    @property
    def dtype(self):
        """The dtype the text blocks compute in (their weights')."""
        return self.blocks[0].attn.in_proj_weight.dtype if hasattr(self.blocks[0], "attn") else \
            self.token_embedding.weight.dtype

    @property
    def embed_dim(self):
        """The size of the (projected) features, shared by the image and the text towers."""
        p = self.projection
        if p is None:
            return self.width
        return p.out_features if isinstance(p, nn.Linear) else p.shape[1]

    @property
    def width(self):
        return self.ln_final.weight.shape[0]

    @property
    def truncates(self):
        """Whether positions after the longest EOT can be cut: only a causal transformer whose
        feature is read at the EOT token leaves the feature unchanged."""
        return self.causal and self.pool in ("argmax", "eos")

    def pooled_index(self, tokens, length):
        """Position of each row's feature in a sequence of ``length`` (token ids [n, L])."""
        if self.pool == "argmax":
            return tokens.argmax(dim=-1)
        if self.pool == "eos":
            return (tokens == self.eos_id).int().argmax(dim=-1)
        idx = length - 1 if self.pool == "last" else 0
        return torch.full((tokens.shape[0],), idx, dtype=torch.long, device=tokens.device)

    def project(self, x):
        """The text projection on pooled rows [n, width]: a matrix, a Linear (SigLIP's has a bias), or none."""
        p = self.projection
        if p is None:
            return x
        if isinstance(p, nn.Linear):
            return F.linear(x, p.weight.to(x.dtype), None if p.bias is None else p.bias.to(x.dtype))
        return x @ p

    def tokenize(self, texts, truncate=True):
        """Token ids [n, L]; L is the longest EOT position + 1 where that is exact (``truncates``)
        and ``truncate`` is set, else the model's context length."""
        tokens = self.tokenizer(texts)
        if truncate and self.truncates:
            tokens = tokens[:, : int(self.pooled_index(tokens, tokens.shape[1]).max()) + 1]
        return tokens

    def mask_for(self, L, dtype, device):
        """open_clip's text attention mask for ``L`` positions: causal (-inf above the
        diagonal, as its build_causal_mask), or None when attention is full."""
        if not self.causal:
            return None
        return torch.full((L, L), float("-inf"), dtype=dtype, device=device).triu_(1)

    def run_block(self, block, x):
        """One text block on x in the blocks' own layout (CLIP's carry their mask, open_clip's take it)."""
        if self.family == "clip":
            return block(x)
        L = x.shape[1] if self.batch_first else x.shape[0]
        return block(x, attn_mask=self.mask_for(L, x.dtype, x.device))


def vision_kind(visual):
    """'vit' (CLIP's or open_clip's own ViT), 'timm' (a timm ViT or EVA trunk), or the class name."""
    if hasattr(visual, "transformer") and hasattr(visual, "class_embedding") and hasattr(visual, "conv1"):
        return "vit"
    trunk = getattr(visual, "trunk", None)
    if trunk is not None and hasattr(trunk, "blocks") and hasattr(trunk, "patch_embed") and hasattr(trunk, "_pos_embed"):
        return "timm"
    return type(getattr(visual, "trunk", visual)).__name__


_TOWERS = weakref.WeakKeyDictionary()


def describe(model, tokenizer=None):
    """Record how ``model`` is read (the loader calls it with the model's tokenizer)."""
    _TOWERS[model] = Towers(model, tokenizer)
    return _TOWERS[model]


def towers(model):
    """The Towers of ``model``, described once (CLIP's tokenizer unless the loader gave another)."""
    t = _TOWERS.get(model)
    return t if t is not None else describe(model)


__all__ = ["Tokenizer", "Towers", "clip", "clip_tokenizer", "describe", "towers", "vision_kind"]
