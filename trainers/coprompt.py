"""CoPrompt: consistency-guided prompt learning (Roy & Etemad, ICLR 2024).

MaPLe's coupled deep prompts (e2mim_clip.deep_prompts.MaPLePromptLearner: N_CTX language tokens
per layer for the first PROMPT_DEPTH layers, each mapped into the vision branch) plus an adapter
on each tower's output feature: A(x) = ReLU(W2 ReLU(W1 x)), W1 [D/4, D], W2 [D, D/4], no biases
(D: the joint embedding width), blended into the feature with a fixed ratio,

    v = 0.1 A_v(v') + 0.9 v'        t = 0.2 A_t(t') + 0.8 t'     (then both normalized)

where v', t' are the prompted encoders' features. Training perturbs the inputs of a frozen
teacher, the pretrained CLIP, and asks the model to stay consistent with it:

    loss = CE(s v.t, y) + W * [(1 - mean_c cos(t_c, d_c)) + (1 - mean_i cos(v_i, u_i))]

s is CLIP's (frozen) logit scale; v comes from the first augmented view of each image and u,
the frozen image encoder's feature, from the second view (DATALOADER.K_TRANSFORMS 2, with the
published RandAugment: INPUT.TRANSFORMS ["randaugment", "normalize"]); d_c is the frozen text
encoder's normalized feature of one LLM-written description of class c, the description index
drawn per step with Python's random.randint and shared by every class (so each class needs as
many descriptions). DISTILL "mse" replaces each cosine term by the mean squared error, as the
published code allows. With K_TRANSFORMS 1 the teacher sees the same view (logged).

Only the prompts, the couplings and the two adapters learn ("prompt_learner"); CLIP is
frozen, and the frozen teacher is the same CLIP run without prompts (no second copy).
Inference: s v.t with the adapters, on any classes.

The descriptions (TRAINER.COPROMPT.DESCRIPTIONS): a folder of ``<name>_prompt.json`` files in
the published format, {"class name": ["description", ...], ...} (class names with spaces).
``<name>`` is the published file name of the dataset (DESCRIPTION_FILES; ``caltech`` for
Caltech101, ``fgvc`` for FGVCAircraft ...), else DATASET.NAME in lower case. The authors ship
them in gpt_file/ of github.com/ShuvenduRoy/CoPrompt (10 of the 11 base-to-new datasets, no
ImageNet); they are not part of this repository. "templates" uses CLIP's 7 ensemble templates
and the dataset's template as the descriptions instead (not the published recipe: for data
without LLM descriptions, such as the demo and the CPU bench). They are read and encoded at the
first training step, so an evaluation never needs them.

The authors' per-dataset settings (their trainers/constants.py: PROMPT_DEPTH, N_CTX and W per
dataset, 5 epochs for Food101) apply after the method yaml while DATASET_SETTINGS is True. The
published train.py applies them even after the command-line pairs; here command-line pairs
override them (the same run unless a pair sets one of those keys).

Config keys. The published layout loads unchanged: TRAINER.CoPrompt.{N_CTX, CTX_INIT, PREC,
PROMPT_DEPTH} and TRAINER.{W, DISTILL} are read as TRAINER.COPROMPT.* (adapt_cfg_sources).
Defaults the published code's: TRAINER.COPROMPT.{N_CTX=2, CTX_INIT="a photo of a", PREC="fp16",
PROMPT_DEPTH=9, W=8.0, DISTILL="cosine"}; ours: DESCRIPTIONS="", IMAGE_ADAPTER_RATIO=0.1,
TEXT_ADAPTER_RATIO=0.2, ADAPTER_REDUCTION=4 (the published constants), DATASET_SETTINGS=True.
"""
import json
import os
import random
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from e2mim_clip.deep_prompts import DeepPromptCLIP, DeepPromptTrainer, MaPLePromptLearner, coupled_depth
from e2mim_clip.prompting import cosine_consistency, tokenize
from e2mim_clip.templates import ENSEMBLE_TEMPLATES, dataset_template
from e2mim_clip.towers import towers
from e2mim_engine.checkpoint import PublishedFormat
from e2mim_engine.config import with_dataset_settings
from e2mim_engine.errors import ConfigError, DataError
from e2mim_engine.method_config import AT_LEAST_0, IN_0_1, POSITIVE_INT, config_node, option
from e2mim_engine.trainer import TRAINER_REGISTRY
from e2mim_engine.utils import logger

