"""Fused forward passes of CLIP's transformers, on the frozen model's own weights.

CLIP's ``ResidualAttentionBlock`` runs ``nn.MultiheadAttention`` in the sequence-first
layout, which ``nn.MultiheadAttention`` cannot send to its fused fast path: every block pays
for reshapes and copies around the attention, and QuickGELU is three elementwise passes over
the widest activation. The functions here compute the same math from the same parameters:

* batch-first ``[N, L, D]`` throughout; q, k, v from one packed projection, attention by
  ``F.scaled_dot_product_attention`` (no attention weights are materialised; the text
  encoder's causal mask becomes ``is_causal=True``, any other mask is passed as is);
* QuickGELU ``y * sigmoid(1.702 y)`` is ``silu(1.702 y) / 1.702``: the two scales are folded
  into the GEMMs around it (``addmm``'s alpha and beta), so the activation is one pass;
* LayerNorms compute in float32 and cast back, as CLIP's LayerNorm does; the patch
  embedding stays CLIP's conv (one GEMM over flattened patches and a channels-last conv are
  options of ``vit_forward``, measured no faster).

Nothing is copied, cached or registered on the model: its modules and state dict are
untouched. The results equal CLIP's own forward to float tolerance (tests/test_perf_fused.py
checks the image encoder, the text encoder and its gradients against the stock modules).
open_clip's own blocks (batch-first, QuickGELU or exact GELU, no layer scale) run through the
same functions; a model whose blocks are neither (``supports_fused`` is False: custom
attention blocks, layer scale, timm trunks), or a ResNet image encoder, keeps the stock path.

``text_blocks`` can also checkpoint each block (``torch.utils.checkpoint``): activations of a
block are recomputed in the backward pass instead of being kept, which is what lets
1000-class prompt training fit (MODEL.TEXT_ENCODER.CHECKPOINT).
"""
import sys
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from clip import model as clip_model_lib

QUICK_GELU = 1.702


def _open_clip_lib():
    """open_clip's transformer module if open_clip is imported, else None: no open_clip model
    can exist before, and importing it (seconds) is left to the loader, which needs it."""
    return sys.modules.get("open_clip.transformer")


def _is_open_clip(obj, name):
    lib = _open_clip_lib()
    return lib is not None and type(obj) is getattr(lib, name)


def _activation(block):
    """'quick_gelu' or 'gelu' for the block's MLP activation (the ones block_forward folds:
    CLIP's and open_clip's QuickGELU, exact GELU), None for any other."""
    act = block.mlp.gelu
    if type(act) is clip_model_lib.QuickGELU or _is_open_clip(act, "QuickGELU"):
        return "quick_gelu"
    if type(act) is nn.GELU and act.approximate == "none":
        return "gelu"
    return None


def _stock_block(block):
    """True when ``block`` is CLIP's or open_clip's ResidualAttentionBlock with the layout this
    module reads (open_clip's: no layer scale, no cross attention)."""
    if type(block) is clip_model_lib.ResidualAttentionBlock:
        batch_first = False
    elif _is_open_clip(block, "ResidualAttentionBlock"):
        batch_first = True
        if not (type(block.ls_1) is nn.Identity and type(block.ls_2) is nn.Identity) or hasattr(block, "ln_1_kv"):
            return False
    else:
        return False
    a = block.attn
    return (type(a) is nn.MultiheadAttention and a._qkv_same_embed_dim and a.in_proj_bias is not None
            and a.bias_k is None and not a.add_zero_attn and a.batch_first == batch_first
            and _activation(block) is not None
            and isinstance(block.ln_1, nn.LayerNorm) and isinstance(block.ln_2, nn.LayerNorm))


def supports_fused(transformer):
    """Whether every block of a CLIP ``Transformer`` can run through ``block_forward``."""
    blocks = getattr(transformer, "resblocks", None)
    return blocks is not None and len(blocks) > 0 and all(_stock_block(b) for b in blocks)


