"""MMRL: multi-modal representation learning (Guo & Gu, CVPR 2025).

K shared representation tokens R [K, REP_DIM] (N(0, 0.02)) live in neither encoder: for each
layer l of REP_LAYERS (counted from 1, as published) a linear map of its own projects R into
the image encoder (REP_DIM -> vision width) and another into the text encoder (REP_DIM ->
text width). The projected tokens are added at the input of the first listed layer (image:
beside the class token; text: after SOS) and replace their own outputs at the input of every
later listed layer (e2mim_clip.deep_prompts); layers before the first see plain CLIP. The maps
of all layers start as one copy of one draw (nn.Linear's init), as in the published code.

Features: the text side encodes the dataset's hand-crafted template ("a photo of a {}." ...,
CoOp's set) with the tokens inside: t. The image side gives two: v, the class token through
CLIP's ln_post and proj, and v_r, the mean of the representation tokens' outputs through
ln_post and a learnable projection P_r [vision width, embed dim] (drawn as CLIP draws proj:
width^-1/2 * N(0, 1)). With s = 100 (CLIP's trained scale, fixed as published):

    loss = ALPHA * CE(s v.t, y) + (1 - ALPHA) * CE(s v_r.t, y)
         + REG_WEIGHT * (1 - mean cos(v, v_zs)) + REG_WEIGHT * (1 - mean cos(t, t_zs))

v_zs: the frozen image encoder's features; t_zs: the frozen text features of the same
template, encoded once. Only R, the per-layer maps and P_r learn ("prompt_learner"); CLIP is
frozen. All vectors are normalized.

Inference (the published rule): on the classes the representation classifier was trained on
(the same dataset and class list: base classes, few-shot, the cross-dataset source) the
logits are ALPHA * s v.t + (1 - ALPHA) * s v_r.t; on other classes (new classes, other
datasets, ImageNet's variants) only s v.t. INFERENCE "auto" decides from the checkpoint the
run evaluates (its dataset and class list; a run that trains evaluates its own classes); a
file of the published code records neither, so there SUBSAMPLE_CLASSES new means other
classes; "fusion" or "class_token" force one.

The authors' per-dataset settings (their trainers/config.py: REG_WEIGHT per dataset, REP_DIM
2048 for EuroSAT) apply after the method yaml and before the command-line pairs, as in their
train.py, while DATASET_SETTINGS is True; their cross-dataset scripts override both on the
command line, which our cross-dataset yaml says with DATASET_SETTINGS False.

Config keys (the published names; defaults the published ones except REP_LAYERS, empty in
the published code and [6..12] in every published file): TRAINER.MMRL.{ALPHA=0.7,
REG_WEIGHT=1.0, REP_LAYERS=[6, ..., 12], REP_DIM=512, N_REP_TOKENS=5, PREC="fp16"}, and ours:
INFERENCE="auto", DATASET_SETTINGS=True.
"""
import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from e2mim_clip.deep_prompts import DeepPromptCLIP, DeepPromptTrainer, encoder_shapes
from e2mim_clip.prompting import tokenize
from e2mim_clip.templates import dataset_template
from e2mim_clip.towers import towers
from e2mim_engine.checkpoint import PublishedFormat
from e2mim_engine.config import with_dataset_settings
from e2mim_engine.errors import ConfigError
from e2mim_engine.method_config import AT_LEAST_0, IN_0_1, POSITIVE_INT, config_node, option
from e2mim_engine.trainer import TRAINER_REGISTRY
from e2mim_engine.utils import logger

LOGIT_SCALE = 100.0  # the published code's fixed scale (CLIP ViT-B/16's trained one)

# The authors' per-dataset settings of MMRL (yunncheng/MMRL, trainers/config.py).
PUBLISHED_DATASET_SETTINGS = {
    "StanfordCars": {"REG_WEIGHT": 7.0}, "FGVCAircraft": {"REG_WEIGHT": 6.0}, "SUN397": {"REG_WEIGHT": 6.0},
    "DescribableTextures": {"REG_WEIGHT": 6.0}, "Food101": {"REG_WEIGHT": 5.0},
    "OxfordFlowers": {"REG_WEIGHT": 4.0}, "UCF101": {"REG_WEIGHT": 3.0}, "ImageNet": {"REG_WEIGHT": 0.5},
    "Caltech101": {"REG_WEIGHT": 0.5}, "OxfordPets": {"REG_WEIGHT": 0.2},
    "EuroSAT": {"REP_DIM": 2048, "REG_WEIGHT": 0.01},
}


def _layers(v):
    return (isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(x, int) and x >= 2 for x in v)
            and list(v) == sorted(set(v)))