# The authors' per-dataset settings (ShuvenduRoy/CoPrompt, trainers/constants.py).
PUBLISHED_DATASET_SETTINGS = {
    "ImageNet": {"PROMPT_DEPTH": 12, "N_CTX": 4, "W": 8.0},
    "Caltech101": {"PROMPT_DEPTH": 12, "N_CTX": 4, "W": 4.0},
    "OxfordPets": {"PROMPT_DEPTH": 12, "N_CTX": 2, "W": 0.1},
    "StanfordCars": {"PROMPT_DEPTH": 12, "N_CTX": 4, "W": 4.0},
    "OxfordFlowers": {"PROMPT_DEPTH": 9, "N_CTX": 4, "W": 8.0},
    "Food101": {"PROMPT_DEPTH": 9, "N_CTX": 4, "W": 0.5, "OPTIM.MAX_EPOCH": 5},
    "FGVCAircraft": {"PROMPT_DEPTH": 9, "N_CTX": 4, "W": 2.0},
    "SUN397": {"PROMPT_DEPTH": 12, "N_CTX": 4, "W": 8.0},
    "DescribableTextures": {"PROMPT_DEPTH": 12, "N_CTX": 2, "W": 8.0},
    "EuroSAT": {"PROMPT_DEPTH": 12, "N_CTX": 2, "W": 0.1},
    "UCF101": {"PROMPT_DEPTH": 12, "N_CTX": 4, "W": 2.0},
}
# The published description file of each dataset: <name>_prompt.json.
DESCRIPTION_FILES = {
    "Caltech101": "caltech", "DescribableTextures": "dtd", "EuroSAT": "eurosat", "FGVCAircraft": "fgvc",
    "Food101": "food101", "ImageNet": "imagenet", "ImageNetA": "imagenet_a", "ImageNetR": "imagenet_r",
    "ImageNetSketch": "imagenet_sketch", "ImageNetV2": "imagenetv2", "OxfordFlowers": "oxford_flowers",
    "OxfordPets": "oxford_pets", "StanfordCars": "stanford_cars", "SUN397": "sun397", "UCF101": "ucf101",
}
PUBLISHED_KEYS = ("N_CTX", "CTX_INIT", "PREC", "PROMPT_DEPTH")  # under TRAINER.CoPrompt
PUBLISHED_TOP_KEYS = ("W", "DISTILL")                          # directly under TRAINER
WHERE_TO_GET = ("The authors' files are gpt_file/<name>_prompt.json of github.com/ShuvenduRoy/CoPrompt (10 of the 11 "
                "base-to-new datasets; none for ImageNet); or write one in that format, {\"class name\": "
                "[\"description\", ...]} with the same number of descriptions per class")


@dataclass(frozen=True)
class CoPromptConfig:
    """TRAINER.COPROMPT's own keys (besides MaPLe's), parsed once per run."""
    w: float = option(8.0, check=AT_LEAST_0)   # weight of the two consistency terms
    distill: str = option("cosine", choices=("cosine", "mse"))
    descriptions: str = option("")             # folder of <name>_prompt.json, or "templates"
    image_adapter_ratio: float = option(0.1, check=IN_0_1)
    text_adapter_ratio: float = option(0.2, check=IN_0_1)
    adapter_reduction: int = option(4, check=POSITIVE_INT)
    dataset_settings: bool = option(True, check=(lambda v: isinstance(v, bool), "must be True or False"))


