"""The one text encoder and the one prompt builder, shared by every trainer.

Both read what they run from the model (``towers``): OpenAI's clip models and open_clip's
(LAION, DataComp, MetaCLIP, SigLIP, EVA-CLIP), with the model's own tokenizer.

Speed: CLIP's text transformer is causal and the feature is read at the end-of-text (EOT)
token, so positions after the longest prompt's EOT cannot change any feature. Prompts are
therefore cut to that length (typically 10-25 of 77 tokens) before the encoder runs; the
result equals the full-length encoder to float tolerance (tests/test_clip.py checks it).
Text towers with full attention (SigLIP's) run their whole context: there the cut is not exact.

Both encoders run CLIP's stock blocks through the fused batch-first forward of ``fused.py``
(scaled_dot_product_attention, QuickGELU folded into the GEMMs), equal to CLIP's own
modules to float tolerance and faster on CPU and GPU; models whose blocks are not CLIP's
stock ones, and ResNet image encoders, keep CLIP's forward. The text encoder can checkpoint
its blocks (``checkpoint``, set from MODEL.TEXT_ENCODER.CHECKPOINT by the trainer base).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import fused
from .towers import clip, clip_tokenizer, towers  # noqa: F401 - clip re-exported (tests import it here)

_CLIP_TOKENIZER = clip_tokenizer()
_tokenizer = _CLIP_TOKENIZER  # CLIP's BPE (``encode``), for the methods that count words

CONTEXT_LENGTH = 77  # CLIP's text context, start and end tokens included


def tokenize(texts, truncate_to_eot=True, model=None):
    """Token ids [n, L] for ``model``'s text tower (CLIP's BPE and context when None); L is the
    longest EOT position + 1 where that leaves the features unchanged (a causal tower pooled at
    EOT) unless ``truncate_to_eot`` is False, else the full context. A text longer than the
    context (as CoOp, never cut) is a DataError naming it."""
    if model is not None:
        return towers(model).tokenize(texts, truncate_to_eot)
    tokens = _CLIP_TOKENIZER(texts)
    if truncate_to_eot:
        tokens = tokens[:, : int(tokens.argmax(dim=-1).max()) + 1]
    return tokens


def word_tokens(model, text):
    """The word tokens of ``text`` (no start/end) in ``model``'s tokenizer."""
    return towers(model).tokenizer.encode(text)


@torch.no_grad()
def embed_words(model, text):
    """Float32 token embeddings [n, d] of ``text``'s word tokens (as they sit in a tokenized
    prompt, after the start token): the initial value of context vectors from words."""
    t = towers(model)
    embed, start, n = t.token_embedding, t.tokenizer.n_prefix, len(t.tokenizer.encode(text))
    return embed(t.tokenizer(text).to(embed.weight.device))[0, start:start + n].float()


class TextEncoder(nn.Module):
    """The model's text tower on token *embeddings*, so learnable context vectors can be spliced
    in. What it runs is read from the model (towers.Towers): CLIP's and open_clip's towers,
    causal or not, pooled at the EOT token or at the last position, any projection.

    ``checkpoint`` (False by default) recomputes each block's activations in the backward
    pass instead of keeping them: the same loss and gradients, memory of one block instead of
    all of them (the trainer base sets it from MODEL.TEXT_ENCODER.CHECKPOINT)."""

    def __init__(self, clip_model):
        super().__init__()
        t = self.towers = towers(clip_model)
        self.transformer = t.transformer
        self.positional_embedding = t.positional_embedding
        self.ln_final = t.ln_final
        self.text_projection = t.projection
        self.dtype = t.dtype
        self.checkpoint = False
        # decided once: the blocks are frozen modules and do not change type
        self._fused = fused.supports_fused(self.transformer)
        self._attention = None
        if self._fused:
            self._attention = fused.attention_kind(self.transformer) if t.family == "clip" else \
                ("causal" if t.causal else "none")

    def run_blocks(self, x):
        """The transformer's blocks on batch-first ``x`` [n, L, d] (fused when possible)."""
        if self._fused:
            return fused.text_blocks(self.transformer, x, self.checkpoint, self._attention)
        return fused.stock_text_blocks(self.transformer, x, self.checkpoint, self.towers)

    def run_stock_block(self, block, x):
        """One of the model's blocks as it is (its own layout), checkpointed when ``checkpoint``
        is set and gradients flow: for encoders that change the sequence between blocks."""
        if self.checkpoint and torch.is_grad_enabled() and x.requires_grad:
            return fused.checkpoint(self.towers.run_block, block, x, use_reentrant=False)
        return self.towers.run_block(block, x)

    def pool_and_project(self, x, tokenized_prompts, added=0):
        """Batch-first block outputs [n, L, d] -> the text features [n, D]: the pooled row (EOT,
        or the last position), the final norm (on n rows instead of n * L), the projection.
        ``added``: tokens inserted after the start token since tokenizing (they move EOT)."""
        idx = self.towers.pooled_index(tokenized_prompts, x.shape[1])
        if added and self.towers.pool in ("argmax", "eos"):
            idx = idx + added
        x = x[torch.arange(x.shape[0], device=x.device), idx]
        return self.towers.project(self.ln_final(x).type(self.dtype))

    def forward(self, prompts, tokenized_prompts):
        """prompts: [n, L, d] embeddings; tokenized_prompts: [n, L] ids."""
        L = prompts.shape[1]
        x = prompts.type(self.dtype) + self.positional_embedding[:L].type(self.dtype)
        return self.pool_and_project(self.run_blocks(x), tokenized_prompts)