def usable_layers(layers, top):
    """The listed layers this backbone has (``top``: the smaller encoder's layer count). Layers
    beyond it are dropped with a note, and when none is left the last layer takes the tokens,
    so the published files (6..12 of 12) also run on small shapes such as random:tiny."""
    if top < 2:
        raise ConfigError(f"MMRL needs encoders of at least 2 layers (its tokens enter at layer 2 or later); "
                          f"this backbone's smaller encoder has {top}.")
    kept = [l for l in layers if l <= top] or [top]
    if kept != list(layers):
        logger.info(f"Note: TRAINER.MMRL.REP_LAYERS {list(layers)} names layers beyond this backbone's {top} "
                    f"(the smaller encoder's layer count); the tokens go into layers {kept}")
    return kept


@dataclass(frozen=True)
class MMRLConfig:
    """TRAINER.MMRL's keys, parsed once per run."""
    alpha: float = option(0.7, check=IN_0_1)           # weight of the class-token logits (loss and fusion)
    reg_weight: float = option(1.0, check=AT_LEAST_0)  # weight of each cosine term to the frozen features
    rep_layers: tuple = option((6, 7, 8, 9, 10, 11, 12), check=(
        _layers, "must be a non-empty increasing list of layer numbers >= 2 (counted from 1)"))
    rep_dim: int = option(512, check=POSITIVE_INT)     # width of the shared representation space
    n_rep_tokens: int = option(5, check=POSITIVE_INT)  # K representation tokens
    inference: str = option("auto", choices=("auto", "fusion", "class_token"))
    dataset_settings: bool = option(True, check=(lambda v: isinstance(v, bool), "must be True or False"))


class RepresentationLearner(nn.Module):
    """R, its per-layer maps into both encoders, the representation projection P_r and the
    (non-persistent) hand-crafted prompts of the run's classes."""

    def __init__(self, clip_model, classnames, template, n_tokens, rep_dim, rep_layers):
        super().__init__()
        shapes = encoder_shapes(clip_model)
        rep_layers = usable_layers(rep_layers, min(shapes["vision_layers"], shapes["text_layers"]))
        t = towers(clip_model)
        device, embed_dim = t.token_embedding.weight.device, t.embed_dim
        width = shapes["vision_width"]
        self.proj_rep = nn.Parameter(width ** -0.5 * torch.randn(width, embed_dim, device=device))
        self.compound_rep_tokens = nn.Parameter(nn.init.normal_(torch.empty(n_tokens, rep_dim, device=device),
                                                                std=0.02))
        to_vision = nn.Linear(rep_dim, width).to(device)
        to_text = nn.Linear(rep_dim, shapes["text_width"]).to(device)
        self.compound_rep_tokens_r2vproj = nn.ModuleList(copy.deepcopy(to_vision) for _ in rep_layers)
        self.compound_rep_tokens_r2tproj = nn.ModuleList(copy.deepcopy(to_text) for _ in rep_layers)
        self.rep_layers = list(rep_layers)
        names = [c.replace("_", " ") for c in classnames]
        self.template = template
        tokenized = tokenize([template.format(c) for c in names], model=clip_model).to(device)
        with torch.no_grad():
            embedding = t.token_embedding(tokenized)
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        self.register_buffer("prompt_embeddings", embedding, persistent=False)

    def _deep(self, maps):
        """Per block 1..: the mapped tokens at the input of each listed layer, else None."""
        deep = [None] * (self.rep_layers[-1] - 1)
        for layer, f in zip(self.rep_layers, maps):
            deep[layer - 2] = f(self.compound_rep_tokens)
        return deep

    def text_prompts(self):
        return self.prompt_embeddings, self._deep(self.compound_rep_tokens_r2tproj)

    def vision_prompts(self):
        return None, self._deep(self.compound_rep_tokens_r2vproj)


class MMRLCLIP(DeepPromptCLIP):
    """Frozen CLIP + the representation learner: text features t, image features (v, v_r)."""

    @property
    def logit_scale(self):
        return LOGIT_SCALE

    def text_features(self):
        pl = self.prompt_learner
        prompts, deep = pl.text_prompts()
        return F.normalize(self.text_encoder(prompts, pl.tokenized_prompts, deep, n_ctx=0).float(), dim=-1)

    def frozen_text_features(self):
        pl = self.prompt_learner
        with torch.no_grad():
            return F.normalize(self.text_encoder(pl.prompt_embeddings, pl.tokenized_prompts).float(), dim=-1)

    def image_features(self, image):
        """(v, v_r), normalized: the class token's and the representation tokens' features."""
        pl = self.prompt_learner
        _, deep = pl.vision_prompts()
        v, rep = self.image_encoder(image, None, deep, prompt_outputs=True)
        v_r = rep.mean(dim=1) @ pl.proj_rep.to(rep.dtype)
        return F.normalize(v.float(), dim=-1), F.normalize(v_r.float(), dim=-1)

    def forward(self, image, text_features=None, fusion=True, alpha=0.7):
        v, v_r = self.image_features(image)
        t = self.text_features() if text_features is None else text_features
        logits = self.logit_scale * v @ t.t()
        if not fusion:
            return logits
        return alpha * logits + (1 - alpha) * (self.logit_scale * v_r @ t.t())


