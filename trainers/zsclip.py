"""Zero-shot CLIP with hand-crafted prompts (CoOp's ZeroshotCLIP and ZeroshotCLIP2)."""
from yacs.config import CfgNode as CN

from e2mim_clip.prompt_trainer import ClipTrainer
from e2mim_clip.prompting import image_features_of
from e2mim_engine.trainer import TRAINER_REGISTRY


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(ClipTrainer):
    """Classifies with the dataset's hand-crafted template (or, with ENSEMBLE, CoOp's 7
    ImageNet templates plus the dataset's). Text features are computed once."""

    node = "ZSCLIP"
    ensemble_default = False
    # Frozen encoder only; nothing is trained, so TRAIN_VIEWS changes nothing.
    frozen_eval_features = frozen_train_features = True

    @classmethod
    def extend_cfg(cls, cfg):
        if "ZSCLIP" not in cfg.TRAINER:  # shared by ZeroshotCLIP and ZeroshotCLIP2
            cfg.TRAINER.ZSCLIP = CN()
            cfg.TRAINER.ZSCLIP.PREC = "fp16"
            cfg.TRAINER.ZSCLIP.TEMPLATE_SET = "coop"   # a set of e2mim_clip.templates
            cfg.TRAINER.ZSCLIP.ENSEMBLE = False

    def build_model(self):
        c = self.cfg_node()
        self.clip = self.build_clip()
        self.text_features = self.handcrafted_view(self.clip, c.TEMPLATE_SET, c.ENSEMBLE or self.ensemble_default)
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