def _is_causal_mask(mask):
    """CLIP's build_attention_mask: -inf strictly above the diagonal, 0 elsewhere."""
    if mask is None or mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        return False
    upper = torch.ones(mask.shape, dtype=torch.bool, device=mask.device).triu(1)
    return bool(torch.isneginf(mask[upper]).all()) and bool((mask[~upper] == 0).all())


def attention_kind(transformer):
    """'none', 'causal' or 'mask' for the blocks of ``transformer`` (all blocks share one mask;
    open_clip's blocks hold none: its text mask is the caller's to give)."""
    masks = [getattr(b, "attn_mask", None) for b in transformer.resblocks]
    if all(m is None for m in masks):
        return "none"
    if all(m is not None and m is masks[0] for m in masks) and _is_causal_mask(masks[0]):
        return "causal"
    return "mask"


def _layer_norm(ln, x):
    # CLIP's LayerNorm: computed in float32, result in the input's dtype.
    return F.layer_norm(x.float(), ln.normalized_shape, ln.weight, ln.bias, ln.eps).to(x.dtype)


def _linear(x, weight, bias, alpha=1.0, beta=1.0):
    """beta * bias + alpha * x @ weight.T over the last dim, as one addmm."""
    shape = x.shape[:-1]
    # under autocast addmm casts its operands to the low dtype itself, as nn.Linear does
    y = torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight.t(), beta=beta, alpha=alpha)
    return y.view(*shape, weight.shape[0])


