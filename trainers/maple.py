"""MaPLe: multi-modal prompt learning (Khattak et al., CVPR 2023).

Language prompts at the input of the first PROMPT_DEPTH text layers; the vision prompts of
the same layers are not free parameters but linear maps of them (one coupling per layer,
text width -> vision width, read from the model), so the two branches learn together. The
input context is initialised from the first N_CTX tokens of CTX_INIT (the rest of CTX_INIT
stays as fixed words); deeper prompts from N(0, 0.02); the deep couplings start as copies of
one separately drawn layer (equal to each other, not to the input-layer coupling), drawn in the
published order, so a seed gives the published initial tensors. Loss: CE on scale * v . t. Only
the prompts and couplings are learned and checkpointed ("prompt_learner").

Config keys (the published names and defaults): TRAINER.MAPLE.{N_CTX=2,
CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=9}; PROMPT_DEPTH 1 is shallow MaPLe; a
depth above the encoders' layer count prompts every layer (logged).
"""
from yacs.config import CfgNode as CN

from e2mim_clip.deep_prompts import DeepPromptTrainer, MaPLePromptLearner, coupled_depth
from e2mim_engine.checkpoint import PublishedFormat
from e2mim_engine.trainer import TRAINER_REGISTRY


@TRAINER_REGISTRY.register()
class MaPLe(DeepPromptTrainer):
    node = "MAPLE"
    # The published code registers the whole model as "MultiModalPromptLearner"; its deep text
    # prompts are compound_prompts_text.<i>, the rest of the prompt learner has our names.
    published_checkpoint = PublishedFormat(
        "MultiModalPromptLearner", prefix="prompt_learner.",
        rename=((r"^prompt_learner\.compound_prompts_text\.(\d+)$", r"prompt_learner.text_deep.\1"),))

    @classmethod
    def extend_cfg(cls, cfg):
        c = cfg.TRAINER.MAPLE = CN()
        c.N_CTX = 2                  # prompt tokens per layer (text and vision)
        c.CTX_INIT = "a photo of a"  # initial words of the text input context
        c.PREC = "fp16"
        c.PROMPT_DEPTH = 9           # layers 0 .. PROMPT_DEPTH-1 of both encoders get prompts (>= 1)

    def build_prompt_learner(self, clip_model):
        c = self.cfg_node()
        depth = coupled_depth(clip_model, c.PROMPT_DEPTH, "TRAINER.MAPLE.PROMPT_DEPTH")
        return MaPLePromptLearner(clip_model, self.classnames, c.N_CTX, c.CTX_INIT, depth,
                                  key="TRAINER.MAPLE.N_CTX")
