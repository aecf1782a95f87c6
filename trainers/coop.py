"""CoOp: learnable context vectors in front of the class name (Zhou et al., IJCV 2022)."""
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from e2mim_engine.errors import ConfigError
from e2mim_engine.trainer import TRAINER_REGISTRY, TrainerBase

from e2mim_clip.loader import load_clip
from e2mim_clip.prompting import PromptCLIP, PromptLearner


def compute_accuracy(output, label):
    return (output.argmax(dim=1) == label).float().mean().item() * 100.0


class PromptTrainer(TrainerBase):
    """Shared plumbing for methods built on PromptCLIP: loads CLIP in the node's PREC,
    builds the prompt learner from the node's context keys, caches the class text
    features during evaluation. Subclasses name their node and write forward_backward."""

    node = "COOP"

    def cfg_node(self):
        return self.cfg.TRAINER[self.node]

    def build_clip(self):
        cfg = self.cfg
        prec = self.set_precision(self.cfg_node().PREC, f"TRAINER.{self.node}.PREC")
        return load_clip(cfg.MODEL.BACKBONE.NAME, self.device, prec.weight_dtype,
                         cfg.MODEL.BACKBONE.CACHE_DIR, cfg.INPUT.SIZE)

    def build_prompt_learner(self, clip_model):
        c = self.cfg_node()
        if c.CTX_INIT is not None and not isinstance(c.CTX_INIT, str):
            raise ConfigError(f"TRAINER.{self.node}.CTX_INIT must be a string of initial words such as "
                              f"\"a photo of a\" (or empty); got {c.CTX_INIT!r}. KgCoOp's CTX_INIT: True "
                              f"is understood by the KgCoOp trainer only.")
        return PromptLearner(clip_model, self.classnames, n_ctx=c.N_CTX, ctx_init=c.CTX_INIT,
                             csc=c.get("CSC", False),
                             class_token_position=c.get("CLASS_TOKEN_POSITION", "end")).to(self.device)

    def build_model(self):
        clip_model = self.build_clip()
        self.model = PromptCLIP(clip_model, self.build_prompt_learner(clip_model))
        optim, sched = self.build_optim_sched(self.model.prompt_learner)
        self.register_model("prompt_learner", self.model.prompt_learner, optim, sched)

    def set_model_mode(self, mode="train", names=None):
        super().set_model_mode(mode, names)
        self.model.clip.eval()  # frozen: dropout/batch-norm always in eval mode
        self._eval_text = None

    def model_inference(self, image):
        # Prompts do not change during evaluation: encode the class texts once per test().
        with self.precision.autocast():
            if self._eval_text is None:
                self._eval_text = self.model.text_features()
            return self.model(image, self._eval_text)

    def result_metadata(self):
        return {"prompt_init": self.model.prompt_learner.prompt_prefix}


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    node = "COOP"

    @classmethod
    def extend_cfg(cls, cfg):
        cfg.TRAINER.COOP = CN()
        cfg.TRAINER.COOP.N_CTX = 16
        cfg.TRAINER.COOP.CSC = False
        cfg.TRAINER.COOP.CTX_INIT = ""
        cfg.TRAINER.COOP.PREC = "fp16"
        cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            output = self.model(image)
            loss = F.cross_entropy(output.float(), label)
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)}