def block_forward(block, x, kind="none", inplace=False):
    """One ResidualAttentionBlock on batch-first ``x`` [N, L, D]. ``inplace`` reuses buffers
    (only without autograd); ``kind`` from ``attention_kind``."""
    attn = block.attn
    N, L, D = x.shape
    H = attn.num_heads
    y = _layer_norm(block.ln_1, x)
    qkv = _linear(y, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(N, L, 3, H, D // H).permute(2, 0, 3, 1, 4).unbind(0)  # [N, H, L, hd] each
    mask = None
    if kind == "mask":
        mask = block.attn_mask[..., -L:, -L:].to(dtype=q.dtype, device=q.device)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=kind == "causal")
    o = o.transpose(1, 2).reshape(N, L, D)
    o = _linear(o, attn.out_proj.weight, attn.out_proj.bias)
    x = x.add_(o) if inplace and o.dtype == x.dtype else x + o
    fc, proj = block.mlp.c_fc, block.mlp.c_proj
    y = _layer_norm(block.ln_2, x)
    if _activation(block) == "gelu":
        o = _linear(F.gelu(_linear(y, fc.weight, fc.bias)), proj.weight, proj.bias)
    else:
        # QuickGELU(h) = silu(1.702 h) / 1.702, with both scales inside the GEMMs
        h = _linear(y, fc.weight, fc.bias, alpha=QUICK_GELU, beta=QUICK_GELU)
        h = F.silu(h, inplace=inplace)
        o = _linear(h, proj.weight, proj.bias, alpha=1.0 / QUICK_GELU)
    return x.add_(o) if inplace and o.dtype == x.dtype else x + o


def text_blocks(transformer, x, ckpt=False, kind=None):
    """The blocks of a text ``transformer`` on batch-first ``x`` [N, L, D], with autograd.
    ``ckpt`` recomputes each block's activations in backward (only when grads flow)."""
    kind = kind or attention_kind(transformer)
    use_ckpt = ckpt and torch.is_grad_enabled() and x.requires_grad
    for block in transformer.resblocks:
        if use_ckpt:
            x = checkpoint(block_forward, block, x, kind, use_reentrant=False)
        else:
            x = block_forward(block, x, kind)
    return x


def stock_text_blocks(transformer, x, ckpt=False, towers=None):
    """The model's own blocks on batch-first ``x`` (CLIP's are sequence-first inside; with
    ``towers``, each block runs through ``towers.run_block``: its layout and mask), optionally
    checkpointed: the path for blocks ``supports_fused`` does not know."""
    seq_first = towers is None or not towers.batch_first
    run = towers.run_block if towers is not None else (lambda block, y: block(y))
    if seq_first:
        x = x.permute(1, 0, 2)
    use_ckpt = ckpt and torch.is_grad_enabled() and x.requires_grad
    for block in transformer.resblocks:
        x = checkpoint(run, block, x, use_reentrant=False) if use_ckpt else run(block, x)
    return x.permute(1, 0, 2) if seq_first else x


def supports_fused_visual(visual):
    """A ViT image encoder with stock blocks: CLIP's, or open_clip's own ViT (pooled at the
    class token or by an attention pool, which ``pool_vit`` runs as it is). A ModifiedResNet
    or a timm trunk keeps its own forward (timm's blocks already use fused attention)."""
    if _is_open_clip(visual, "VisionTransformer"):
        if type(visual.patch_dropout) is not nn.Identity and visual.training:
            return False
    elif not isinstance(visual, clip_model_lib.VisionTransformer):
        return False
    return (isinstance(visual.conv1, nn.Conv2d) and visual.conv1.bias is None
            and visual.conv1.kernel_size == visual.conv1.stride and visual.conv1.padding == (0, 0)
            and supports_fused(visual.transformer))


def pool_vit(visual, x, n_prompts=0):
    """The pooled, projected image feature of a ViT's last block output (batch-first
    [N, L, D]); the last ``n_prompts`` positions (deep prompts) are dropped first, so they never
    reach the pooled feature (an attention pool or average would read them)."""
    if n_prompts:
        x = x[:, :x.shape[1] - n_prompts]
    if isinstance(visual, clip_model_lib.VisionTransformer) or (
            visual.attn_pool is None and visual.pool_type == "tok"):
        x = _layer_norm(visual.ln_post, x[:, 0, :])  # the norm is per token: only the class token's
    else:
        x, _ = visual._pool(x)  # open_clip: class token, average or attention pool, its norm order
    return x @ visual.proj.to(x.dtype) if visual.proj is not None else x


def patch_embed(conv, images):
    """conv1 (kernel = stride = p, no bias) as one GEMM: [N, 3, H, W] -> [N, (H/p)(W/p), width]."""
    N, C, H, W = images.shape
    p = conv.kernel_size[0]
    gh, gw = H // p, W // p
    patches = images[:, :, :gh * p, :gw * p].reshape(N, C, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(N * gh * gw, C * p * p)
    weight = conv.weight.reshape(conv.weight.shape[0], -1)
    return torch.mm(patches, weight.t()).view(N, gh * gw, -1)


PATCH_MODES = ("gemm", "conv", "channels_last")


def vit_forward(visual, images, patches="conv"):
    """CLIP's VisionTransformer.forward, fused and without autograd buffers (call it under
    no_grad or inference_mode). ``patches``: the patch embedding by CLIP's conv ("conv", the
    default: oneDNN's conv was the fastest in e2mim-benchmark --encoders), as one GEMM over
    the flattened patches ("gemm"), or the conv on channels-last copies ("channels_last")."""
    dtype = visual.conv1.weight.dtype
    images = images.type(dtype)
    if patches == "gemm":
        x = patch_embed(visual.conv1, images)
    elif patches in ("conv", "channels_last"):
        if patches == "channels_last":
            cl = torch.channels_last
            x = F.conv2d(images.contiguous(memory_format=cl), visual.conv1.weight.contiguous(memory_format=cl),
                         stride=visual.conv1.stride)
        else:
            x = visual.conv1(images)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    else:
        raise ValueError(f"patches={patches!r}; valid: {', '.join(PATCH_MODES)}")
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    if type(visual.ln_pre) is not nn.Identity:  # open_clip's no_ln_pre models have none
        x = _layer_norm(visual.ln_pre, x)
    kind = attention_kind(visual.transformer)
    for block in visual.transformer.resblocks:
        x = block_forward(block, x, kind, inplace=True)
    return pool_vit(visual, x)
