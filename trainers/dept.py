"""DePT: decoupled prompt tuning (Zhang et al., CVPR 2024), a plug-in over CoOp, CoCoOp,
KgCoOp and MaPLe, under the published trainer names ExtrasLinearProbe{CoOp, CoCoOp, KgCoOp,
MaPLe} (Koorye/DePT).

Besides the base method's prompts, a channel-adjusted transfer (CAT) head is trained on the
base classes: a channel-wise scale and bias (ones and zeros at the start) on the image
feature and another on the class text feature, both *unnormalized* (CLIP's projections as
they are), then one linear classifier over the training classes shared by the two
modalities. With the image feature v, the text features t_c, labels y of a batch of B,
lambda = TRAINER.DEPT.WEIGHT and s CLIP's logit scale:

    sim[b, c]  = s * cos(v_b, t_c)                              (the base method's logits)
    L_cat      = CE(W [cat_t(t_{y_1..B}); cat_v(v_{1..B})] + b, [y; y])   (2B rows)
    loss       = (1 - lambda) * CE(sim, y) + lambda * L_cat + the base method's other terms

(KgCoOp's W * (1 - mean cos(t, t^h)) is added as it is). Prompts train at OPTIM.LR, the head
at OPTIM.LR * TRAINER.DEPT.HEAD_LR_MULT (the published staged learning rate: 0.0035 and
0.0035 * 6.5), with the same optimizer, warm-up and schedule.

Inference: on the classes the head was trained on (base-to-new's base half, the source
dataset, ImageNet's variants whose classes are ImageNet's or a subset of them, ImageNet-A and
-R, whose head rows are picked by class name) the logits are
(1 - lambda) * sim + lambda * W cat_v(v) + b; on other classes (the new half, other datasets)
the head has no rows and the logits are sim alone. The published code decides by the config
instead (DATASET.SUBSAMPLE_CLASSES base, or all with "ImageNet" in the dataset's name), which
picks the same branch on every protocol it runs; the rule by class names also serves the
few-shot protocol (all classes), where the published training step fails outside ImageNet
(it takes the new-class branch, which refuses training).

Keys: TRAINER.DEPT.{WEIGHT=0.7, HEAD="linear", TEST_TIME_FUSION=True, CAT=True,
HEAD_LR_MULT=6.5}, the published TRAINER.LINEAR_PROBE.{WEIGHT, TYPE, TEST_TIME_FUSION},
TRAINER.FILM.LINEAR_PROBE and OPTIM.LR_EXP. HEAD "similarity" is the published alternative:
the head's logits are s * cos(cat_v(v), cat_t(t_c)) and no linear layer is learned.
TEST_TIME_FUSION False scores the head's classes with the head alone. The base method's keys
stay under its own node (TRAINER.COOP, .COCOOP, .KGCOOP, .MAPLE); DePT's KgCoOp yaml writes
them under TRAINER.COOP, read as KgCoOp's layout with DePT's default W 2.0 (its ALPHA is
declared and never read by the published code, and is dropped).

The head is part of the model (``model.head``) and its own checkpoint ("dept_head", beside
the base's "prompt_learner"), so the prompts load for new classes without it. Over CoOp,
CoCoOp and KgCoOp the feature caches stay on and hold the frozen encoder's unnormalized
features, which the head reads.
"""
import functools
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from e2mim_clip.prompt_trainer import read_published_coop_keys
from e2mim_clip.prompting import cosine_consistency, encode_images
from e2mim_clip.towers import towers
from e2mim_engine.checkpoint import epoch_file, load_checkpoint
from e2mim_engine.checkpointer import BEST_FILE
from e2mim_engine.evaluation import compute_accuracy
from e2mim_engine.method_config import IN_0_1, POSITIVE, config_node, option, parse_view, view_items
from e2mim_engine.trainer import TRAINER_REGISTRY
from e2mim_engine.utils import logger

from .cocoop import CoCoOp
from .coop import CoOp
from .kgcoop import KGCOOP_CTX_INIT, PUBLISHED_DEFAULTS as KGCOOP_PUBLISHED_DEFAULTS, KgCoOp
from .maple import MaPLe

HEAD_KINDS = ("linear", "similarity")
HEAD = "dept_head"   # the head's registered name (its checkpoint folder)
RAW_FEATURES = "e2mim_clip.prompting.encode_images(normalize=False)"   # what the caches hold for DePT


