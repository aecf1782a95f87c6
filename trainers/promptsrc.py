"""PromptSRC: prompting with self-regulating constraints (Khattak et al., ICCV 2023).

IVLP's deep vision and language prompts (e2mim_clip.deep_prompts), trained with

    loss = CE(scale * v . t, y)
         + TEXT_LOSS_WEIGHT  * L1(t, t_zs)          (mean over classes and dimensions)
         + IMAGE_LOSS_WEIGHT * L1(v, v_zs)          (mean over images and dimensions)
         + KL(softmax(z_zs) || softmax(z)) / (images * classes)

where v, t are the prompted normalized features, v_zs the frozen model's (the same CLIP run
without prompts, so no second copy), t_zs the text anchor: the normalized mean of the frozen
text features of PromptSRC's 60 ImageNet templates per class, encoded once (at the first
training step, so evaluation-only runs skip it), and z_zs = scale * v_zs . t_zs. After each epoch e (1..E) the prompts are accumulated with
Gaussian weights w_e = N(e; GPA_MEAN, GPA_STD) / sum; after the last epoch the prompts are
replaced by that weighted average (Gaussian prompt aggregation), which is what the final
checkpoint holds and what is evaluated. The running sum is a persistent buffer of the
prompt learner ("gpa.*"), so a resumed run aggregates as the uninterrupted one.

Unlike the published code, every precision computes the full loss (its AMP branch drops the
regularisers) and the anchor is encoded in the run's precision.

Config keys (the published names and defaults): TRAINER.PROMPTSRC.{N_CTX_VISION=4,
N_CTX_TEXT=4, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH_VISION=9,
PROMPT_DEPTH_TEXT=9, TEXT_LOSS_WEIGHT=25, IMAGE_LOSS_WEIGHT=10, GPA_MEAN=15, GPA_STD=1}.
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from e2mim_clip.deep_prompts import VL_PUBLISHED, DeepPromptTrainer, ivlp_node
from e2mim_clip.prompting import tokenize
from e2mim_clip.towers import towers
from e2mim_engine.method_config import AT_LEAST_0, config_node, option
from e2mim_engine.trainer import TRAINER_REGISTRY
from e2mim_engine.utils import logger

# PromptSRC's text-anchor ensemble: 60 of CLIP's ImageNet prompt-engineering templates,
# used for every dataset.
PROMPTSRC_TEMPLATES = [
    "a photo of a {}.", "a bad photo of a {}.", "a photo of many {}.",
    "a sculpture of a {}.", "a photo of the hard to see {}.", "a low resolution photo of the {}.",
    "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.",
    "a photo of a hard to see {}.", "a bright photo of a {}.", "a photo of a clean {}.",
    "a photo of a dirty {}.", "a dark photo of the {}.", "a drawing of a {}.",
    "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.",
    "a bright photo of the {}.", "a cropped photo of a {}.", "a plastic {}.",
    "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.",
    "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.",
    "a close-up photo of the {}.", "the origami {}.", "the {} in a video game.",
    "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
    "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.",
    "a photo of a nice {}.", "a photo of a weird {}.", "a blurry photo of a {}.",
    "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.",
]


def gaussian_weights(n_epochs, mean, std):
    """Normalized Gaussian weights of epochs 1..n_epochs (float64; computed in log space so
    a mean far from every epoch still gives finite weights)."""
    e = torch.arange(1, n_epochs + 1, dtype=torch.float64)
    return torch.softmax(-0.5 * ((e - mean) / std) ** 2, dim=0)


def promptsrc_losses(logits, label, text, text_zs, image, image_zs, logits_zs, text_weight, image_weight):
    """The PromptSRC loss terms (float32 inputs): dict of ce, scl_text, scl_image, scl_logits, loss."""
    ce = F.cross_entropy(logits, label)
    scl_text = F.l1_loss(text, text_zs, reduction="mean") * text_weight
    scl_image = F.l1_loss(image, image_zs, reduction="mean") * image_weight
    scl_logits = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(logits_zs, dim=1),
                          reduction="sum", log_target=True) / logits.numel()
    return {"loss": ce + scl_text + scl_image + scl_logits, "ce": ce, "scl_text": scl_text,
            "scl_image": scl_image, "scl_logits": scl_logits}


@dataclass(frozen=True)
class PromptSRCConfig:
    """TRAINER.PROMPTSRC's own keys (besides IVLP's), parsed once per run."""
    text_loss_weight: float = option(25, check=AT_LEAST_0)   # L1 of text features to the template-ensemble anchor
    image_loss_weight: float = option(10, check=AT_LEAST_0)  # L1 of image features to the frozen model's
    gpa_mean: float = option(15)       # Gaussian prompt aggregation over epochs: mean (epochs from 1)
    gpa_std: float = option(1, check=(lambda v: v > 0, "must be > 0"))  # ... and standard deviation


@TRAINER_REGISTRY.register()
class PromptSRC(DeepPromptTrainer):
    node = "PROMPTSRC"
    # its files hold the aggregated prompts (GPA replaces them after the last epoch), not our
    # running sums, which only training reads
    published_checkpoint = VL_PUBLISHED._replace(not_saved=(r"^gpa\.",))

    config_view = PromptSRCConfig

    @classmethod
    def extend_cfg(cls, cfg):
        cfg.TRAINER.PROMPTSRC = config_node(PromptSRCConfig, ivlp_node(n_ctx_vision=4, n_ctx_text=4))

    def check_cfg(self, cfg):
        self.hparams  # noqa: B018 - parses (and checks) the node once

    def build_prompt_learner(self, clip_model):
        pl = self.build_ivlp_learner(clip_model)
        pl.gpa = nn.Module()  # running weighted sum of each prompt over epochs (checkpointed)
        for name, p in pl.named_parameters():
            pl.gpa.register_buffer(name.replace(".", "_"), torch.zeros_like(p.detach()))
        return pl

    def build_model(self):
        super().build_model()
        c = self.hparams
        self.gpa_weights = gaussian_weights(self.max_epoch, c.gpa_mean, c.gpa_std)
        self.templates = list(PROMPTSRC_TEMPLATES)
        self._text_anchor = None
        logger.info(f"PromptSRC: GPA over {self.max_epoch} epochs (mean {c.gpa_mean}, std {c.gpa_std})")

    @property
    def text_anchor(self):
        """Encoded at the first training step (evaluation-only runs never need it), then kept."""
        if self._text_anchor is None:
            self._text_anchor = self.encode_text_anchor()
            logger.info(f"PromptSRC: text anchor from {len(PROMPTSRC_TEMPLATES)} templates x "
                        f"{len(self.classnames)} classes (encoded once)")
        return self._text_anchor

    @torch.no_grad()
    def encode_text_anchor(self, chunk=1000):
        """[C, D]: normalized mean over templates of the frozen (unnormalized) text features."""
        clip_model, enc = self.model.clip, self.model.text_encoder
        embed = towers(clip_model).token_embedding
        names = [c.replace("_", " ") for c in self.classnames]
        texts = [t.format(n) for t in PROMPTSRC_TEMPLATES for n in names]  # template-major
        feats = []
        with self.precision.autocast():
            for i in range(0, len(texts), chunk):
                tok = tokenize(texts[i:i + chunk], model=clip_model).to(embed.weight.device)
                feats.append(enc(embed(tok), tok).float())
        mean = torch.cat(feats).view(len(PROMPTSRC_TEMPLATES), len(names), -1).mean(dim=0)
        return F.normalize(mean, dim=-1)

    def compute_losses(self, image, label):
        model, c = self.model, self.hparams
        with self.precision.autocast():
            text = model.text_features()
            img = model.image_features(image)
            img_zs = model.frozen_image_features(image)
        scale = model.logit_scale
        logits = scale * img @ text.t()
        logits_zs = (scale * img_zs @ self.text_anchor.t()).detach()
        return promptsrc_losses(logits, label, text, self.text_anchor, img, img_zs, logits_zs,
                                c.text_loss_weight, c.image_loss_weight), logits

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        return self.update_on_losses(*self.compute_losses(image, label), label)

    @torch.no_grad()
    def aggregate_prompts(self):
        """Add this epoch's weighted prompts to the running sum; after the last epoch the
        prompts become the aggregate."""
        pl, c = self.model.prompt_learner, self.hparams
        if len(self.gpa_weights) != self.max_epoch:  # train(max_epoch=...) changed the run's length
            self.gpa_weights = gaussian_weights(self.max_epoch, c.gpa_mean, c.gpa_std)
        w = float(self.gpa_weights[self.epoch])
        last = self.epoch + 1 == self.max_epoch
        for name, p in pl.named_parameters():
            acc = getattr(pl.gpa, name.replace(".", "_"))
            acc.add_(p.detach().float(), alpha=w)
            if last:
                p.copy_(acc)
        if last:
            logger.info("PromptSRC: prompts replaced by their Gaussian-weighted average over epochs")

    def after_epoch(self):
        self.aggregate_prompts()  # before the epoch's checkpoint, so the last one holds the aggregate
        super().after_epoch()

    def result_metadata(self):
        c = self.hparams
        return {**super().result_metadata(), "templates": self.templates, "text_loss_weight": c.text_loss_weight,
                "image_loss_weight": c.image_loss_weight, "gpa_mean": c.gpa_mean, "gpa_std": c.gpa_std}
