"""The one CLIP loader: by name from the CLIP cache folder (checksum verified), from a
checkpoint path (plain state dict or JIT archive), randomly initialised by shape, or any
open_clip model (``open_clip:MODEL:WEIGHTS``: LAION, DataComp, MetaCLIP, SigLIP, EVA-CLIP...).

Never downloads: a missing file is an error that says where the file comes from. Every model
is described for the shared encoders by ``towers.describe`` (with its tokenizer).
"""
import hashlib
import logging
import os
import warnings
from collections import namedtuple

import torch
import torch.nn as nn

from e2mim_engine.errors import ConfigError, WeightsError
from e2mim_engine.utils import logger

from . import towers as towers_lib

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
    "compworld-tiny-deep": LocalBackbone(
        "tiny_clip_compworld_deep_seed0.pt",
        "a6d2561255c445dadd4c9a2e599fe35e73387ca85b12c63e206c22fb6435e0fd",
        "the CPU bench's tiny CLIP: compworld-tiny with a 6-layer text tower (pretraining seed 0)"),
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


OPEN_CLIP_PREFIX = "open_clip:"
# The weight files open_clip publishes on the Hugging Face Hub, in its order of preference.
HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _open_clip():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import open_clip
    return open_clip


def parse_open_clip(backbone):
    """``open_clip:MODEL:WEIGHTS`` -> (MODEL, WEIGHTS); MODEL may be ``hf-hub:org/name`` (whose
    weights come with it: WEIGHTS is then optional)."""
    rest = backbone[len(OPEN_CLIP_PREFIX):]
    if rest.startswith("hf-hub:"):
        repo, _, weights = rest[len("hf-hub:"):].partition(":")
        return "hf-hub:" + repo, weights or "hub"
    model, sep, weights = rest.rpartition(":")
    if not sep or not model or not weights:
        raise ConfigError(f"--backbone '{backbone}': write open_clip:MODEL:WEIGHTS, e.g. open_clip:ViT-B-16:openai, "
                          f"open_clip:ViT-B-16-SigLIP:webli, open_clip:EVA02-B-16:merged2b_s8b_b131k, "
                          f"open_clip:ViT-B-16:random or open_clip:ViT-L-14:/path/to/weights.safetensors.")
    return model, weights


def _hf_cached(repo, filename):
    """Path of ``filename`` of the Hub repository ``repo`` in the local Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache
    path = try_to_load_from_cache(repo, filename)
    return path if isinstance(path, str) and os.path.isfile(path) else None


def _hf_cache_dir():
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


def open_clip_config(model):
    """The open_clip model config (dict) of MODEL, from open_clip's registry or the Hub cache."""
    if model.startswith("hf-hub:"):
        repo = model[len("hf-hub:"):]
        path = _hf_cached(repo, "open_clip_config.json")
        if path is None:
            raise WeightsError(
                f"open_clip model '{model}': its config is not in the local Hugging Face cache ({_hf_cache_dir()}). "
                f"This project never downloads; on a machine with network run `huggingface-cli download {repo}` "
                f"(or huggingface_hub.snapshot_download('{repo}')) and copy the cache folder "
                f"models--{repo.replace('/', '--')} into {_hf_cache_dir()} here (or set $HF_HUB_CACHE).")
        import json
        with open(path) as f:
            cfg = json.load(f)
        return cfg.get("model_cfg", cfg)
    oc = _open_clip()
    cfg = oc.get_model_config(model)
    if cfg is None:
        names = oc.list_models()
        raise ConfigError(f"Unknown open_clip model '{model}' ({len(names)} known, e.g. ViT-B-16, ViT-L-14, "
                          f"ViT-B-16-SigLIP, EVA02-B-16, ViT-H-14-quickgelu; open_clip.list_models() lists them), "
                          f"or write hf-hub:org/name for a model on the Hugging Face Hub.")
    return cfg