@dataclass(frozen=True)
class DePTConfig:
    """TRAINER.DEPT, parsed once per run."""
    # lambda: the CAT loss's share of the loss and the head's share of the fused logits
    weight: float = option(0.7, check=IN_0_1)
    head: str = option("linear", choices=HEAD_KINDS)
    # on the head's classes: fuse with the similarity logits (else the head's logits alone)
    test_time_fusion: bool = option(True)
    # the channel-wise scale and bias before the head (published TRAINER.FILM.LINEAR_PROBE)
    cat: bool = option(True)
    # the head's learning rate is OPTIM.LR times this (published OPTIM.LR_EXP)
    head_lr_mult: float = option(6.5, check=POSITIVE)


# The published keys a DePT run may set (on the command line, as the published scripts do) ->
# ours. Read at merge time, in adapt_cfg_sources.
PUBLISHED_KEYS = {("TRAINER", "LINEAR_PROBE", "WEIGHT"): "WEIGHT",
                  ("TRAINER", "LINEAR_PROBE", "TYPE"): "HEAD",
                  ("TRAINER", "LINEAR_PROBE", "TEST_TIME_FUSION"): "TEST_TIME_FUSION",
                  ("TRAINER", "FILM", "LINEAR_PROBE"): "CAT",
                  ("OPTIM", "LR_EXP"): "HEAD_LR_MULT"}


def read_published_dept_keys(sources):
    """Config sources with the published DePT keys (PUBLISHED_KEYS) moved to TRAINER.DEPT."""
    out = []
    for label, n in sources:
        found = {path: ours for path, ours in PUBLISHED_KEYS.items() if _get(n, path) is not None}
        if found:
            n = n.clone()
            dept = n.setdefault("TRAINER", CN()).setdefault("DEPT", CN())
            for path, ours in found.items():
                dept[ours] = _get(n, path)
                parent = _get(n, path[:-1])
                del parent[path[-1]]
                if not parent and len(path) == 3:
                    del n[path[0]][path[1]]
        out.append((label, n))
    return out


def _get(node, path):
    for p in path:
        if not hasattr(node, "get") or p not in node:
            return None
        node = node[p]
    return node


class ChannelTransform(nn.Module):
    """x * scale + bias per channel, scale ones and bias zeros at the start (the published FiLM)."""

    def __init__(self, dim):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return x * self.scale.to(x.dtype) + self.bias.to(x.dtype)


def similarity_logits(img, txt, scale):
    """scale * cos: img [B, D] against txt [C, D] (one set of class features) or [B, C, D]
    (per image, CoCoOp's)."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    if txt.dim() == 2:
        return scale * img @ txt.t()
    return scale * torch.einsum("bd,bcd->bc", img, txt)


class CATHead(nn.Module):
    """DePT's channel-adjusted transfer head over ``n_cls`` training classes (module docstring)."""

    def __init__(self, dim, n_cls, kind="linear", cat=True):
        super().__init__()
        self.cat_image = ChannelTransform(dim) if cat else nn.Identity()
        self.cat_text = ChannelTransform(dim) if cat else nn.Identity()
        self.linear = nn.Linear(dim, n_cls) if kind == "linear" else None

    def resize(self, n_cls):
        """A fresh linear layer of ``n_cls`` rows (to load a checkpoint of other classes into)."""
        if self.linear is not None and self.linear.out_features != n_cls:
            w = self.linear.weight
            self.linear = nn.Linear(w.shape[1], n_cls).to(device=w.device, dtype=w.dtype)

    def train_logits(self, img, txt, label, scale):
        """(logits, labels) of the CAT loss: the labelled classes' text features and the image
        features through one classifier, 2B rows; with the similarity head, B rows."""
        v, t = self.cat_image(img), self.cat_text(txt)
        if self.linear is None:
            return similarity_logits(v, t, scale), label
        t_y = t[label] if t.dim() == 2 else t[torch.arange(len(label), device=t.device), label]
        return self.linear(torch.cat([t_y, v])), torch.cat([label, label])

    def image_logits(self, img, txt, scale, rows=None):
        """The head's logits of images [B, D]; ``rows``: the training classes scored, in the
        run's class order (None: all)."""
        v = self.cat_image(img)
        if self.linear is None:
            return similarity_logits(v, self.cat_text(txt), scale)
        out = self.linear(v)
        return out if rows is None else out[:, rows]


