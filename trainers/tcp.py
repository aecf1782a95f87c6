"""TCP: textual-based class-aware prompt tuning (Yao, Zhang & Xu, CVPR 2024).

KgCoOp's model and loss plus class-aware textual tokens. A small meta-net (the "textual
knowledge embedding") maps each class's hand-crafted text feature t^h_c to N_CTX tokens,
which replace the context positions at the input of text layer CLASS_LAYER:

    tokens_c = W2 QuickGELU(W1 t^h_c)  reshaped [N_CTX, width]   (W1: D -> D/4, W2: D/4 -> N_CTX * width)
    t_c      = text encoder of [SOS] ctx "<class suffix>" [EOT], positions 1..N_CTX <- tokens_c at layer CLASS_LAYER
    logits   = scale * v . t_c / |t_c|
    loss     = CE(logits, y) + W * (1 - mean_c cos(t_c, t^h_c))

as in htyao89/Textual-based_Class-aware_prompt_tuning (trainers/tcp.py and its text
encoder, trainers/clip_text/model.py). Inference is the same forward: the class-aware tokens
of unseen classes come from their own hand-crafted features, so the new classes of a
base-to-new run get them too. Learned and checkpointed ("prompt_learner"): the context and
the meta-net; both CLIP encoders are frozen. Facts of the published code kept here:

- the hand-crafted view t^h uses the dataset's CoOp template except DTD ("a photo of a {},
  a type of texture.") and FGVCAircraft ("a photo of an aircraft {}."): template set "tcp";
- the learned prompt is "X X X X <suffix>" with a per-dataset suffix (PROMPT_SUFFIXES;
  UCF101's "person doing {}.", so its template's "a photo of a" is what the context replaces);
- the class-aware tokens replace the context positions entirely (the published mixing weight
  is fixed at 1.0) at the input of text block 8 (0-based); on a text encoder with fewer
  blocks they go to the last block (logged; the published code would silently skip them);
- the loss weight is 8.0 in the published code (a constant); its TRAINER.COOP.W is handed to
  the text encoder, which overrides it with 1.0, so it changes nothing. TCP's scripts still
  set it: read as TRAINER.TCP.PUBLISHED_W, recorded and unused;
- Adam's eps is 1e-3: the repository's README requires that edit of Dassl's optimizer
  (fp16 parameters give NaN with the default); ADAM_EPS here.

Config keys: TRAINER.TCP.{N_CTX=4, CSC=False, CTX_INIT="", PREC="fp16",
CLASS_TOKEN_POSITION="end", W=8.0, CLASS_LAYER=8, ADAM_EPS=1e-3, TEMPLATE_SET="tcp",
PUBLISHED_W=1.0}. TCP's yaml files and scripts put the context keys under CoOp's node
(TRAINER.COOP.{N_CTX, CSC, CTX_INIT, CLASS_TOKEN_POSITION, PREC, W}); they are read as
TRAINER.TCP keys on top of the defaults of TCP's train.py (N_CTX 16, random init, PREC
fp16), as KgCoOp does. The meta-net makes N_CTX tokens (the published one makes 4 and only
runs with N_CTX 4); only a generic context with the class token at the end exists there.
"""
from collections import OrderedDict
from dataclasses import dataclass

import torch.nn as nn
import torch.nn.functional as F

from clip.model import QuickGELU

from e2mim_clip.deep_prompts import DeepTextEncoder
from e2mim_clip.prompt_trainer import (PUBLISHED_PROMPT_LEARNER, PromptTrainer, context_node,
                                       read_published_coop_keys)
from e2mim_clip.prompting import PromptCLIP, PromptLearner, cosine_consistency
from e2mim_clip.templates import TEMPLATE_SETS
from e2mim_clip.towers import towers
from e2mim_engine.errors import ConfigError
from e2mim_engine.evaluation import compute_accuracy
from e2mim_engine.method_config import AT_LEAST_0, config_node, option
from e2mim_engine.trainer import TRAINER_REGISTRY
from e2mim_engine.utils import logger

TCP_CTX_INIT = "a photo of a"  # what TCP's code uses whenever CTX_INIT is true
# TRAINER.COOP.* defaults of TCP's train.py, used with its layout (W moves to PUBLISHED_W).
PUBLISHED_DEFAULTS = {"N_CTX": 16, "CSC": False, "CTX_INIT": "", "PREC": "fp16",
                      "CLASS_TOKEN_POSITION": "end", "PUBLISHED_W": 1.0}
# What follows the context in the learned prompt, per dataset (its "X X X X ..." templates).
PROMPT_SUFFIXES = {"OxfordPets": "{}, a type of pet.", "OxfordFlowers": "{}, a type of flower.",
                   "FGVCAircraft": "{}, a type of aircraft.", "DescribableTextures": "{} texture.",
                   "StanfordCars": "{}, a type of car", "Food101": "{}, a type of food.",
                   "UCF101": "person doing {}."}
DEFAULT_SUFFIX = "{}."  # EuroSAT, SUN397, Caltech101, the ImageNets and any other dataset


@dataclass(frozen=True)
class TCPConfig:
    """TRAINER.TCP's own keys (besides CoOp's context keys), parsed once per run."""
    w: float = option(8.0, check=AT_LEAST_0)                  # weight of 1 - mean cos(t, t^h)
    class_layer: int = option(8, check=(lambda v: int(v) == v and v >= 1, "must be an integer >= 1"))
    adam_eps: float = option(1e-3, check=(lambda v: v > 0, "must be > 0"))
    template_set: str = option("tcp", choices=TEMPLATE_SETS)
    published_w: float = option(1.0)       # TCP's TRAINER.COOP.W: no effect in its code (docstring)
    keys_from: str = option("TRAINER.TCP")  # set by adapt_cfg_sources when TCP's layout is read


