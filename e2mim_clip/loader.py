"""The one CLIP loader: by name from the CLIP cache folder (checksum verified), from a
checkpoint path (plain state dict or JIT archive), or randomly initialised by shape.

Never downloads: a missing file is an error that says where the file comes from.
"""
import hashlib
import os
import warnings
from collections import namedtuple

import torch
import torch.nn as nn

from e2mim_engine.errors import ConfigError, WeightsError
from e2mim_engine.utils import logger

with warnings.catch_warnings():
    # clip imports pkg_resources, which warns about its own deprecation.
    warnings.simplefilter("ignore")
    import clip  # noqa: E402
    from clip import model as clip_model_lib  # noqa: E402

# Architecture of each CLIP, as constructor arguments of clip.model.CLIP. Used to build
# randomly initialised models ("random:<name>") for tests, the demo and the benchmark.
CLIP_SPECS = {
    # Small enough for CPU tests: width 128, 2 layers, 224 input with 32-pixel patches.
    "tiny": dict(embed_dim=128, image_resolution=224, vision_layers=2, vision_width=128,
                 vision_patch_size=32, context_length=77, vocab_size=49408,
                 transformer_width=128, transformer_heads=2, transformer_layers=2),
    "RN50": dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
                 vision_patch_size=None, context_length=77, vocab_size=49408,
                 transformer_width=512, transformer_heads=8, transformer_layers=12),
    "ViT-B/32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=32, context_length=77, vocab_size=49408,
                     transformer_width=512, transformer_heads=8, transformer_layers=12),
    "ViT-B/16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=16, context_length=77, vocab_size=49408,
                     transformer_width=512, transformer_heads=8, transformer_layers=12),
    "ViT-L/14": dict(embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024,
                     vision_patch_size=14, context_length=77, vocab_size=49408,
                     transformer_width=768, transformer_heads=12, transformer_layers=12),
}
RANDOM_PREFIX = "random:"


# Backbones made on this machine rather than downloaded: the tiny CLIPs of the generated worlds,
# built by an explicit step (``e2mim-tiny-clip build``, which pretrains with pinned numerics so
# every x86 machine gets the same weights) into the e2mim cache folder. The loader only reads
# them: resolving a name never imports a dataset or trains anything. ``sha256`` is the weights'
# checksum (``weights_sha256``) of the build the documented tables were made with.
LocalBackbone = namedtuple("LocalBackbone", ["file", "sha256", "about"])
LOCAL_BACKBONES = {
    "compworld-tiny": LocalBackbone(
        "tiny_clip_compworld_seed0.pt",
        "713cae98bba2934c7b5e5f8728d1de5b0c977eee9f32f35235bb32e4b0f54f95",
        "the tiny CLIP of the CompWorld worlds (pretraining seed 0)"),
}


def e2mim_cache_dir(cache_dir=None):
    return os.path.expanduser(cache_dir or os.environ.get("E2MIM_CACHE_DIR") or "~/.cache/e2mim")


def local_backbone_path(name, cache_dir=None):
    """Where the named local backbone's weight file lives (whether it is built or not)."""
    return os.path.join(e2mim_cache_dir(cache_dir), LOCAL_BACKBONES[name].file)


def _built_local_backbone(name):
    path = local_backbone_path(name)
    if not os.path.isfile(path):
        raise WeightsError(
            f"The backbone '{name}' ({LOCAL_BACKBONES[name].about}) is not built on this machine: looked for "
            f"{path}. Build it once with `e2mim-tiny-clip build {name}` (pretraining on the CPU, a few "
            f"minutes; the demo and e2mim-bench do this for you), or set $E2MIM_CACHE_DIR to the folder "
            f"that holds it.")
    return path


def weights_sha256(state_dict):
    """Checksum of a state dict's content (names, dtypes, shapes, bytes), the same whatever
    torch version serialised the file."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        v = state_dict[k].detach().cpu().contiguous()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def clip_cache_dir(cfg_dir=""):
    return os.path.expanduser(cfg_dir or os.environ.get("CLIP_CACHE_DIR") or "~/.cache/clip")


def build_random_clip(name, seed=0):
    """A randomly initialised CLIP of a known shape. The init is seeded on its own so a
    training run and a later --eval-only run see the same frozen weights."""
    if name not in CLIP_SPECS:
        raise ConfigError(f"Unknown CLIP shape '{name}' in '{RANDOM_PREFIX}{name}'; valid: "
                          f"{', '.join(RANDOM_PREFIX + n for n in CLIP_SPECS)}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = clip_model_lib.CLIP(**CLIP_SPECS[name])
    return model.float().eval()


def _sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def resolve_weight_file(name, cache_dir=""):
    """Path of the weight file for a CLIP name, checked against the checksum in its URL."""
    url = clip.clip._MODELS[name]
    folder = clip_cache_dir(cache_dir)
    path = os.path.join(folder, os.path.basename(url))
    expected = url.split("/")[-2]
    if not os.path.isfile(path):
        raise WeightsError(
            f"CLIP weights for '{name}' not found: looked for {path}. This project never downloads "
            f"weights; fetch the file from {url} (the address OpenAI's clip package uses) and put it "
            f"in {folder}, or point MODEL.BACKBONE.CACHE_DIR or $CLIP_CACHE_DIR to the folder that "
            f"holds it, or pass the file's path as --backbone.")
    if _sha256(path) != expected:
        raise WeightsError(
            f"The CLIP weight file {path} is corrupt or incomplete: its SHA256 does not match "
            f"{expected}. Delete it and fetch it again from {url}.")
    return path


def _load_file(path):
    """OpenAI's JIT archive or a plain state dict. Built with clip's build_model, then the
    weights are copied again in float32 (build_model stores them in fp16 on the way)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
            try:
                state_dict = torch.jit.load(path, map_location="cpu").state_dict()
            except RuntimeError:
                state_dict = torch.load(path, map_location="cpu", weights_only=True)
            model = clip_model_lib.build_model(dict(state_dict)).float()
        meta = ("input_resolution", "context_length", "vocab_size")
        model.load_state_dict({k: v for k, v in state_dict.items() if k not in meta})
    except Exception as e:  # noqa: BLE001 - any failure means the file is unusable as CLIP
        raise WeightsError(
            f"Cannot load CLIP weights from {path} ({type(e).__name__}: {str(e)[:200]}). Expected "
            f"OpenAI's JIT archive or a plain CLIP state dict saved with torch.save.") from None
    return model.eval()