def head_rows(trained, classes):
    """Row of each of ``classes`` among the head's ``trained`` class names, or None when some
    class is not one of them (the head cannot score it: similarity logits only)."""
    if trained is None or list(trained) == list(classes):
        return None if trained is None else list(range(len(classes)))
    # a name the head holds twice (ImageNet's classnames.txt may) is matched in order: both
    # class lists follow the sorted wnid folders
    index = {}
    for i, c in enumerate(trained):
        index.setdefault(c, []).append(i)
    rows = []
    for c in classes:
        if not index.get(c):
            return None
        rows.append(index[c].pop(0))
    return rows


class DePT:
    """The DePT plug-in, placed before a base trainer class: ``class X(DePT, CoOp)``. A base
    gives its features through ``dept_features`` (the default reads PromptCLIP's unnormalized
    image and class text features) and may add loss terms in ``base_terms``."""

    published_checkpoint = None   # the published trainers save the whole model: not read here

    @classmethod
    def extend_cfg(cls, cfg):
        super().extend_cfg(cfg)
        cfg.TRAINER.DEPT = config_node(DePTConfig)

    @classmethod
    def adapt_cfg_sources(cls, sources):
        return super().adapt_cfg_sources(read_published_dept_keys(sources))

    @functools.cached_property
    def dept(self):
        return parse_view(DePTConfig, self.cfg.TRAINER.DEPT, "TRAINER.DEPT")

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        self.dept  # noqa: B018 - parses (and checks) the node once

    def hyperparameters(self):
        return {**super().hyperparameters(), **view_items(self.dept, "TRAINER.DEPT")}

    # ---- model -------------------------------------------------------------------------
    def build_model(self):
        super().build_model()
        c = self.dept
        dim = towers(self.model.clip).embed_dim
        # part of the model (its forward reads it), checkpointed on its own
        self.model.head = CATHead(dim, self.num_classes, c.head, c.cat).to(self.device)
        optim_cfg = self.cfg.OPTIM.clone()
        optim_cfg.defrost()
        optim_cfg.LR = self.cfg.OPTIM.LR * c.head_lr_mult
        optim, sched = self.build_optim_sched(self.head, optim_cfg)
        self.register_model(HEAD, self.head, optim, sched)
        self.rows = list(range(self.num_classes))  # this run's classes are the head's
        self._dept_text = None
        base = next(k.__name__ for k in type(self).__mro__ if k.__module__ != __name__)
        logger.info(f"DePT on {base}: CAT head ({c.head}, {self.num_classes} classes), "
                    f"weight {c.weight}, head lr {optim_cfg.LR:g}")

    @property
    def head(self):
        return self.model.head

    def set_model_mode(self, mode="train", names=None):
        super().set_model_mode(mode, names)
        self._dept_text = None

    def class_text(self):
        """Unnormalized class text features [C, D], encoded once per evaluation."""
        if self.model_mode == "train" or torch.is_grad_enabled():
            return self.model.text_features(normalize=False)
        if self._dept_text is None:
            self._dept_text = self.model.text_features(normalize=False)
        return self._dept_text

    def dept_features(self, image):
        """(image features [B, D], class text features [C, D] or [B, C, D]), unnormalized, float32."""
        return self.model.image_features(image, normalize=False), self.class_text()

    def base_terms(self, txt):
        """The base method's loss terms besides its cross-entropy: {name: weighted term}."""
        return {}

    # ---- training and inference --------------------------------------------------------
    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        w, scale = self.dept.weight, self.model.logit_scale
        with self.precision.autocast():
            img, txt = self.dept_features(image)
            sim = similarity_logits(img, txt, scale)
            head_logits, head_labels = self.head.train_logits(img, txt, label, scale)
        loss_ce = F.cross_entropy(sim.float(), label)
        loss_cat = F.cross_entropy(head_logits.float(), head_labels)
        terms = self.base_terms(txt)
        loss = (1.0 - w) * loss_ce + w * loss_cat + sum(terms.values())
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "loss_ce": loss_ce.item(), "loss_cat": loss_cat.item(),
                **{k: v.item() for k, v in terms.items()}, "acc": compute_accuracy(sim, label)}

    def model_inference(self, image):
        c, scale = self.dept, self.model.logit_scale
        with self.precision.autocast():
            img, txt = self.dept_features(image)
            sim = similarity_logits(img, txt, scale).float()
            if self.rows is None:
                return sim   # classes the head was not trained on
            head = self.head.image_logits(img, txt, scale, self.rows).float()
        return (1.0 - c.weight) * sim + c.weight * head if c.test_time_fusion else head

    def load_model(self, directory, epoch=None, names=None):
        """The prompts always; the head when this run's classes are among those it was
        trained on (its rows picked by class name), else similarity logits only."""
        super().load_model(directory, epoch, names=["prompt_learner"])
        if not directory:
            return
        path = os.path.join(directory, HEAD, BEST_FILE if epoch is None else epoch_file(epoch))
        trained = load_checkpoint(path).get("classnames") if os.path.exists(path) else None
        self.rows = head_rows(trained, self.classnames)
        if self.rows is None:
            logger.info(f"DePT: the evaluated classes are not the CAT head's ({path} "
                        f"{'is not there' if trained is None else f'was trained on {len(trained)} other classes'}): "
                        f"similarity logits only")
            return
        self.head.resize(len(trained))
        super().load_model(directory, epoch, names=[HEAD])
        logger.info(f"DePT: the CAT head scores these {len(self.rows)} classes (of its {len(trained)}), "
                    f"{'fused with weight ' + str(self.dept.weight) if self.dept.test_time_fusion else 'alone'}")

    def result_metadata(self):
        return {**super().result_metadata(), "dept_weight": self.dept.weight,
                "dept_head_used": self.rows is not None}


