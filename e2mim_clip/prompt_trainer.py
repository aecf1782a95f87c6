"""The trainer base of every CLIP method: one way to build the frozen CLIP in the method's
precision, to encode a hand-crafted view once, and (for prompt methods) to build CoOp's
prompt learner from a node's context keys and evaluate with class texts encoded once.

A method names its config node (``node = "COOP"``); the node holds PREC and, for prompt
methods, CoOp's context keys N_CTX, CTX_INIT, CSC, CLASS_TOKEN_POSITION.
"""
import functools
import hashlib
import inspect

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from e2mim_engine import __version__
from e2mim_engine.checkpoint import PublishedFormat
from e2mim_engine.errors import ConfigError
from e2mim_engine.evaluation import compute_accuracy
from e2mim_engine.method_config import parse_view, view_items
from e2mim_engine.trainer import TrainerBase
from e2mim_engine.utils import logger

from .loader import backbone_identity, backbone_report, load_clip, with_backbone_preprocessing
from .prompting import (PromptCLIP, PromptLearner, cosine_consistency, encode_images, handcrafted_text_features,
                        mean_pairwise_cosine)
from .prompting import TextEncoder
from .templates import ENSEMBLE_TEMPLATES, dataset_template

# What the feature caches hold for a CLIP method: the output of encode_frozen.
FROZEN_FEATURES = "e2mim_clip.prompting.encode_images(normalize=True)"


@functools.lru_cache(maxsize=None)
def frozen_code_digest():
    """A hash of the code that computes the frozen image features (the image decoder, the
    loader, the prompting module and the e2mim_clip modules it uses): part of the feature cache's key, so editing
    that code never lets a cache serve features of the old code."""
    from e2mim_engine.data import images

    from . import loader, prompting
    mods = {m.__name__: m for m in [loader, prompting, images] + [v for v in vars(prompting).values() if
                                                                  inspect.ismodule(v) and
                                                                  v.__name__.startswith("e2mim_clip.")]}
    h = hashlib.sha256()
    for name in sorted(mods):
        h.update(name.encode() + b"\0" + inspect.getsource(mods[name]).encode())
    return h.hexdigest()[:16]


def context_node(n_ctx=16, ctx_init="", csc=False, prec="fp16", class_token_position="end"):
    """A method's config node holding CoOp's context keys (CoOp's defaults unless given);
    the method adds its own keys to it."""
    c = CN()
    c.N_CTX = n_ctx
    c.CSC = csc
    c.CTX_INIT = ctx_init
    c.PREC = prec
    c.CLASS_TOKEN_POSITION = class_token_position
    return c


def prompt_learner_of(node, clip_model, classnames):
    """CoOp's prompt learner from a method node's context keys (N_CTX, CTX_INIT, CSC,
    CLASS_TOKEN_POSITION), on the CLIP's device."""
    return PromptLearner(clip_model, classnames, n_ctx=node.N_CTX, ctx_init=node.CTX_INIT,
                         csc=node.get("CSC", False), class_token_position=node.get("CLASS_TOKEN_POSITION", "end"))


def _keys(node, name):
    return list(node.get("TRAINER", {}).get(name, {}))


def read_published_coop_keys(sources, node, published_defaults, ctx_init_true, method):
    """Config sources with a method's published TRAINER.COOP keys moved to TRAINER.<node>.

    KgCoOp's and ProGrad's repositories keep their context keys under CoOp's node. When any
    source of the run sets such a key, the keys become the method's own, on top of the
    defaults of the published code (``published_defaults``, which also lists the keys that
    move), with CTX_INIT True read as ``ctx_init_true`` and False as random init; KEYS_FROM
    records the layout. Keys under both nodes are an error: one of them would be ignored.
    """
    coop_set = [f"TRAINER.COOP.{k}" for _, n in sources for k in _keys(n, "COOP") if k in published_defaults]
    if not coop_set:
        return sources
    own_set = [f"TRAINER.{node}.{k}" for _, n in sources for k in _keys(n, node) if k in published_defaults]
    if own_set:
        raise ConfigError(
            f"{method} reads its keys from one node: {', '.join(coop_set)} ({method}'s published keys) and "
            f"{', '.join(own_set)} are both set. Use TRAINER.{node}.* only, or TRAINER.COOP.* only.")

    def ctx_init(value):
        if value in (True, "True", "true"):
            return ctx_init_true
        return "" if value in (False, None, "False", "false", "None", "") else str(value)

    adapted, first = [], True
    for label, n in sources:
        coop = n.get("TRAINER", {}).get("COOP", {})
        moved = {k: coop[k] for k in list(coop) if k in published_defaults}
        if moved:
            n = n.clone()
            own = n.TRAINER.get(node) or CN()
            if first:  # the published defaults come with the published layout, before its keys
                own.update(published_defaults)
                own.KEYS_FROM = "TRAINER.COOP"
                first = False
            for k, v in moved.items():
                own[k] = ctx_init(v) if k == "CTX_INIT" else v
                del n.TRAINER.COOP[k]
            n.TRAINER[node] = own
            if not n.TRAINER.COOP:
                del n.TRAINER["COOP"]
        adapted.append((label, n))
    return adapted