@torch.no_grad()
def encode_texts(clip_model, texts, text_encoder=None, chunk=512):
    """Normalized features [n, D] (float32) of fixed texts, through the shared encoder."""
    enc = text_encoder or TextEncoder(clip_model)
    embed = towers(clip_model).token_embedding
    feats = []
    for i in range(0, len(texts), chunk):
        tok = tokenize(texts[i:i + chunk], model=clip_model).to(embed.weight.device)
        emb = embed(tok)
        feats.append(F.normalize(enc(emb, tok).float(), dim=-1))
    return torch.cat(feats)


@torch.no_grad()
def handcrafted_text_features(clip_model, classnames, templates, text_encoder=None):
    """[C, D] normalized class features; with several templates, the normalized mean of
    each class's normalized template features (CLIP's prompt ensembling)."""
    templates = [templates] if isinstance(templates, str) else list(templates)
    names = [c.replace("_", " ") for c in classnames]
    texts = [t.format(c) for c in names for t in templates]
    f = encode_texts(clip_model, texts, text_encoder).view(len(names), len(templates), -1)
    return F.normalize(f.mean(dim=1), dim=-1)


@torch.no_grad()
def encode_images(clip_model, images, normalize=True):
    """Image features (float32) of the frozen image encoder, without autograd; normalized
    unless ``normalize`` is False (feature-level Mixup may blend the raw features)."""
    visual = clip_model.visual
    if fused.supports_fused_visual(visual) and not images.requires_grad:
        # inference_mode skips autograd's version counters; the clone outside it makes the
        # result an ordinary tensor that later autograd graphs (logits) may save
        with torch.inference_mode():
            feats = fused.vit_forward(visual, images).float()
        feats = feats.clone()
    else:
        feats = clip_model.encode_image(images.type(image_dtype(visual))).float()
    return F.normalize(feats, dim=-1) if normalize else feats


def image_dtype(visual):
    """The dtype of the image encoder's weights (what its input is cast to)."""
    return next(p.dtype for p in visual.parameters() if p.dim() > 1)


def image_features_of(clip_model, x, normalize=True):
    """Float32 image features of ``x``: a batch of images [B, 3, H, W] through the frozen
    encoder (encode_images; normalized unless ``normalize`` is False), or ``x`` itself when it
    already holds the features [B, D] the method's encode_frozen gives (served by the feature
    cache: e2mim_engine.data.feature_cache)."""
    if x.dim() == 2:
        return x.float()
    return encode_images(clip_model, x, normalize)


def cosine_consistency(text_features, text_h):
    """1 - mean over classes of cos(learned, hand-crafted): KgCoOp's loss term, also E2MIM's
    cosine ablation. Both inputs [C, D]."""
    return 1.0 - F.cosine_similarity(text_features.float(), text_h.float(), dim=1, eps=1e-7).mean()


def mean_pairwise_cosine(features):
    """Mean cosine over the C(C-1) ordered pairs of distinct rows of [C, D]: how alike the
    class features are (near 1 when the prompts collapse onto one direction)."""
    f = F.normalize(features.float(), dim=-1)
    C = f.shape[0]
    if C < 2:
        raise ValueError("the pairwise cosine needs at least two classes")
    sim = f @ f.t()
    return float((sim.sum() - sim.diagonal().sum()) / (C * (C - 1)))


def check_context(t, prompt_prefix, n_ctx):
    """The context words must be n_ctx tokens of the model's tokenizer (the learned vectors
    replace exactly their positions)."""
    n = len(t.tokenizer.encode(prompt_prefix))
    if n != n_ctx:
        raise ValueError(f"the context '{prompt_prefix}' is {n} tokens of the {t.tokenizer.name} tokenizer, "
                         f"not the {n_ctx} the prompt learner replaces")


