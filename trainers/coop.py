"""CoOp: learnable context vectors in front of the class name (Zhou et al., IJCV 2022).

The model and the cross-entropy step are the prompt-trainer base's (e2mim_clip.prompt_trainer),
which every prompt method builds on; CoOp adds only its config node.
"""
from e2mim_clip.prompt_trainer import PUBLISHED_PROMPT_LEARNER, PromptTrainer, context_node
from e2mim_engine.trainer import TRAINER_REGISTRY


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    published_checkpoint = PUBLISHED_PROMPT_LEARNER
    node = "COOP"
    # The image side is the frozen encoder: cached features serve evaluation and, with
    # DATALOADER.FEATURE_CACHE.TRAIN_VIEWS, training.
    frozen_eval_features = frozen_train_features = True

    @classmethod
    def extend_cfg(cls, cfg):
        cfg.TRAINER.COOP = context_node()  # N_CTX 16, CSC False, CTX_INIT "", PREC fp16, end