class ClipTrainer(TrainerBase):
    """A trainer on a frozen CLIP. Subclasses set ``node`` and fill in build_model.

    The frozen image function of a CLIP method is encode_images of the frozen CLIP (normalized
    features). A method whose image side is exactly that sets ``frozen_eval_features = True``
    (and ``frozen_train_features = True`` when its training step uses nothing else of the
    images) and reads image features through PromptCLIP.image_features / image_features_of,
    which accept the cached features in place of images (e2mim_engine.trainer.TrainerBase).
    """

    node = None
    # A method's own keys as a frozen dataclass (e2mim_engine.method_config), or None: read
    # once, through self.hparams.
    config_view = None

    def __init__(self, cfg):
        # an open_clip model fixes its input size and pixel statistics (logged where the config differs)
        super().__init__(with_backbone_preprocessing(cfg))
        self.configure_text_encoders()

    @functools.cached_property
    def hparams(self):
        """The method's node parsed once into its config_view (checked: a ConfigError names
        the key), or None for a method without one."""
        if self.config_view is None:
            return None
        return parse_view(self.config_view, self.cfg_node(), self.config_prefix())

    def config_prefix(self):
        """The node's name as errors about its keys say it."""
        return f"TRAINER.{self.node}"

    def hyperparameters(self):
        """Every key of the method's node, by full name (the parsed value where the method
        has a view): what results.json records as "hyperparameters"."""
        prefix = f"TRAINER.{self.node}"
        out = {f"{prefix}.{k}": v for k, v in self.cfg_node().items()}
        if self.hparams is not None:
            out.update(view_items(self.hparams, prefix))
        return out

    def configure_text_encoders(self):
        """MODEL.TEXT_ENCODER.CHECKPOINT, read here only: set on every text encoder the method
        built (PromptCLIP's, CoCoOp's, the deep-prompt encoders), so no method reads it."""
        on = bool(self.cfg.MODEL.TEXT_ENCODER.CHECKPOINT)
        for root in [getattr(self, "model", None), *self._models.values()]:
            if isinstance(root, nn.Module):
                for m in root.modules():
                    if isinstance(m, TextEncoder):
                        m.checkpoint = on

    def cfg_node(self):
        return self.cfg.TRAINER[self.node]

    def build_clip(self):
        """The frozen CLIP of MODEL.BACKBONE.NAME, weights in the node's PREC (also sets
        self.precision and the grad scaler)."""
        cfg = self.cfg
        prec = self.set_precision(self.cfg_node().PREC, f"TRAINER.{self.node}.PREC")
        model = load_clip(cfg.MODEL.BACKBONE.NAME, self.device, prec.weight_dtype,
                          cfg.MODEL.BACKBONE.CACHE_DIR, cfg.INPUT.SIZE)
        self.backbone_report = backbone_report(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.CACHE_DIR)
        self.backbone_sha256 = self.backbone_report["backbone_sha256"]
        return model

    @property
    def frozen_clip(self):
        """The frozen CLIP whose image encoder encode_frozen runs (ZeroshotCLIP's self.clip)."""
        return self.clip

    def encode_frozen(self, images):
        """Normalized features of the frozen CLIP's image encoder, as model_inference computes them."""
        with self.precision.autocast():
            return encode_images(self.frozen_clip, images)

    def frozen_feature_identity(self):
        cfg = self.cfg
        # A random CLIP has no checksum: its weights are fixed by its shape, seed and torch version.
        return {"features": FROZEN_FEATURES, "backbone": cfg.MODEL.BACKBONE.NAME,
                "backbone_sha256": self.backbone_sha256, "input_size": list(cfg.INPUT.SIZE),
                "precision": self.precision.name, "device": self.device.type, "torch": torch.__version__,
                "version": __version__, "code": frozen_code_digest(), **backbone_identity(cfg.MODEL.BACKBONE.NAME)}

    def handcrafted_view(self, clip_model, template_set, ensemble=False, text_encoder=None):
        """Normalized class features [C, D] of this run's hand-crafted prompts, encoded once
        (the view is frozen): the dataset's template from ``template_set``, with ``ensemble``
        also CoOp's 7 ImageNet templates (averaged). Sets self.templates for results.json."""
        templates = [dataset_template(self.cfg, self.dm.dataset, template_set)]
        if ensemble:
            templates = ENSEMBLE_TEMPLATES + templates
        self.templates = templates
        with self.precision.autocast():
            return handcrafted_text_features(clip_model, self.classnames, templates, text_encoder)