def open_clip_weight_file(model, weights, cache_dir=""):
    """(path of the weight file, the open_clip pretrained config) for WEIGHTS: a file path, an
    open_clip pretrained tag found in the open_clip/CLIP or Hugging Face caches, or None for
    'random'. A missing file is a WeightsError saying which file to put where."""
    if weights == "random":
        return None, {}
    path = os.path.expanduser(weights)
    if os.path.isfile(path):
        return path, {}
    if model.startswith("hf-hub:"):
        repo = model[len("hf-hub:"):]
        found = [p for p in (_hf_cached(repo, f) for f in HF_WEIGHT_FILES) if p]
        if found:
            return found[0], {}
        raise WeightsError(
            f"open_clip weights of '{model}' are not in the local Hugging Face cache ({_hf_cache_dir()}): looked "
            f"for {' or '.join(HF_WEIGHT_FILES)} of {repo}. This project never downloads; on a machine with network "
            f"run `huggingface-cli download {repo}` and copy the cache folder models--{repo.replace('/', '--')} "
            f"into {_hf_cache_dir()} here (or set $HF_HUB_CACHE), or pass the file as open_clip:{model}:/path/to/file.")
    oc = _open_clip()
    pcfg = oc.get_pretrained_cfg(model, weights)
    if not pcfg:
        tags = oc.list_pretrained_tags_by_model(model)
        raise ConfigError(f"'{weights}' is neither an open_clip pretrained tag of {model} (its tags: "
                          f"{', '.join(tags) or 'none'}), nor an existing weight file, nor 'random'.")
    places = []
    hub = pcfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        files = [filename] if filename else list(HF_WEIGHT_FILES)
        for f in files:
            p = _hf_cached(repo, f)
            if p:
                return p, pcfg
        places.append(f"{' or '.join(files)} of the Hugging Face repository {repo} in the Hugging Face cache "
                      f"{_hf_cache_dir()} (`huggingface-cli download {repo} {files[0]}` on a machine with network, "
                      f"then copy the folder models--{repo.replace('/', '--')} here or set $HF_HUB_CACHE)")
    url = pcfg.get("url", "")
    if url:
        folders = [clip_cache_dir(cache_dir), os.path.expanduser("~/.cache/clip")]
        for folder in dict.fromkeys(folders):
            p = os.path.join(folder, os.path.basename(url))
            if os.path.isfile(p):
                return p, pcfg
        places.append(f"{os.path.basename(url)} (from {url}) in {folders[0]}")
    raise WeightsError(
        f"The open_clip weights {model}:{weights} are not on this machine, and this project never downloads. "
        f"Put {' or '.join(places)}; or pass any local copy of the file as --backbone "
        f"open_clip:{model}:/path/to/file.")


