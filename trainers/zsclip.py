"""Zero-shot CLIP with hand-crafted prompts (CoOp's ZeroshotCLIP and ZeroshotCLIP2)."""
from yacs.config import CfgNode as CN

from e2mim_engine.trainer import TRAINER_REGISTRY, TrainerBase

from e2mim_clip.loader import load_clip
from e2mim_clip.prompting import encode_images, handcrafted_text_features
from e2mim_clip.templates import ENSEMBLE_TEMPLATES, dataset_template


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(TrainerBase):
    """Classifies with the dataset's hand-crafted template (or, with ENSEMBLE, CoOp's 7
    ImageNet templates plus the dataset's). Text features are computed once."""

    ensemble_default = False

    @classmethod
    def extend_cfg(cls, cfg):
        if "ZSCLIP" not in cfg.TRAINER:
            cfg.TRAINER.ZSCLIP = CN()
            cfg.TRAINER.ZSCLIP.PREC = "fp16"
            cfg.TRAINER.ZSCLIP.TEMPLATE_SET = "coop"   # see trainers/templates.py
            cfg.TRAINER.ZSCLIP.ENSEMBLE = False

    def build_model(self):
        cfg, c = self.cfg, self.cfg.TRAINER.ZSCLIP
        prec = self.set_precision(c.PREC, "TRAINER.ZSCLIP.PREC")
        self.clip = load_clip(cfg.MODEL.BACKBONE.NAME, self.device, prec.weight_dtype,
                              cfg.MODEL.BACKBONE.CACHE_DIR, cfg.INPUT.SIZE)
        templates = [dataset_template(cfg, self.dm.dataset, c.TEMPLATE_SET)]
        if c.ENSEMBLE or self.ensemble_default:
            templates = ENSEMBLE_TEMPLATES + templates
        self.templates = templates
        with prec.autocast():
            self.text_features = handcrafted_text_features(self.clip, self.classnames, templates)
        self.logit_scale = self.clip.logit_scale.exp().float()

    def model_inference(self, image):
        with self.precision.autocast():
            img = encode_images(self.clip, image)
        return self.logit_scale * img @ self.text_features.t()

    def set_model_mode(self, mode="train", names=None):
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