class RawFrozenImages:
    """For DePT over a frozen image encoder: the feature caches hold its unnormalized features
    (the head reads their scale; the similarity logits normalize them)."""

    def encode_frozen(self, images):
        with self.precision.autocast():
            return encode_images(self.frozen_clip, images, normalize=False)

    def frozen_feature_identity(self):
        return {**super().frozen_feature_identity(), "features": RAW_FEATURES}


@TRAINER_REGISTRY.register()
class ExtrasLinearProbeCoOp(DePT, RawFrozenImages, CoOp):
    """CoOp + DePT."""


@TRAINER_REGISTRY.register()
class ExtrasLinearProbeKgCoOp(DePT, RawFrozenImages, KgCoOp):
    """KgCoOp + DePT: KgCoOp's W * (1 - mean cos(t, t^h)) joins the loss unscaled by lambda."""

    # DePT's train.py: KgCoOp's keys under TRAINER.COOP with W 2.0 (and ALPHA, never read)
    PUBLISHED_DEFAULTS = {**KGCOOP_PUBLISHED_DEFAULTS, "W": 2.0}

    @classmethod
    def adapt_cfg_sources(cls, sources):
        out = []
        for label, n in read_published_dept_keys(sources):
            if _get(n, ("TRAINER", "COOP", "ALPHA")) is not None:
                n = n.clone()
                del n.TRAINER.COOP["ALPHA"]
            out.append((label, n))
        return read_published_coop_keys(out, "KGCOOP", cls.PUBLISHED_DEFAULTS, KGCOOP_CTX_INIT, cls.__name__)

    def base_terms(self, txt):
        return {"loss_kg": self.hparams.w * cosine_consistency(txt, self.text_h)}


@TRAINER_REGISTRY.register()
class ExtrasLinearProbeCoCoOp(DePT, RawFrozenImages, CoCoOp):
    """CoCoOp + DePT: class text features per image, the head's text rows those of each
    image's own prompts."""

    def dept_features(self, image):
        img = self.model.image_features(image, normalize=False)
        pl, enc = self.model.prompt_learner, self.model.text_encoder
        n = self.images_per_call or img.shape[0]
        txt = []
        for i in range(0, img.shape[0], n):   # bounded text-encoder calls (PROMPTS_PER_CALL)
            part = F.normalize(img[i:i + n], dim=-1)
            tokens = pl.tokenized_prompts.repeat(part.shape[0], 1)
            txt.append(enc(pl(part), tokens).float().view(part.shape[0], pl.n_cls, -1))
        return img, torch.cat(txt)


@TRAINER_REGISTRY.register()
class ExtrasLinearProbeMaPLe(DePT, MaPLe):
    """MaPLe + DePT: the prompted image encoder's features (no feature cache)."""