def cast_clip(model, dtype):
    """Store weights in ``dtype`` except LayerNorms (CLIP's LayerNorm computes in fp32),
    as clip.model.convert_weights does for fp16."""
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            continue
        for p in m.parameters(recurse=False):
            p.data = p.data.to(dtype)
    return model


def _once_per_file(digest, path, _cache={}):
    """``digest(path)``, computed once per file version (path, size, modification time)."""
    key = (digest.__name__, os.path.abspath(path), os.path.getsize(path), os.path.getmtime(path))
    if key not in _cache:
        _cache[key] = digest(path)
    return _cache[key]


def _weights_of_file(path):
    return weights_sha256(torch.load(path, map_location="cpu", weights_only=True))


def weights_file_sha256(path):
    """``weights_sha256`` of a weight file (a plain state dict)."""
    return _once_per_file(_weights_of_file, path)


def backbone_report(backbone, cache_dir=""):
    """results.json's word on the weights: their checksum, and for a local backbone the
    documented one and whether they are the same (tables are comparable only then)."""
    out = {"backbone_sha256": backbone_checksum(backbone, cache_dir)}
    if backbone in LOCAL_BACKBONES:
        out["backbone_documented_sha256"] = LOCAL_BACKBONES[backbone].sha256
        out["backbone_comparable"] = out["backbone_sha256"] == LOCAL_BACKBONES[backbone].sha256
    return out


def backbone_checksum(backbone, cache_dir=""):
    """SHA256 of the weights MODEL.BACKBONE.NAME stands for (part of a run's identity), or
    None for a random CLIP (its weights are fixed by its shape and seed)."""
    if not backbone or backbone.startswith(RANDOM_PREFIX):
        return None
    if backbone in clip.available_models():
        return clip.clip._MODELS[backbone].split("/")[-2]  # verified against the file by load_clip
    if backbone in LOCAL_BACKBONES:
        return weights_file_sha256(_built_local_backbone(backbone))
    path = os.path.expanduser(backbone)
    return _once_per_file(_sha256, path) if os.path.isfile(path) else None


def load_clip(backbone, device, dtype=torch.float32, cache_dir="", input_size=None):
    """Return a frozen CLIP in eval mode on ``device`` with weights in ``dtype``."""
    if not backbone:
        raise ConfigError("MODEL.BACKBONE.NAME is empty: pass --backbone ViT-B/16 (or another CLIP "
                          f"name: {', '.join(clip.available_models())}), a weight file path, or "
                          f"random:<shape> ({', '.join(CLIP_SPECS)}).")
    if backbone.startswith(RANDOM_PREFIX):
        model = build_random_clip(backbone[len(RANDOM_PREFIX):])
        logger.info(f"Building a RANDOMLY INITIALISED CLIP ({backbone}): numbers are not meaningful")
    elif backbone in LOCAL_BACKBONES:
        path = _built_local_backbone(backbone)
        logger.info(f"Loading CLIP ({backbone}) from {path}")
        model = _load_file(path)
        got, want = weights_file_sha256(path), LOCAL_BACKBONES[backbone].sha256
        if got != want:
            logger.warning(
                f"WARNING: {path} is not the documented build of '{backbone}' (weights sha256 {got[:16]}…, "
                f"documented {want[:16]}…): results not comparable with the documented tables. This "
                f"happens when it was pretrained by another version of this project or outside the pinned "
                f"stack (constraints.txt) or numerics (`e2mim-tiny-clip build --force {backbone}` rebuilds it).")
    elif backbone in clip.available_models():
        path = resolve_weight_file(backbone, cache_dir)
        logger.info(f"Loading CLIP ({backbone}) from {path}")
        model = _load_file(path)
    elif os.path.isfile(os.path.expanduser(backbone)):
        logger.info(f"Loading CLIP from {backbone}")
        model = _load_file(os.path.expanduser(backbone))
    else:
        raise WeightsError(
            f"MODEL.BACKBONE.NAME='{backbone}' is neither a CLIP name ({', '.join(clip.available_models())}), "
            f"nor a locally built one ({', '.join(LOCAL_BACKBONES)}), nor an existing "
            f"weight file, nor random:<shape> ({', '.join(CLIP_SPECS)}).")
    res = model.visual.input_resolution
    if input_size is not None and tuple(input_size) != (res, res):
        raise ConfigError(f"INPUT.SIZE {tuple(input_size)} does not match the CLIP image resolution "
                          f"{res}; set INPUT.SIZE ({res}, {res}).")
    for p in model.parameters():
        p.requires_grad_(False)
    if dtype != torch.float32:
        cast_clip(model, dtype)
    return model.to(device).eval()