class PromptLearner(nn.Module):
    """CoOp's learnable context: [SOS] [ctx]*n_ctx [class tokens] . [EOT] (no SOS where the
    model's tokenizer has none, SigLIP's; with class_template, [SOS] [ctx]*n_ctx <the template
    with the class name> [EOT]; end position only).

    ctx is a float32 master copy ([n_ctx, d], or [n_cls, n_ctx, d] with csc); the class-name
    token embeddings are non-persistent buffers, so checkpoints never hold them and a prompt
    trained on base classes loads for new classes.
    """

    POSITIONS = ("end", "middle", "front")
    # Buffers of the class set, not of the checkpoint: CoOp's published checkpoints hold
    # them, and a prompt trained on base classes must load for new ones.
    checkpoint_ignored_keys = ("token_prefix", "token_suffix")

    def __init__(self, clip_model, classnames, n_ctx=16, ctx_init="", csc=False,
                 class_token_position="end", truncate=True, class_template="{}."):
        super().__init__()
        if class_token_position not in self.POSITIONS:
            raise ValueError(f"class token position '{class_token_position}' not in {self.POSITIONS}")
        if class_template != "{}." and class_token_position != "end":
            raise ValueError("a class template (what follows the context) needs the class token position 'end'")
        n_cls = len(classnames)
        t = towers(clip_model)
        ctx_dim, embed, start = t.width, t.token_embedding, t.tokenizer.n_prefix
        device = embed.weight.device
        if ctx_init:
            ctx_init = ctx_init.replace("_", " ")
            init = embed_words(clip_model, ctx_init)
            n_ctx = init.shape[0]
            ctx_vectors = init.unsqueeze(0).repeat(n_cls, 1, 1) if csc else init
            prompt_prefix = ctx_init
        else:
            shape = (n_cls, n_ctx, ctx_dim) if csc else (n_ctx, ctx_dim)
            ctx_vectors = torch.empty(shape, device=device)
            nn.init.normal_(ctx_vectors, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        self.ctx = nn.Parameter(ctx_vectors.float())
        self.prompt_prefix = prompt_prefix
        self.n_cls, self.n_ctx, self.csc = n_cls, n_ctx, csc
        self.class_token_position = class_token_position
        names = [c.replace("_", " ") for c in classnames]
        self.name_lens = [len(t.tokenizer.encode(c)) for c in names]
        check_context(t, prompt_prefix, n_ctx)
        tokenized = t.tokenize([f"{prompt_prefix} {class_template.format(c)}" for c in names], truncate).to(device)
        with torch.no_grad():
            embedding = embed(tokenized)
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        self.register_buffer("token_prefix", embedding[:, :start], persistent=False)               # SOS (if any)
        self.register_buffer("token_suffix", embedding[:, start + n_ctx:], persistent=False)  # class, '.', EOT

    @property
    def class_specific(self):
        """CSC: a context per class, meaningful only for the classes it was trained on."""
        return self.csc

    def forward(self):
        ctx = self.ctx.to(self.token_prefix.dtype)
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prefix, suffix = self.token_prefix, self.token_suffix
        if self.class_token_position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        prompts = []
        half = self.n_ctx // 2
        for i, n in enumerate(self.name_lens):
            name, rest = suffix[i:i + 1, :n], suffix[i:i + 1, n:]
            c = ctx[i:i + 1]
            if self.class_token_position == "middle":
                parts = [prefix[i:i + 1], c[:, :half], name, c[:, half:], rest]
            else:  # front
                parts = [prefix[i:i + 1], name, c, rest]
            prompts.append(torch.cat(parts, dim=1))
        return torch.cat(prompts, dim=0)


class PromptCLIP(nn.Module):
    """Frozen CLIP + a prompt learner: logits = scale * v(x) . t_c (the CoOp model)."""

    def __init__(self, clip_model, prompt_learner):
        super().__init__()
        self.clip = clip_model
        self.prompt_learner = prompt_learner
        self.text_encoder = TextEncoder(clip_model)

    @property
    def logit_scale(self):
        return self.clip.logit_scale.exp().float()

    def text_features(self, normalize=True):
        """The learned class features [C, D] (float32); ``normalize`` False leaves CLIP's
        projection as it is (a head that reads the feature's scale, as DePT's does)."""
        pl = self.prompt_learner
        t = self.text_encoder(pl(), pl.tokenized_prompts).float()
        return F.normalize(t, dim=-1) if normalize else t

    def image_features(self, image, normalize=True):
        """Images [B, 3, H, W], or their cached frozen features [B, D] (image_features_of)."""
        return image_features_of(self.clip, image, normalize)

    def forward(self, image, text_features=None):
        img = self.image_features(image)
        txt = self.text_features() if text_features is None else text_features
        return self.logit_scale * img @ txt.t()