class TCPPromptLearner(PromptLearner):
    """CoOp's generic context in TCP's per-dataset prompt, plus the meta-net that turns the
    hand-crafted class features [C, D] into class-aware tokens [C, N_CTX, width]."""

    def __init__(self, clip_model, classnames, n_ctx, ctx_init, class_template):
        super().__init__(clip_model, classnames, n_ctx=n_ctx, ctx_init=ctx_init, class_template=class_template)
        dim, width = towers(clip_model).embed_dim, self.ctx.shape[-1]
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(dim, dim // 4)),
            ("relu", QuickGELU()),  # the published name of this slot
            ("linear2", nn.Linear(dim // 4, self.n_ctx * width)),
        ])).to(self.ctx.device)  # float32 master weights, like ctx

    def class_tokens(self, text_h):
        return self.meta_net(text_h.to(self.ctx.dtype)).view(text_h.shape[0], self.n_ctx, -1)


class TCPCLIP(PromptCLIP):
    """KgCoOp's model with the class-aware tokens inserted at text block ``class_layer``.
    ``text_h`` (the frozen hand-crafted features of the run's classes) is set by the trainer."""

    def __init__(self, clip_model, prompt_learner, class_layer):
        super().__init__(clip_model, prompt_learner)
        self.text_encoder = DeepTextEncoder(clip_model)
        self.class_layer = class_layer
        self.text_h = None

    def text_features(self):
        pl = self.prompt_learner
        deep = [None] * (self.class_layer - 1) + [pl.class_tokens(self.text_h)]
        return F.normalize(self.text_encoder(pl(), pl.tokenized_prompts, deep).float(), dim=-1)


@TRAINER_REGISTRY.register()
class TCP(PromptTrainer):
    published_checkpoint = PUBLISHED_PROMPT_LEARNER
    node = "TCP"
    config_view = TCPConfig
    frozen_eval_features = frozen_train_features = True  # the image side is the frozen encoder

    @classmethod
    def extend_cfg(cls, cfg):
        cfg.TRAINER.TCP = config_node(TCPConfig, context_node(n_ctx=4))

    @classmethod
    def adapt_cfg_sources(cls, sources):
        """TCP's published TRAINER.COOP keys read as TRAINER.TCP (module docstring)."""
        renamed = []
        for label, n in sources:
            coop = n.get("TRAINER", {}).get("COOP", {})
            if "W" in coop:
                n = n.clone()
                n.TRAINER.COOP.PUBLISHED_W = n.TRAINER.COOP.pop("W")
            renamed.append((label, n))
        return read_published_coop_keys(renamed, "TCP", PUBLISHED_DEFAULTS, TCP_CTX_INIT, "TCP")

    def config_prefix(self):
        return self.cfg_node().KEYS_FROM

    def check_cfg(self, cfg):
        self.hparams  # noqa: B018 - parses (and checks) the node once
        c = cfg.TRAINER.TCP
        if c.CSC or c.CLASS_TOKEN_POSITION != "end":
            raise ConfigError(f"TCP has a generic context with the class token at the end (its published code "
                              f"has no other); got {self.config_prefix()}.CSC {c.CSC!r}, "
                              f"CLASS_TOKEN_POSITION {c.CLASS_TOKEN_POSITION!r}.")

    def build_prompt_learner(self, clip_model):
        c = self.cfg_node()
        suffix = PROMPT_SUFFIXES.get(self.cfg.DATASET.NAME, DEFAULT_SUFFIX)
        return TCPPromptLearner(clip_model, self.classnames, c.N_CTX, c.CTX_INIT, suffix).to(self.device)

    def build_model(self):
        clip_model = self.build_clip()
        layer, last = self.hparams.class_layer, len(towers(clip_model).blocks) - 1
        if last < 1:
            raise ConfigError("TCP inserts its class-aware tokens at the input of a text block after the first; "
                              "this backbone's text encoder has one block.")
        if layer > last:
            logger.info(f"Note: TCP's CLASS_LAYER {layer} is beyond this text encoder's last block ({last}); "
                        f"the class-aware tokens go to block {last}")
            layer = last
        self.model = TCPCLIP(clip_model, self.build_prompt_learner(clip_model), layer)
        optim, sched = self.build_optim_sched(self.model.prompt_learner)
        self.register_model("prompt_learner", self.model.prompt_learner, optim, sched)
        self.model.text_h = self.build_handcrafted_view(self.hparams.template_set, what=f"TCP (layer {layer})")

    def build_optim_sched(self, module_or_params, optim_cfg=None):
        optim, sched = super().build_optim_sched(module_or_params, optim_cfg)
        if "eps" in optim.defaults:  # Adam/AdamW: TCP's eps (module docstring)
            for group in optim.param_groups:
                group["eps"] = self.hparams.adam_eps
            logger.info(f"TCP: {type(optim).__name__} eps {self.hparams.adam_eps}")
        return optim, sched

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            text = self.model.text_features()
            output = self.model(image, text)
        loss_ce = F.cross_entropy(output.float(), label)
        loss_kg = cosine_consistency(text, self.text_h)
        loss = loss_ce + self.hparams.w * loss_kg
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "loss_ce": loss_ce.item(), "loss_kg": loss_kg.item(),
                "acc": compute_accuracy(output, label)}

    def result_metadata(self):
        c = self.hparams
        return {"prompt_init": self.model.prompt_learner.prompt_prefix, "templates": self.templates,
                "template_set": c.template_set, "kg_weight": c.w, "class_layer": self.model.class_layer,
                "adam_eps": c.adam_eps, "keys_from": c.keys_from}