# CoOp, CoCoOp, KgCoOp and ProGrad's published trainers register the prompt learner itself as
# "prompt_learner", with our names (and the class-name buffers, which we do not load).
PUBLISHED_PROMPT_LEARNER = PublishedFormat("prompt_learner")


class PromptTrainer(ClipTrainer):
    """CoOp's model (frozen CLIP + learnable context) registered as "prompt_learner"; class
    text features are encoded once per evaluation. The default step is CoOp's cross-entropy;
    methods override forward_backward and, when their prompt learner differs,
    build_prompt_learner / build_model."""

    prompt_clip = PromptCLIP

    @property
    def frozen_clip(self):
        return self.model.clip

    def validate_cfg(self, cfg):
        super().validate_cfg(cfg)
        c, node = cfg.TRAINER[self.node], f"TRAINER.{self.node}"
        if not c.get("CTX_INIT") and (not isinstance(c.N_CTX, int) or c.N_CTX < 1):
            raise ConfigError(f"{node}.N_CTX must be a positive integer (learnable context vectors), or set "
                              f"{node}.CTX_INIT to initial words; got N_CTX {c.N_CTX!r}.")

    def build_prompt_learner(self, clip_model):
        return prompt_learner_of(self.cfg_node(), clip_model, self.classnames).to(self.device)

    def build_model(self):
        clip_model = self.build_clip()
        self.model = self.prompt_clip(clip_model, self.build_prompt_learner(clip_model))
        optim, sched = self.build_optim_sched(self.model.prompt_learner)
        self.register_model("prompt_learner", self.model.prompt_learner, optim, sched)

    def build_handcrafted_view(self, template_set, ensemble=False, what=None):
        """self.text_h: the frozen hand-crafted class features, through the model's encoder."""
        self.text_h = self.handcrafted_view(self.model.clip, template_set, ensemble, self.model.text_encoder)
        logger.info(f"{what or type(self).__name__}: hand-crafted prompts {self.templates} "
                    f"({len(self.classnames)} classes, encoded once)")
        return self.text_h

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            output = self.model(image)
            loss = F.cross_entropy(output.float(), label)
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)}

    def update_on_losses(self, losses, logits, label):
        """The rest of a step whose losses are {name: tensor, "loss": the total}: back-propagate
        the total, log every term and the training accuracy of ``logits``."""
        self.model_backward_and_update(losses["loss"])
        return {**{k: v.item() for k, v in losses.items()}, "acc": compute_accuracy(logits, label)}

    def set_model_mode(self, mode="train", names=None):
        super().set_model_mode(mode, names)
        self.model.clip.eval()  # frozen: dropout/batch-norm always in eval mode
        self._eval_text = None

    def eval_text_features(self):
        """The learned class features, encoded once per test() (prompts do not change there)."""
        if self._eval_text is None:
            self._eval_text = self.model.text_features().float()
        return self._eval_text

    def model_inference(self, image):
        with self.precision.autocast():
            return self.model(image, self.eval_text_features())

    def epoch_diagnostics(self):
        """class_cos: mean pairwise cosine of the learned class features (collapse shows as a
        rise towards 1); with a hand-crafted view, view_cos: mean cos(t^s_c, t^h_c), and
        handcrafted_class_cos, the same pairwise cosine of the hand-crafted features."""
        if self.num_classes < 2:
            return {}
        with torch.no_grad(), self.precision.autocast():
            t = self.model.text_features().float()
        out = {"class_cos": mean_pairwise_cosine(t)}
        text_h = getattr(self, "text_h", None)
        if text_h is not None:
            out["view_cos"] = 1.0 - float(cosine_consistency(t, text_h))
            out["handcrafted_class_cos"] = mean_pairwise_cosine(text_h)
        return out

    def result_metadata(self):
        return {"prompt_init": self.model.prompt_learner.prompt_prefix}
