"""IVLP: independent vision and language prompts (the deep-prompt baseline of MaPLe, Khattak
et al., CVPR 2023, and of PromptSRC).

Separate learnable tokens at the input of the first PROMPT_DEPTH_TEXT text layers and the
first PROMPT_DEPTH_VISION image layers (e2mim_clip.deep_prompts), trained with CE on
scale * v . t; nothing couples the two branches. Only the prompts are learned and
checkpointed ("prompt_learner").

Config keys (the published names and defaults): TRAINER.IVLP.{N_CTX_VISION=2, N_CTX_TEXT=2,
CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9}.
PROMPT_DEPTH_VISION 0 (with N_CTX_VISION 0) is deep language prompting only; a depth above
the encoder's layer count prompts every layer (logged; results.json has the depths used).
"""
from e2mim_clip.deep_prompts import VL_PUBLISHED, DeepPromptTrainer, ivlp_node
from e2mim_engine.trainer import TRAINER_REGISTRY


@TRAINER_REGISTRY.register()
class IVLP(DeepPromptTrainer):
    published_checkpoint = VL_PUBLISHED
    node = "IVLP"

    @classmethod
    def extend_cfg(cls, cfg):
        cfg.TRAINER.IVLP = ivlp_node()

    def build_prompt_learner(self, clip_model):
        return self.build_ivlp_learner(clip_model)
