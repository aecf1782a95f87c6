"""Deep vision-language prompts on CLIP's own blocks: learnable tokens inserted at the input
of chosen transformer layers of the image and the text encoders, without a copy of CLIP.

The encoders here run the frozen model's modules themselves (conv1, class and positional
embeddings, ln_pre, each ``resblocks[i]``, ln_post, proj; token embeddings, each text block,
ln_final, text_projection) and only change the token sequence between blocks:

* vision: the input prompts [n, width] are appended after the patch tokens (after the
  positional embedding, before ln_pre), so the sequence is [CLS, patches, prompts]; at the
  input of block k (k = 1 .. depth-1) the last n positions are *replaced* by the prompts of
  layer k (the outputs the previous layer produced there are dropped).
* text: the input prompts are the context positions 1 .. n after SOS (spliced in by the
  prompt learner, then the positional embedding is added); at the input of block k the
  positions 1 .. n are replaced by that layer's prompts.

A layer's prompts may also start deeper (MMRL's representation tokens, from a middle layer
on): when the sequence holds no prompt positions yet, the first layer's prompts are *added*
(vision: after the last token; text: after SOS, so every EOT moves by their count) instead of
replacing anything, and later layers replace them as above.

This is the layout of the published MaPLe/IVLP/PromptSRC code. The text side keeps the
EOT truncation of ``prompting.TextEncoder`` where it applies (a causal mask: deep prompts sit
before every EOT, so positions after the longest EOT never reach a feature at any layer).

The same encoders run open_clip models (read through ``towers``): open_clip's own ViT
(batch-first blocks, its pooling: class token, average or attention pool) and timm ViT/EVA
trunks (SigLIP, EVA-CLIP). The prompt positions are dropped before any pooling head, and an
EVA's rotary embedding gives them the identity rotation (no position, as in CLIP).

With no prompts both encoders equal CLIP's encode_image / encode_text. Weights keep the
run's dtype; prompts are float32 parameters cast to the activations' dtype at use.
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from yacs.config import CfgNode as CN

from e2mim_engine.checkpoint import PublishedFormat
from e2mim_engine.errors import ConfigError, DataError
from e2mim_engine.utils import logger

from . import fused
from .prompt_trainer import ClipTrainer, PromptTrainer
from .prompting import PromptCLIP, TextEncoder, check_context, embed_words
from .towers import towers


def check_vit(clip_model, what="Deep prompts"):
    """ConfigError unless the image encoder is a ViT (a ResNet has no token sequence)."""
    kind = towers(clip_model).vision_kind
    if kind not in ("vit", "timm"):
        raise ConfigError(f"{what} need a ViT image encoder: CLIP's ViT-B/32, ViT-B/16, ViT-L/14, random:tiny, "
                          f"or an open_clip ViT (open_clip:ViT-*, *-quickgelu, *-SigLIP*, EVA02-*, EVA01-*: "
                          f"open_clip's own ViT or a timm ViT/EVA trunk); this backbone's image encoder is {kind}, "
                          f"which has no transformer layers to insert tokens into. The shallow methods "
                          f"(ZeroshotCLIP, CoOp, CoCoOp, KgCoOp, ProGrad, E2MIM) run on it.")


def _vision_blocks(visual):
    return visual.transformer.resblocks if hasattr(visual, "transformer") else visual.trunk.blocks


def encoder_shapes(clip_model):
    """{vision_width, vision_layers, text_width, text_layers}, read from the model."""
    check_vit(clip_model)
    t = towers(clip_model)
    visual = clip_model.visual
    width = visual.conv1.weight.shape[0] if hasattr(visual, "conv1") else visual.trunk.embed_dim
    return {"vision_width": width, "vision_layers": len(_vision_blocks(visual)),
            "text_width": t.width, "text_layers": len(t.blocks)}


def coupled_depth(clip_model, depth, key):
    """check_depth of a prompt depth that enters both towers (MaPLe's coupled prompts): at least
    1, at most the shallower tower's layers."""
    shapes = encoder_shapes(clip_model)
    return check_depth(depth, min(shapes["text_layers"], shapes["vision_layers"]), key, low=1)


def check_depth(depth, layers, key, low=0):
    """The prompt depth to use: ConfigError below ``low``; above the encoder's layer count it
    is clamped with a note (what the published code does silently), so the published files
    also run on small shapes such as random:tiny."""
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < low:
        raise ConfigError(f"{key} must be an integer >= {low} (layers that get prompts); got {depth!r}.")
    if depth > layers:
        logger.info(f"Note: {key} {depth} exceeds the {layers} layers of this backbone's encoder; "
                    f"all {layers} layers get prompts")
        return layers
    return depth


def _per_sample(p, n, dtype):
    return p.to(dtype).unsqueeze(1).expand(-1, n, -1)  # [n_ctx, D] -> [n_ctx, N, D]


class DeepVisionEncoder(nn.Module):
    """The model's ViT image encoder with prompts appended at the input and replaced per layer
    (CLIP's ViT, open_clip's own ViT, or a timm ViT/EVA trunk). The prompt positions are dropped
    before pooling, so an attention-pool head or an average never reads them."""

    def __init__(self, clip_model):
        super().__init__()
        check_vit(clip_model)
        self.visual = clip_model.visual
        self.kind = towers(clip_model).vision_kind
        self._clip = isinstance(self.visual, fused.clip_model_lib.VisionTransformer)

    def embed(self, image):
        """Image -> (tokens [N, L, D] before the blocks, timm EVA's rotary embedding or None)."""
        v = self.visual
        if self.kind == "timm":
            trunk = v.trunk
            x = trunk.patch_embed(image.type(trunk.patch_embed.proj.weight.dtype))
            x = trunk._pos_embed(x)
            x, rope = x if isinstance(x, tuple) else (x, None)
            if rope is None and getattr(trunk, "patch_drop", None) is not None:
                x = trunk.patch_drop(x)  # timm ViT's (identity in eval mode; the frozen trunk always is)
            return trunk.norm_pre(x), rope
        x = v.conv1(image.type(v.conv1.weight.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype), None

    @staticmethod
    def _rope_with_prompts(rope, n):
        """EVA's rotary embedding [patches, 2 * d] (sin, cos) extended by ``n`` identity rows
        (sin 0, cos 1): appended prompts carry no position, as in CLIP's ViT."""
        if rope is None or n == 0:
            return rope
        if rope.dim() != 2:
            raise ConfigError("Deep prompts on this EVA model: its rotary embedding is per layer or per head "
                              "(mixed RoPE), which appended prompt tokens cannot extend; EVA02-* (cat RoPE) works.")
        half = rope.shape[-1] // 2
        extra = torch.cat([rope.new_zeros(n, half), rope.new_ones(n, half)], dim=-1)
        return torch.cat([rope, extra], dim=0)

    def forward(self, image, ctx=None, deep=(), prompt_outputs=False):
        """image [N, 3, H, W]; ctx [n, width] or None; deep[j] ([n, width] or None) replaces the
        prompt positions at the input of block j + 1 (or adds them, when there are none yet).
        Returns [N, embed_dim] (unnormalized); with ``prompt_outputs`` also ln_post of the
        prompt positions' last outputs [N, n, width]."""
        v = self.visual
        x, rope = self.embed(image)
        n = 0
        if ctx is not None:
            n = ctx.shape[0]
            x = torch.cat([x, ctx.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
        blocks = _vision_blocks(v)
        if len(deep) >= len(blocks):
            raise ValueError(f"{len(deep)} deep vision prompts for {len(blocks)} layers")
        if self.kind == "vit":
            x = v.ln_pre(x)
        seq_first = self._clip  # CLIP's blocks are sequence-first, open_clip's and timm's batch-first
        if seq_first:
            x = x.permute(1, 0, 2)  # [L, N, D]
        rope0 = rope
        rope = self._rope_with_prompts(rope0, n)
        for i, block in enumerate(blocks):
            p = deep[i - 1] if 0 < i <= len(deep) else None
            if p is not None:
                k = p.shape[0]
                if n and k != n:
                    raise ValueError(f"layer {i} has {k} vision prompts, the sequence has {n}")
                if seq_first:
                    x = torch.cat([x[:x.shape[0] - n], _per_sample(p, x.shape[1], x.dtype)], dim=0)
                else:
                    x = torch.cat([x[:, :x.shape[1] - n], _per_sample(p, x.shape[0], x.dtype).transpose(0, 1)], dim=1)
                if k != n:  # prompts added where there were none (MMRL): the rotary table grows too
                    n, rope = k, self._rope_with_prompts(rope0, k)
            x = block(x) if rope is None else block(x, rope=rope)
        if self._clip:
            feature = v.ln_post(x[0])
            feature = feature @ v.proj if v.proj is not None else feature
            return (feature, v.ln_post(x[x.shape[0] - n:].permute(1, 0, 2))) if prompt_outputs else feature
        if self.kind == "vit":
            feature = fused.pool_vit(v, x, n)
            return (feature, v.ln_post(x[:, x.shape[1] - n:])) if prompt_outputs else feature
        if prompt_outputs:
            raise ConfigError("The prompt positions' outputs (MMRL's representation tokens) are read from CLIP's "
                              "or open_clip's own ViT image towers; this model's image tower is a timm trunk.")
        x = v.trunk.norm(x[:, :x.shape[1] - n])  # the prompts never reach timm's pooling head
        return v.head(v.trunk.forward_head(x))


class DeepTextEncoder(TextEncoder):
    """The model's text encoder on token embeddings, with the context positions (after the
    start token, if the tokenizer has one) replaced per layer.

    Same call as ``prompting.TextEncoder`` (so it also encodes fixed texts), plus ``deep``."""

    def forward(self, prompts, tokenized_prompts, deep=(), n_ctx=None):
        """prompts [n, L, d] (context after the start token); deep[j] ([n_ctx, d], the same for
        every sequence, or [n, n_ctx, d], one per sequence, or None) replaces the context positions
        at the input of block j + 1. ``n_ctx``: the context positions the input holds (None: as
        many as each deep prompt, the MaPLe/IVLP layout; 0: none, so the first deep prompt is
        added after the start token and every pooled position moves by its length)."""
        t = self.towers
        L, s = prompts.shape[1], t.tokenizer.n_prefix
        x = prompts.type(self.dtype) + self.positional_embedding[:L].type(self.dtype)
        seq_first = not t.batch_first
        if seq_first:
            x = x.permute(1, 0, 2)
        blocks = self.transformer.resblocks
        if len(deep) >= len(blocks):
            raise ValueError(f"{len(deep)} deep text prompts for {len(blocks)} layers")
        n, added = n_ctx, 0
        for i, block in enumerate(blocks):
            p = deep[i - 1] if 0 < i <= len(deep) else None
            if p is not None:
                k = p.shape[-2]
                if p.dim() == 3:   # one per sequence [n, k, d]
                    p = p.to(x.dtype).transpose(0, 1) if seq_first else p.to(x.dtype)
                else:
                    p = _per_sample(p, x.shape[1] if seq_first else x.shape[0], x.dtype)
                    p = p if seq_first else p.transpose(0, 1)
                keep = s if n == 0 else s + k   # n == 0: no context positions yet, the prompts are added
                if n == 0:
                    added = k
                    self._check_length((x.shape[0] if seq_first else x.shape[1]) + k, block)
                n = k
                if seq_first:
                    x = torch.cat([x[:s], p, x[keep:]], dim=0)
                else:
                    x = torch.cat([x[:, :s], p, x[:, keep:]], dim=1)
            x = self.run_stock_block(block, x)  # checkpointed when MODEL.TEXT_ENCODER.CHECKPOINT
        return self.pool_and_project(x.permute(1, 0, 2) if seq_first else x, tokenized_prompts, added)

    @staticmethod
    def _check_length(length, block):
        mask = getattr(block, "attn_mask", None)
        if mask is not None and length > mask.shape[-1]:
            raise DataError(f"A prompt with its {length - mask.shape[-1]} added tokens is longer than CLIP's "
                            f"text context of {mask.shape[-1]} tokens; shorten the longest class name or "
                            f"template, or add fewer tokens.")


def _init_prompts(count, n, width, device):
    """``count`` learnable [n, width] prompts, N(0, 0.02) as in the published code."""
    return nn.ParameterList([nn.Parameter(nn.init.normal_(torch.empty(n, width, device=device), std=0.02))
                             for _ in range(count)])


class DeepPromptLearner(nn.Module):
    """Text context [SOS] ctx*n "<rest of CTX_INIT> <class>." [EOT] plus deep prompts.

    The published rule for CTX_INIT: with n <= 4 the first n tokens of CTX_INIT initialise
    the context and the rest of CTX_INIT stays as fixed words (N_CTX 2 with "a photo of a":
    learned "a photo", fixed "of a"); otherwise the context is random. The class-name token
    buffers are non-persistent and listed in checkpoint_ignored_keys, so a prompt trained on
    base classes loads for new classes. Subclasses add the vision side in vision_prompts().
    """

    checkpoint_ignored_keys = ("token_prefix", "token_suffix")

    def __init__(self, clip_model, classnames, n_ctx, ctx_init, text_depth, key="N_CTX"):
        super().__init__()
        shapes = encoder_shapes(clip_model)
        if not isinstance(n_ctx, int) or n_ctx < 1:
            raise ConfigError(f"{key} must be a positive integer (learnable text tokens); got {n_ctx!r}.")
        width = shapes["text_width"]
        t = towers(clip_model)
        embed, start = t.token_embedding, t.tokenizer.n_prefix
        device = embed.weight.device
        if ctx_init and n_ctx <= 4:
            ctx_init = ctx_init.replace("_", " ")
            n_words = len(t.tokenizer.encode(ctx_init))
            if n_words < n_ctx:
                raise ConfigError(f"CTX_INIT '{ctx_init}' has {n_words} tokens, fewer than the {n_ctx} "
                                  f"context tokens ({key}) it initialises.")
            init = embed_words(clip_model, ctx_init)[:n_ctx]
            prompt_prefix = ctx_init
        else:
            init = nn.init.normal_(torch.empty(n_ctx, width, device=device), std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        self.ctx = nn.Parameter(init)
        self.build_input_coupling(shapes, device)
        self.text_deep = _init_prompts(max(text_depth - 1, 0), n_ctx, width, device)
        self.prompt_prefix, self.n_ctx, self.n_cls = prompt_prefix, n_ctx, len(classnames)
        self.text_depth = text_depth
        names = [c.replace("_", " ") for c in classnames]
        if not (ctx_init and n_ctx <= 4):
            check_context(t, prompt_prefix, n_ctx)
        tokenized = t.tokenize([f"{prompt_prefix} {c}." for c in names]).to(device)
        with torch.no_grad():
            embedding = embed(tokenized)
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        self.register_buffer("token_prefix", embedding[:, :start], persistent=False)          # SOS (if any)
        self.register_buffer("token_suffix", embedding[:, start + n_ctx:], persistent=False)  # rest, EOT

    def build_input_coupling(self, shapes, device):
        """Modules drawn between the input context and the deep prompts (MaPLe's input-layer
        coupling): that is where the published code draws them, so the same seed gives the
        same initial tensors. None by default."""

    def text_prompts(self):
        """(prompt embeddings [C, L, d], deep text prompts per layer 1..)."""
        ctx = self.ctx.to(self.token_prefix.dtype).unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1), list(self.text_deep)

    def vision_prompts(self):
        """(input prompts [n, width] or None, deep vision prompts per layer 1..)."""
        return None, []


class IVLPPromptLearner(DeepPromptLearner):
    """Independent vision and language prompts: separate learnable tokens per layer and branch."""

    def __init__(self, clip_model, classnames, n_ctx_text, ctx_init, text_depth, n_ctx_vision,
                 vision_depth, key="N_CTX_TEXT"):
        super().__init__(clip_model, classnames, n_ctx_text, ctx_init, text_depth, key)
        width, device = encoder_shapes(clip_model)["vision_width"], self.ctx.device
        on = vision_depth >= 1 and n_ctx_vision >= 1
        self.vision_depth = vision_depth if on else 0
        self.vision_ctx = _init_prompts(1, n_ctx_vision, width, device)[0] if on else None
        self.vision_deep = _init_prompts(vision_depth - 1 if on else 0, n_ctx_vision, width, device)

    def vision_prompts(self):
        return self.vision_ctx, list(self.vision_deep)


class MaPLePromptLearner(DeepPromptLearner):
    """MaPLe: language prompts of every prompted layer, each mapped into the vision branch by
    its own linear coupling (text width -> vision width, both read from the model)."""

    def __init__(self, clip_model, classnames, n_ctx, ctx_init, depth, key="N_CTX"):
        super().__init__(clip_model, classnames, n_ctx, ctx_init, depth, key)
        shapes = encoder_shapes(clip_model)
        # The deep couplings start as copies of ONE layer drawn after the deep prompts (equal
        # to each other, not to the input coupling), as the published code draws them; it
        # draws that layer even when there are no deep layers.
        deep = nn.Linear(shapes["text_width"], shapes["vision_width"]).to(self.ctx.device)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(deep) for _ in range(depth - 1)])

    def build_input_coupling(self, shapes, device):
        self.proj = nn.Linear(shapes["text_width"], shapes["vision_width"]).to(device)

    def vision_prompts(self):
        deep = [f(p) for f, p in zip(self.compound_prompt_projections, self.text_deep)]
        return self.proj(self.ctx), deep


class DeepPromptCLIP(PromptCLIP):
    """Frozen CLIP + a deep prompt learner: PromptCLIP with both encoders prompted per layer."""

    def __init__(self, clip_model, prompt_learner):
        super().__init__(clip_model, prompt_learner)
        self.text_encoder = DeepTextEncoder(clip_model)
        self.image_encoder = DeepVisionEncoder(clip_model)

    def text_features(self, normalize=True):
        pl = self.prompt_learner
        prompts, deep = pl.text_prompts()
        t = self.text_encoder(prompts, pl.tokenized_prompts, deep).float()
        return F.normalize(t, dim=-1) if normalize else t

    def image_features(self, image, normalize=True):
        ctx, deep = self.prompt_learner.vision_prompts()
        v = self.image_encoder(image, ctx, deep).float()
        return F.normalize(v, dim=-1) if normalize else v

    @torch.no_grad()
    def frozen_image_features(self, image):
        """The frozen model's normalized image features (no prompts): no second CLIP needed."""
        return F.normalize(self.image_encoder(image).float(), dim=-1)


def _deeper(prefix):
    """re.sub replacement: the VPT_shallow prompt of block i (>= 1) is our deep prompt i - 1."""
    return lambda m: f"prompt_learner.{prefix}.{int(m.group(1)) - 1}"


# The published IVLP and PromptSRC code register the whole model as "VLPromptLearner" and keep
# the vision input prompt and every deeper prompt inside CLIP's blocks (VPT, VPT_shallow); its
# prompt learner holds the text context and a frozen copy of the image encoder.
VL_PUBLISHED = PublishedFormat(
    "VLPromptLearner", prefix="prompt_learner.",
    rename=((r"^image_encoder\.VPT$", "prompt_learner.vision_ctx"),
            (r"^image_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$", _deeper("vision_deep")),
            (r"^text_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$", _deeper("text_deep"))),
    drop=(r"^prompt_learner\.ZS_image_encoder\.",))

def ivlp_node(n_ctx_vision=2, n_ctx_text=2, depth_vision=9, depth_text=9):
    """The published IVLP keys (PromptSRC's node has the same ones plus its loss keys)."""
    c = CN()
    c.N_CTX_VISION = n_ctx_vision        # vision tokens per prompted layer
    c.N_CTX_TEXT = n_ctx_text            # text tokens per prompted layer
    c.CTX_INIT = "a photo of a"          # initial words of the text input context
    c.PREC = "fp16"
    c.PROMPT_DEPTH_VISION = depth_vision  # layers 0 .. depth-1 get vision prompts (0: none)
    c.PROMPT_DEPTH_TEXT = depth_text      # layers 0 .. depth-1 get text prompts (>= 1)
    return c


class DeepPromptTrainer(PromptTrainer):
    """PromptTrainer on DeepPromptCLIP: a method supplies build_prompt_learner (and a loss)."""

    prompt_clip = DeepPromptCLIP

    def validate_cfg(self, cfg):
        ClipTrainer.validate_cfg(self, cfg)  # not PromptTrainer's N_CTX check: other key names

    def build_model(self):
        clip_model = self.build_clip()
        check_vit(clip_model, f"{self.cfg.TRAINER.NAME}'s deep prompts")
        self.model = self.prompt_clip(clip_model, self.build_prompt_learner(clip_model))
        optim, sched = self.build_optim_sched(self.model.prompt_learner)
        self.register_model("prompt_learner", self.model.prompt_learner, optim, sched)

    def build_ivlp_learner(self, clip_model):
        """IVLPPromptLearner from the node's published IVLP keys, depths checked on the model."""
        c, node = self.cfg_node(), f"TRAINER.{self.node}"
        shapes = encoder_shapes(clip_model)
        text = check_depth(c.PROMPT_DEPTH_TEXT, shapes["text_layers"], f"{node}.PROMPT_DEPTH_TEXT", low=1)
        vision = check_depth(c.PROMPT_DEPTH_VISION, shapes["vision_layers"], f"{node}.PROMPT_DEPTH_VISION")
        if not isinstance(c.N_CTX_VISION, int) or c.N_CTX_VISION < 0:
            raise ConfigError(f"{node}.N_CTX_VISION must be an integer >= 0; got {c.N_CTX_VISION!r}.")
        return IVLPPromptLearner(clip_model, self.classnames, c.N_CTX_TEXT, c.CTX_INIT, text,
                                 c.N_CTX_VISION, vision, key=f"{node}.N_CTX_TEXT")

    def result_metadata(self):
        pl = self.model.prompt_learner
        return {"prompt_init": pl.prompt_prefix, "prompt_depth_text": pl.text_depth,
                "prompt_depth_vision": getattr(pl, "vision_depth", pl.text_depth),
                "trainable_params": sum(p.numel() for p in pl.parameters() if p.requires_grad)}
