"""CoCoOp: conditional context optimization (Zhou et al., CVPR 2022).

A small meta-net turns each image's feature into a bias added to every context vector, so
every image gets its own class prompts and the text encoder runs once per image and class.
That is why CoCoOp is ~25x slower than CoOp per image in the published code, which loops
over the images of a batch and encodes all 77 token positions of each prompt.

Here the prompts of all images in a group go through ONE call of the shared text encoder
as a [n_images * n_classes, L, d] batch, with L cut at the longest prompt's end-of-text
token (e2mim_clip.prompting): the same logits (tests/test_baselines.py checks them
against a per-image, full-length reference) for a fraction of the compute.
TRAINER.COCOOP.PROMPTS_PER_CALL bounds the prompts per call (images are grouped, at least
one image per call); training accumulates the gradients of the groups, so memory stays
bounded on 1000-class datasets too.

Keys (CoOp's repository): TRAINER.COCOOP.{N_CTX=16, CTX_INIT="", PREC="fp16"}; ours:
PROMPTS_PER_CALL (8192; 0 = no limit) and TRUNCATE (True; False encodes all 77 positions
as the published code does, for timing comparisons only: the features are the same).
The meta-net and the context are registered as "prompt_learner" (the only checkpoint).
"""
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from e2mim_clip.prompt_trainer import PUBLISHED_PROMPT_LEARNER, PromptTrainer
from e2mim_clip.prompting import PromptCLIP, PromptLearner
from e2mim_clip.towers import towers
from e2mim_engine.method_config import config_node, option
from e2mim_engine.evaluation import compute_accuracy
from e2mim_engine.trainer import TRAINER_REGISTRY


class CoCoOpPromptLearner(PromptLearner):
    """CoOp's generic context (class token at the end) plus the meta-net
    Linear(vis_dim, vis_dim // 16) -> ReLU -> Linear(vis_dim // 16, ctx_dim)."""

    def __init__(self, clip_model, classnames, n_ctx=16, ctx_init="", truncate=True):
        super().__init__(clip_model, classnames, n_ctx=n_ctx, ctx_init=ctx_init, csc=False,
                         class_token_position="end", truncate=truncate)
        vis_dim = towers(clip_model).embed_dim  # the image feature's size (shared with the text's)
        ctx_dim = self.ctx.shape[-1]
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
        ])).to(self.ctx.device)  # float32 master weights, like ctx

    def forward(self, im_features):
        """im_features [B, vis_dim] (normalized) -> prompts [B * n_cls, L, d], image-major."""
        bias = self.meta_net(im_features.to(self.ctx.dtype))               # [B, d]
        ctx = (self.ctx.unsqueeze(0) + bias.unsqueeze(1)).to(self.token_prefix.dtype)  # [B, n_ctx, d]
        B, C = ctx.shape[0], self.n_cls
        prefix = self.token_prefix.unsqueeze(0).expand(B, -1, -1, -1)      # [B, C, 1, d]
        suffix = self.token_suffix.unsqueeze(0).expand(B, -1, -1, -1)      # [B, C, *, d]
        ctx = ctx.unsqueeze(1).expand(-1, C, -1, -1)                        # [B, C, n_ctx, d]
        return torch.cat([prefix, ctx, suffix], dim=2).flatten(0, 1)


class CoCoOpCLIP(PromptCLIP):
    """Frozen CLIP + the conditional prompt learner: logits[b, c] = scale * v_b . t_c(v_b)."""

    def logits_from_features(self, img):
        """img: normalized image features [B, D] (float32) -> logits [B, C]."""
        pl = self.prompt_learner
        B, C = img.shape[0], pl.n_cls
        prompts = pl(img)
        tokens = pl.tokenized_prompts.repeat(B, 1)
        txt = F.normalize(self.text_encoder(prompts, tokens).float(), dim=-1).view(B, C, -1)
        return self.logit_scale * torch.einsum("bd,bcd->bc", img, txt)

    def text_features(self):
        raise TypeError("CoCoOp's class prompts depend on the image: use logits_from_features(image_features).")

    def forward(self, image, images_per_call=0):
        img = self.image_features(image)
        n = images_per_call or img.shape[0]
        return torch.cat([self.logits_from_features(img[i:i + n]) for i in range(0, img.shape[0], n)])


@dataclass(frozen=True)
class CoCoOpConfig:
    """TRAINER.COCOOP's own keys (besides N_CTX, CTX_INIT, PREC), parsed once per run."""
    # Most prompts (images x classes) per text-encoder call; 0 = the whole batch at once.
    prompts_per_call: int = option(8192, check=(lambda v: int(v) == v and v >= 0,
                                                "must be an integer >= 0 (0 = no limit)"))
    # Encode prompts only up to the longest end-of-text token (same features, less work).
    truncate: bool = option(True)


@TRAINER_REGISTRY.register()
class CoCoOp(PromptTrainer):
    published_checkpoint = PUBLISHED_PROMPT_LEARNER
    node = "COCOOP"
    prompt_clip = CoCoOpCLIP
    # The meta-net reads the frozen encoder's normalized feature: cached features serve it.
    frozen_eval_features = frozen_train_features = True

    config_view = CoCoOpConfig

    @classmethod
    def extend_cfg(cls, cfg):
        c = cfg.TRAINER.COCOOP = CN()
        c.N_CTX = 16
        c.CTX_INIT = ""
        c.PREC = "fp16"
        config_node(CoCoOpConfig, c)

    def check_cfg(self, cfg):
        self.hparams  # noqa: B018 - parses (and checks) the node once

    def build_prompt_learner(self, clip_model):
        c = self.cfg_node()
        return CoCoOpPromptLearner(clip_model, self.classnames, n_ctx=c.N_CTX, ctx_init=c.CTX_INIT,
                                   truncate=bool(self.hparams.truncate)).to(self.device)

    def epoch_diagnostics(self):
        return {}  # class features depend on the image: no single set of them to compare

    @property
    def images_per_call(self):
        p = int(self.hparams.prompts_per_call)
        return max(1, p // self.model.prompt_learner.n_cls) if p > 0 else 0

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        B = image.shape[0]
        n = self.images_per_call or B
        with self.precision.autocast():
            img = self.model.image_features(image)  # frozen encoder, no autograd
        self.model_zero_grad()
        # Groups of images: the per-group losses sum to the batch mean, and each group's
        # graph is freed by its backward, so memory is bounded by one group.
        total, outputs = 0.0, []
        for i in range(0, B, n):
            with self.precision.autocast():
                logits = self.model.logits_from_features(img[i:i + n])
            loss = F.cross_entropy(logits.float(), label[i:i + n], reduction="sum") / B
            self.model_backward(loss)
            total += loss.item()
            outputs.append(logits.detach())
        self.model_update()
        return {"loss": total, "acc": compute_accuracy(torch.cat(outputs), label)}

    def model_inference(self, image):
        with self.precision.autocast():
            return self.model(image, self.images_per_call)