def mmrl_losses(logits, logits_rep, label, v, v_zs, t, t_zs, alpha, reg_weight):
    """The MMRL loss terms (float32 inputs): dict of ce, ce_rep, reg_image, reg_text, loss."""
    ce, ce_rep = F.cross_entropy(logits, label), F.cross_entropy(logits_rep, label)
    reg_image = 1 - F.cosine_similarity(v, v_zs, dim=1).mean()
    reg_text = 1 - F.cosine_similarity(t, t_zs, dim=1).mean()
    loss = alpha * ce + (1 - alpha) * ce_rep + reg_weight * reg_image + reg_weight * reg_text
    return {"loss": loss, "ce": ce, "ce_rep": ce_rep, "reg_image": reg_image, "reg_text": reg_text}


@TRAINER_REGISTRY.register()
class MMRL(DeepPromptTrainer):
    node = "MMRL"
    config_view = MMRLConfig
    prompt_clip = MMRLCLIP
    # The published code registers the whole model as "MultiModalRepresentationLearner"; its
    # representation learner has our names, P_r sits in its image encoder.
    published_checkpoint = PublishedFormat(
        "MultiModalRepresentationLearner", prefix="representation_learner.",
        rename=((r"^image_encoder\.proj_rep$", "representation_learner.proj_rep"),))

    @classmethod
    def extend_cfg(cls, cfg):
        c = cfg.TRAINER.MMRL = config_node(MMRLConfig, CN())
        c.REP_LAYERS = list(c.REP_LAYERS)
        c.PREC = "fp16"

    @classmethod
    def adapt_cfg_sources(cls, sources):
        """The authors' per-dataset settings, between the method yaml and the command line."""
        return with_dataset_settings(sources, "MMRL", PUBLISHED_DATASET_SETTINGS, "MMRL")

    def check_cfg(self, cfg):
        self.hparams  # noqa: B018 - parses (and checks) the node once

    def build_prompt_learner(self, clip_model):
        c = self.hparams
        template = dataset_template(self.cfg, self.dm.dataset, "coop")
        self.templates = [template]
        return RepresentationLearner(clip_model, self.classnames, template, c.n_rep_tokens, c.rep_dim,
                                     tuple(c.rep_layers)).to(self.device)

    def build_model(self):
        super().build_model()
        with self.precision.autocast():
            self.text_zs = self.model.frozen_text_features()  # t_zs, encoded once
        # the classes the representation classifier learns; load_model replaces it
        self.trained_on = {"dataset": self.cfg.DATASET.NAME, "classnames": list(self.classnames)}
        logger.info(f"MMRL: {self.hparams.n_rep_tokens} representation tokens in layers "
                    f"{self.model.prompt_learner.rep_layers}, template '{self.templates[0]}'")

    def load_model(self, directory, epoch=None, names=None):
        super().load_model(directory, epoch, names)
        record = self.checkpointer.loaded.get("prompt_learner")
        if record is None:
            return
        ident = record.get("identity") or {}
        if ident.get("dataset") is None or record.get("classnames") is None:
            self.trained_on = None  # a file of the published code: unknown
        else:
            self.trained_on = {"dataset": ident["dataset"], "classnames": list(record["classnames"])}

    def uses_fusion(self):
        """Whether evaluation fuses the representation logits (the published inference rule)."""
        mode = self.hparams.inference
        if mode != "auto":
            return mode == "fusion"
        if self.trained_on is None:
            return self.cfg.DATASET.SUBSAMPLE_CLASSES != "new"
        return (self.trained_on["dataset"] == self.cfg.DATASET.NAME
                and self.trained_on["classnames"] == list(self.classnames))

    def compute_losses(self, image, label):
        model, c = self.model, self.hparams
        with self.precision.autocast():
            t = model.text_features()
            v, v_r = model.image_features(image)
            v_zs = model.frozen_image_features(image)
        logits = LOGIT_SCALE * v @ t.t()
        logits_rep = LOGIT_SCALE * v_r @ t.t()
        losses = mmrl_losses(logits, logits_rep, label, v, v_zs, t, self.text_zs, c.alpha, c.reg_weight)
        return losses, c.alpha * logits + (1 - c.alpha) * logits_rep

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        return self.update_on_losses(*self.compute_losses(image, label), label)

    def set_model_mode(self, mode="train", names=None):
        super().set_model_mode(mode, names)
        if mode == "eval":
            fusion = self.uses_fusion()
            if fusion != getattr(self, "_fusion", None):  # said once, and again if it changes
                logger.info(f"MMRL inference: {'fused class-token and representation' if fusion else 'class-token'}"
                            f" logits")
            self._fusion = fusion

    def model_inference(self, image):
        with self.precision.autocast():
            return self.model(image, self.eval_text_features(), fusion=self._fusion, alpha=self.hparams.alpha)

    def result_metadata(self):
        pl = self.model.prompt_learner
        return {"templates": self.templates, "rep_layers": list(pl.rep_layers),
                "inference": "fusion" if self.uses_fusion() else "class_token",
                "trainable_params": sum(p.numel() for p in pl.parameters() if p.requires_grad)}
