"""Zero-shot CLIP with hand-crafted prompts (CoOp's ZeroshotCLIP and ZeroshotCLIP2)."""
from dataclasses import dataclass

from yacs.config import CfgNode as CN

from e2mim_clip.prompt_trainer import ClipTrainer
from e2mim_clip.prompting import image_features_of
from e2mim_clip.templates import TEMPLATE_SETS
from e2mim_engine.method_config import config_node, option
from e2mim_engine.trainer import TRAINER_REGISTRY


@dataclass(frozen=True)
class ZSCLIPConfig:
    """TRAINER.ZSCLIP's keys besides PREC (shared by ZeroshotCLIP and ZeroshotCLIP2)."""
    template_set: str = option("coop", choices=TEMPLATE_SETS)   # a set of e2mim_clip.templates
    ensemble: bool = option(False)                              # also CoOp's 7 ImageNet templates


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(ClipTrainer):
    """Classifies with the dataset's hand-crafted template (or, with ENSEMBLE, CoOp's 7
    ImageNet templates plus the dataset's). Text features are computed once."""

    node = "ZSCLIP"
    config_view = ZSCLIPConfig
    ensemble_default = False
    # Frozen encoder only; nothing is trained, so TRAIN_VIEWS changes nothing.
    frozen_eval_features = frozen_train_features = True

    @classmethod
    def extend_cfg(cls, cfg):
        if "ZSCLIP" not in cfg.TRAINER:  # shared by ZeroshotCLIP and ZeroshotCLIP2
            cfg.TRAINER.ZSCLIP = CN()
            cfg.TRAINER.ZSCLIP.PREC = "fp16"
            config_node(ZSCLIPConfig, cfg.TRAINER.ZSCLIP)

    def check_cfg(self, cfg):
        self.hparams  # noqa: B018 - parses (and checks) the node once

    def build_model(self):
        c = self.hparams
        self.clip = self.build_clip()
        self.text_features = self.handcrafted_view(self.clip, c.template_set, c.ensemble or self.ensemble_default)
        self.logit_scale = self.clip.logit_scale.exp().float()

    def model_inference(self, image):
        with self.precision.autocast():
            img = image_features_of(self.clip, image)  # images, or their cached features
        return self.logit_scale * img @ self.text_features.t()

    def set_model_mode(self, mode="train", names=None):
        super().set_model_mode(mode, names)  # nothing registered: records the mode
        self.clip.eval()

    def train(self, *args, **kwargs):
        # Nothing to learn: "training" zero-shot CLIP is evaluating it.
        self.test()

    def result_metadata(self):
        return {"templates": self.templates}


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """CoOp's name for the template-ensemble variant."""

    ensemble_default = True