def _read_state_dict(path):
    """A weight file as a state dict: safetensors, OpenAI's JIT archive or a torch.save'd dict."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        sd = load_file(path)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                sd = torch.jit.load(path, map_location="cpu").state_dict()
            except RuntimeError:
                sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    sd = {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}
    for k in ("input_resolution", "context_length", "vocab_size"):
        sd.pop(k, None)
    return sd


def open_clip_tokenizer(model, text_cfg):
    """The model's tokenizer as a towers.Tokenizer: open_clip's CLIP BPE, or the Hugging Face
    tokenizer its config names (SigLIP's), read from the local cache only."""
    oc = _open_clip()
    ctx = int(text_cfg.get("context_length", 77))
    hf_name = text_cfg.get("hf_tokenizer_name")
    if not hf_name:
        bpe = oc.tokenizer.SimpleTokenizer(context_length=ctx)
        return towers_lib.Tokenizer(bpe.encode, ctx, bpe.sot_token_id, bpe.eot_token_id, 0, f"{model} (CLIP BPE)")
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hf = oc.tokenizer.HFTokenizer(hf_name, context_length=ctx, local_files_only=True, **kwargs)
    except Exception as e:  # noqa: BLE001 - any failure means the tokenizer files are not here
        raise WeightsError(
            f"The tokenizer of open_clip model '{model}' ({hf_name} on the Hugging Face Hub) is not in the local "
            f"Hugging Face cache ({_hf_cache_dir()}; {type(e).__name__}: {str(e)[:120]}). This project never "
            f"downloads; on a machine with network run `huggingface-cli download {hf_name} tokenizer.json "
            f"tokenizer_config.json special_tokens_map.json spiece.model` (the files it has) and copy the folder "
            f"models--{hf_name.replace('/', '--')} into {_hf_cache_dir()} here, or set $HF_HUB_CACHE.") from None
    tok = hf.tokenizer

    def encode(text):
        return tok(hf.clean_fn(text), add_special_tokens=False).input_ids

    plain, full = encode("a"), tok(hf.clean_fn("a")).input_ids
    start = full.index(plain[0]) if plain and plain[0] in full else 0
    sot = full[0] if start == 1 else None
    eot = full[start + len(plain)] if len(full) > start + len(plain) else tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return towers_lib.Tokenizer(encode, ctx, sot, eot, pad, f"{model} ({hf_name})")


def _low_precision_open_clip(model, dtype):
    """open_clip's own low-precision layout: native towers as CLIP (weights in ``dtype``,
    LayerNorms computing in float32), timm towers wholly in ``dtype``."""
    oc = _open_clip()
    trunk = getattr(model.visual, "trunk", None)
    if trunk is not None:
        trunk.to(dtype)
    for m in model.modules():
        if type(m) is oc.transformer.LayerNorm:
            m.__class__ = oc.transformer.LayerNormFp32  # computes in float32, as CLIP's LayerNorm
    return cast_clip(model, dtype)


def build_open_clip(backbone, cache_dir=""):
    """(the open_clip model in float32 eval mode, its tokenizer) for ``open_clip:MODEL:WEIGHTS``."""
    model_name, weights = parse_open_clip(backbone)
    cfg = open_clip_config(model_name)
    if weights == "hub" and not model_name.startswith("hf-hub:"):
        raise ConfigError(f"--backbone '{backbone}': 'hub' weights are for hf-hub: models only.")
    path, pcfg = open_clip_weight_file(model_name, weights, cache_dir)
    tokenizer = open_clip_tokenizer(model_name, cfg["text_cfg"])
    oc = _open_clip()
    quick_gelu = bool(pcfg.get("quick_gelu", False))
    create_name = model_name
    if model_name.startswith("hf-hub:"):  # the config came from the cache: build from it, offline
        create_name = "e2mim-hf-hub--" + model_name[len("hf-hub:"):].replace("/", "--")
        oc.factory._MODEL_CONFIGS[create_name] = cfg
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # open_clip logs "initialized randomly" before the weights are loaded here
            logging.disable(logging.WARNING)
            torch.manual_seed(0)  # a random model is fixed by its name (and open_clip's init)
            model = oc.create_model(create_name, pretrained=None, force_quick_gelu=quick_gelu,
                                    pretrained_image=False, pretrained_text=False)
    except RuntimeError as e:
        raise ConfigError(f"open_clip cannot build '{model_name}': {str(e)[:300]}") from None
    finally:
        logging.disable(logging.NOTSET)
    if path is not None:
        logger.info(f"Loading open_clip {model_name} from {path}")
        try:
            if path.endswith((".npz", ".npy")):
                oc.convert.load_big_vision_weights(model, path)
            else:
                sd = _read_state_dict(path)
                if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
                    sd = oc.model.convert_to_custom_text_state_dict(sd)
                if "logit_bias" not in sd and getattr(model, "logit_bias", None) is not None:
                    sd["logit_bias"] = torch.zeros_like(model.logit_bias)
                oc.model.resize_pos_embed(sd, model)
                model.load_state_dict(sd, strict=True)
        except Exception as e:  # noqa: BLE001 - any failure means the file is not this model's weights
            raise WeightsError(f"Cannot load {path} into open_clip {model_name} ({type(e).__name__}: "
                               f"{str(e)[:200]}). Expected that model's weights (open_clip state dict, "
                               f"safetensors, OpenAI JIT archive or big_vision .npz).") from None
    else:
        logger.info(f"Building a RANDOMLY INITIALISED open_clip {model_name} ({backbone}): numbers are not meaningful")
    return model.float().eval(), tokenizer


def open_clip_preprocessing(backbone):
    """{INPUT key: value} an open_clip backbone's model was trained with: its input size (from
    the model config) and pixel mean/std (from its weights tag's config; open_clip's defaults,
    CLIP's values, for files and random weights). Empty for CLIP names."""
    if not backbone.startswith(OPEN_CLIP_PREFIX):
        return {}
    model, weights = parse_open_clip(backbone)
    cfg = open_clip_config(model)
    size = cfg["vision_cfg"].get("image_size", 224)
    size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    oc = _open_clip()
    pre = dict(cfg.get("preprocess_cfg") or {})
    if weights not in ("random", "hub") and not os.path.isfile(os.path.expanduser(weights)):
        pre.update(oc.get_pretrained_cfg(model, weights))
    mean = pre.get("mean", oc.constants.OPENAI_DATASET_MEAN)
    std = pre.get("std", oc.constants.OPENAI_DATASET_STD)
    return {"SIZE": size, "PIXEL_MEAN": [float(v) for v in mean], "PIXEL_STD": [float(v) for v in std]}


def with_backbone_preprocessing(cfg):
    """``cfg`` with INPUT.SIZE, PIXEL_MEAN and PIXEL_STD of an open_clip backbone's model where
    the config differs (a published ViT-B/16 yaml on SigLIP-256 or EVA02-L-14-336), said in the
    log; the same cfg for CLIP names (their yaml files are the published ones)."""
    want = open_clip_preprocessing(cfg.MODEL.BACKBONE.NAME)
    changed = {k: v for k, v in want.items()
               if [float(x) for x in cfg.INPUT[k]] != [float(x) for x in v]}
    if not changed:
        return cfg
    logger.info(f"{cfg.MODEL.BACKBONE.NAME}: the model's preprocessing replaces the config's: " + ", ".join(
        f"INPUT.{k} {tuple(cfg.INPUT[k]) if k == 'SIZE' else list(cfg.INPUT[k])} -> {v}" for k, v in changed.items()))
    cfg = cfg.clone()
    cfg.defrost()
    for k, v in changed.items():
        cfg.INPUT[k] = v
    cfg.freeze()
    return cfg


def backbone_identity(backbone):
    """What else fixes an open_clip backbone's frozen features besides its name and checksum
    (part of the feature caches' key): the model, the weights tag, and the open_clip and timm
    versions that build it (a random model's init, a config's meaning). Empty for CLIP names."""
    if not backbone.startswith(OPEN_CLIP_PREFIX):
        return {}
    import importlib.metadata as md
    model, weights = parse_open_clip(backbone)
    return {"open_clip_model": model, "open_clip_weights": weights,
            "open_clip_version": md.version("open_clip_torch"), "timm_version": md.version("timm")}


def image_resolution(model):
    """The image size (pixels, square) the model's image encoder was built for."""
    v = model.visual
    size = getattr(v, "input_resolution", None) or getattr(v, "image_size", None)
    return size[0] if isinstance(size, (tuple, list)) else size


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
    if backbone.startswith(OPEN_CLIP_PREFIX):
        path, _ = open_clip_weight_file(*parse_open_clip(backbone), cache_dir)
        return None if path is None else _once_per_file(_sha256, path)
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
                          f"name: {', '.join(clip.available_models())}), a weight file path, "
                          f"random:<shape> ({', '.join(CLIP_SPECS)}), or open_clip:MODEL:WEIGHTS.")
    tokenizer = None
    if backbone.startswith(OPEN_CLIP_PREFIX):
        model, tokenizer = build_open_clip(backbone, cache_dir)
    elif backbone.startswith(RANDOM_PREFIX):
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
            f"weight file, nor random:<shape> ({', '.join(CLIP_SPECS)}), nor open_clip:MODEL:WEIGHTS.")
    res = image_resolution(model)
    if input_size is not None and tuple(input_size) != (res, res):
        raise ConfigError(f"INPUT.SIZE {tuple(input_size)} does not match the CLIP image resolution "
                          f"{res}; set INPUT.SIZE ({res}, {res}).")
    for p in model.parameters():
        p.requires_grad_(False)
    if dtype != torch.float32:
        if tokenizer is not None:
            _low_precision_open_clip(model, dtype)
        else:
            cast_clip(model, dtype)
    model = model.to(device).eval()
    t = towers_lib.describe(model, tokenizer)
    if tokenizer is not None:
        _log_encoder_paths(backbone, model, t)
    return model


def _log_encoder_paths(backbone, model, t):
    """One line on how an open_clip model's towers run (the fused blocks, or their own forward)."""
    from . import fused
    text = "fused" if fused.supports_fused(t.transformer) else "its own blocks (not the fused layout)"
    image = "fused" if fused.supports_fused_visual(model.visual) else (
        f"its own forward ({t.vision_kind}: fused attention in timm)" if t.vision_kind == "timm"
        else f"its own forward ({t.vision_kind})")
    logger.info(f"{backbone}: text tower {text} ({'causal, EOT' if t.truncates else 'full attention, ' + t.pool}"
                f" pooling, context {t.context_length}); image tower {image}")