class Adapter(nn.Module):
    """ReLU(W2 ReLU(W1 x)) without biases; ``fc`` has the published slots (fc.0, fc.2)."""

    def __init__(self, dim, reduction):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(dim, dim // reduction, bias=False), nn.ReLU(),
                                nn.Linear(dim // reduction, dim, bias=False), nn.ReLU())

    def blend(self, x, ratio):
        """ratio * A(x) + (1 - ratio) * x, in float32."""
        x = x.float()
        return ratio * self.fc(x) + (1 - ratio) * x


class CoPromptLearner(MaPLePromptLearner):
    """MaPLe's prompts and couplings, then the image and the text adapters (drawn in this
    order, as the published code draws them)."""

    def __init__(self, clip_model, classnames, n_ctx, ctx_init, depth, reduction, key):
        super().__init__(clip_model, classnames, n_ctx, ctx_init, depth, key=key)
        dim = towers(clip_model).embed_dim
        if dim // reduction < 1:
            raise ConfigError(f"TRAINER.COPROMPT.ADAPTER_REDUCTION {reduction} leaves no hidden unit of the "
                              f"adapters on this backbone's {dim}-wide features.")
        self.adapter_image = Adapter(dim, reduction).to(self.ctx.device)
        self.adapter_text = Adapter(dim, reduction).to(self.ctx.device)


class CoPromptCLIP(DeepPromptCLIP):
    """MaPLe's model with the adapters blended into both features (normalized)."""

    ratios = (0.1, 0.2)  # (image, text), set by the trainer

    def text_features(self, normalize=True):
        t = self.prompt_learner.adapter_text.blend(super().text_features(normalize=False), self.ratios[1])
        return F.normalize(t, dim=-1) if normalize else t

    def image_features(self, image, normalize=True):
        v = self.prompt_learner.adapter_image.blend(super().image_features(image, normalize=False), self.ratios[0])
        return F.normalize(v, dim=-1) if normalize else v


def coprompt_losses(logits, label, text, text_teacher, image, image_teacher, w, distill="cosine"):
    """The CoPrompt loss terms (float32, features normalized): dict of ce, text, image, loss."""
    ce = F.cross_entropy(logits, label)
    if distill == "cosine":
        text_term, image_term = cosine_consistency(text, text_teacher), cosine_consistency(image, image_teacher)
    else:
        text_term, image_term = F.mse_loss(text, text_teacher), F.mse_loss(image, image_teacher)
    return {"loss": ce + w * (text_term + image_term), "ce": ce, "text": text_term, "image": image_term}


def read_descriptions(folder, dataset_name, classnames):
    """{class name: [descriptions]} of the run's classes from ``folder``/<name>_prompt.json;
    a DataError that says what is missing and where the files come from."""
    name = DESCRIPTION_FILES.get(dataset_name, dataset_name.lower())
    path = os.path.join(os.path.expanduser(folder), f"{name}_prompt.json")
    if not os.path.isfile(path):
        raise DataError(f"CoPrompt's class descriptions for {dataset_name}: no file {path} "
                        f"(TRAINER.COPROMPT.DESCRIPTIONS is {folder!r}). {WHERE_TO_GET}.")
    try:
        with open(path) as f:
            table = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"CoPrompt's class descriptions {path} are not readable JSON ({e}). {WHERE_TO_GET}.") from e
    if not isinstance(table, dict):
        raise DataError(f"CoPrompt's class descriptions {path} must be a JSON object of class names to lists of "
                        f"descriptions; it holds a {type(table).__name__}. {WHERE_TO_GET}.")
    names = [c.replace("_", " ") for c in classnames]
    missing = [n for n in names if n not in table]
    if missing:
        raise DataError(f"CoPrompt's class descriptions {path} have no entry for {len(missing)} of the run's "
                        f"{len(names)} classes: {', '.join(repr(n) for n in missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''} (keys are class names with spaces). {WHERE_TO_GET}.")
    bad = [n for n in names if not isinstance(table[n], list) or not table[n]
           or not all(isinstance(d, str) for d in table[n])]
    if bad:
        raise DataError(f"CoPrompt's class descriptions {path}: the entry of {bad[0]!r} is not a non-empty list of "
                        f"strings. {WHERE_TO_GET}.")
    counts = sorted({len(table[n]) for n in names})
    if len(counts) > 1:
        raise DataError(f"CoPrompt's class descriptions {path} hold {counts[0]} to {counts[-1]} descriptions per "
                        f"class; CoPrompt draws one description index per step for every class at once, so each "
                        f"class needs the same number. {WHERE_TO_GET}.")
    return {n: table[n] for n in names}


@TRAINER_REGISTRY.register()
class CoPrompt(DeepPromptTrainer):
    node = "COPROMPT"
    config_view = CoPromptConfig
    prompt_clip = CoPromptCLIP
    train_views = 2  # the prompted model's view and the frozen teacher's (DATALOADER.K_TRANSFORMS 2)
    # The published code registers the whole model as "MultiModalPromptLearner"; its deep text
    # prompts are compound_prompts_text.<i> and its adapters sit beside the prompt learner.
    published_checkpoint = PublishedFormat(
        "MultiModalPromptLearner", prefix="prompt_learner.",
        rename=((r"^prompt_learner\.compound_prompts_text\.(\d+)$", r"prompt_learner.text_deep.\1"),
                (r"^(adapter_image|adapter_text)\.", r"prompt_learner.\1.")))

    @classmethod
    def extend_cfg(cls, cfg):
        c = cfg.TRAINER.COPROMPT = config_node(CoPromptConfig, CN())
        c.N_CTX = 2                  # prompt tokens per layer (text and vision)
        c.CTX_INIT = "a photo of a"  # initial words of the text input context
        c.PREC = "fp16"
        c.PROMPT_DEPTH = 9           # layers 0 .. PROMPT_DEPTH-1 of both encoders get prompts (>= 1)

    @classmethod
    def adapt_cfg_sources(cls, sources):
        """The published layout read as TRAINER.COPROMPT, then the authors' per-dataset settings
        between the method yaml and the command line (module docstring)."""
        adapted = []
        for label, node in sources:
            trainer = node.get("TRAINER")
            if trainer is not None and ("CoPrompt" in trainer or any(k in trainer for k in PUBLISHED_TOP_KEYS)):
                node = node.clone()
                moved = dict(node.TRAINER.pop("CoPrompt", None) or {})
                moved.update({k: node.TRAINER.pop(k) for k in PUBLISHED_TOP_KEYS if k in node.TRAINER})
                own = node.TRAINER.get("COPROMPT") or CN()
                both = sorted(k for k in moved if k in own)
                if both:
                    raise ConfigError(f"{label} sets {', '.join(both)} both in CoPrompt's published layout "
                                      f"(TRAINER.CoPrompt.*, TRAINER.W, TRAINER.DISTILL) and as TRAINER.COPROMPT.*; "
                                      f"one would be ignored. Keep one of them.")
                unknown = sorted(set(moved) - set(PUBLISHED_KEYS) - set(PUBLISHED_TOP_KEYS))
                if unknown:
                    raise ConfigError(f"{label}: TRAINER.CoPrompt has no key {', '.join(unknown)} (the published "
                                      f"keys: {', '.join(PUBLISHED_KEYS)}).")
                own.update(moved)
                node.TRAINER.COPROMPT = own
            adapted.append((label, node))
        return with_dataset_settings(adapted, "COPROMPT", PUBLISHED_DATASET_SETTINGS, "CoPrompt")

    def check_cfg(self, cfg):
        self.hparams  # noqa: B018 - parses (and checks) the node once

    def build_prompt_learner(self, clip_model):
        c = self.cfg_node()
        depth = coupled_depth(clip_model, c.PROMPT_DEPTH, "TRAINER.COPROMPT.PROMPT_DEPTH")
        return CoPromptLearner(clip_model, self.classnames, c.N_CTX, c.CTX_INIT, depth,
                               self.hparams.adapter_reduction, key="TRAINER.COPROMPT.N_CTX")

    def build_model(self):
        super().build_model()
        c = self.hparams
        self.model.ratios = (c.image_adapter_ratio, c.text_adapter_ratio)
        self._teacher_text = None
        if self.cfg.DATALOADER.K_TRANSFORMS == 1:
            logger.info("Note: DATALOADER.K_TRANSFORMS 1: CoPrompt's frozen teacher sees the same augmented view "
                        "as the prompted model (the published recipe gives it a second view: K_TRANSFORMS 2)")

    # ---- the frozen teacher's text: descriptions encoded once ------------------------------
    def descriptions(self):
        """{class name: [descriptions]} of the run's classes (TRAINER.COPROMPT.DESCRIPTIONS)."""
        folder = self.hparams.descriptions
        if folder == "templates":
            templates = ENSEMBLE_TEMPLATES + [dataset_template(self.cfg, self.dm.dataset, "coop")]
            return {n: [t.format(n) for t in templates] for n in (c.replace("_", " ") for c in self.classnames)}
        if not folder:
            raise ConfigError(f"CoPrompt trains its text side against the frozen CLIP's features of LLM-written "
                              f"class descriptions, and TRAINER.COPROMPT.DESCRIPTIONS is empty. Set it to the folder "
                              f"holding {DESCRIPTION_FILES.get(self.cfg.DATASET.NAME, self.cfg.DATASET.NAME.lower())}"
                              f"_prompt.json. {WHERE_TO_GET}. TRAINER.COPROMPT.DESCRIPTIONS templates uses CLIP's "
                              f"hand-crafted templates instead (not the published recipe).")
        return read_descriptions(folder, self.cfg.DATASET.NAME, self.classnames)

    @property
    def teacher_text(self):
        """[n descriptions, C, D]: normalized frozen features; encoded at the first training step."""
        if self._teacher_text is None:
            self._teacher_text = self.encode_descriptions(self.descriptions())
            logger.info(f"CoPrompt: {self._teacher_text.shape[0]} descriptions x {self._teacher_text.shape[1]} "
                        f"classes encoded by the frozen text encoder (once)")
        return self._teacher_text

    @torch.no_grad()
    def encode_descriptions(self, table, chunk=1000):
        clip_model, enc = self.model.clip, self.model.text_encoder
        embed = towers(clip_model).token_embedding
        texts = [d for descs in table.values() for d in descs]  # class-major
        feats = []
        with self.precision.autocast():
            for i in range(0, len(texts), chunk):
                tok = tokenize(texts[i:i + chunk], model=clip_model).to(embed.weight.device)
                feats.append(F.normalize(enc(embed(tok), tok).float(), dim=-1))
        return torch.cat(feats).view(len(table), -1, feats[0].shape[-1]).transpose(0, 1)

    def pick_description(self, n):
        """The description index of this step (Python's global generator, as published)."""
        return random.randint(0, n - 1)

    # ---- training ----------------------------------------------------------------------------
    def parse_batch_train(self, batch):
        img, label = batch["img"], batch["label"].to(self.device)
        views = img if isinstance(img, (list, tuple)) else [img, img]
        return views[0].to(self.device, non_blocking=True), views[1].to(self.device, non_blocking=True), label

    def compute_losses(self, image, teacher_image, label):
        model, c = self.model, self.hparams
        teacher_text = self.teacher_text[self.pick_description(self.teacher_text.shape[0])]
        with self.precision.autocast():
            text = model.text_features()
            img = model.image_features(image)
            img_teacher = model.frozen_image_features(teacher_image)
        logits = model.logit_scale * img @ text.t()
        return coprompt_losses(logits, label, text, teacher_text, img, img_teacher, c.w, c.distill), logits

    def forward_backward(self, batch):
        image, teacher_image, label = self.parse_batch_train(batch)
        return self.update_on_losses(*self.compute_losses(image, teacher_image, label), label)

    def result_metadata(self):
        c = self.hparams
        return {**super().result_metadata(), "w": c.w, "distill": c.distill,
                "descriptions": c.descriptions, "adapter_ratios": [c.image_adapter_ratio, c.text_adapter_ratio]}
