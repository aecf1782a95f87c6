"""KgCoOp: knowledge-guided context optimization (Yao et al., CVPR 2023).

CoOp plus a term that keeps the learned class text features close to the hand-crafted ones:

    loss = CE(scale * v . t^s, y) + W * (1 - mean_c cos(t^s_c, t^h_c))

as in htyao89/KgCoOp (trainers/kgcoop.py: torch.nn.CosineSimilarity over the normalized
features, 1 - the mean over classes). t^h_c is the dataset's template from the "kgcoop" set
(CoOp's set with "a photo of a {}, a type of texture." for DTD) encoded once by the frozen
encoder; only the context is learned and checkpointed ("prompt_learner").

Config keys: TRAINER.KGCOOP.{N_CTX=4, CSC=False, CTX_INIT="a photo of a", PREC="fp16",
CLASS_TOKEN_POSITION="end", W=8.0, TEMPLATE_SET="kgcoop"}, the settings of KgCoOp's published
base-to-new runs. KgCoOp's own yaml files and scripts put these keys under CoOp's node
instead (TRAINER.COOP.{N_CTX, CSC, CTX_INIT, CLASS_TOKEN_POSITION, PREC, W}, with CTX_INIT
True meaning "a photo of a"). ``KgCoOp.adapt_cfg_sources`` reads them at merge time, in one
place: when any source of a KgCoOp run sets TRAINER.COOP keys, those keys become
TRAINER.KGCOOP keys on top of the defaults of KgCoOp's code (N_CTX 16, CSC False, random
init, PREC fp16, CLASS_TOKEN_POSITION end, W 1.0); CTX_INIT True -> "a photo of a", False ->
random init, a string as given. TRAINER.KGCOOP.KEYS_FROM records which layout was read.
Keys under both nodes in one run are an error (one of them would be ignored).
"""
from dataclasses import dataclass

import torch.nn.functional as F

from e2mim_clip.prompt_trainer import (PUBLISHED_PROMPT_LEARNER, PromptTrainer, context_node,
                                       read_published_coop_keys)
from e2mim_clip.prompting import cosine_consistency
from e2mim_clip.templates import TEMPLATE_SETS
from e2mim_engine.evaluation import compute_accuracy
from e2mim_engine.method_config import AT_LEAST_0, config_node, option
from e2mim_engine.trainer import TRAINER_REGISTRY

KGCOOP_CTX_INIT = "a photo of a"   # what KgCoOp's code uses whenever CTX_INIT is true
# TRAINER.COOP.* defaults in KgCoOp's train.py (W: its loss weight), used with its layout.
PUBLISHED_DEFAULTS = {"N_CTX": 16, "CSC": False, "CTX_INIT": "", "PREC": "fp16",
                      "CLASS_TOKEN_POSITION": "end", "W": 1.0}


@dataclass(frozen=True)
class KgCoOpConfig:
    """TRAINER.KGCOOP's own keys (besides CoOp's context keys), parsed once per run."""
    w: float = option(8.0, check=AT_LEAST_0)                 # weight of 1 - mean cos(t^s, t^h)
    template_set: str = option("kgcoop", choices=TEMPLATE_SETS)
    keys_from: str = option("TRAINER.KGCOOP")  # set by adapt_cfg_sources when KgCoOp's layout is read


@TRAINER_REGISTRY.register()
class KgCoOp(PromptTrainer):
    published_checkpoint = PUBLISHED_PROMPT_LEARNER
    node = "KGCOOP"
    config_view = KgCoOpConfig
    frozen_eval_features = frozen_train_features = True  # the image side is the frozen encoder

    @classmethod
    def extend_cfg(cls, cfg):
        cfg.TRAINER.KGCOOP = config_node(KgCoOpConfig, context_node(n_ctx=4, ctx_init=KGCOOP_CTX_INIT))

    @classmethod
    def adapt_cfg_sources(cls, sources):
        """KgCoOp's published TRAINER.COOP keys read as TRAINER.KGCOOP (module docstring)."""
        return read_published_coop_keys(sources, "KGCOOP", PUBLISHED_DEFAULTS, KGCOOP_CTX_INIT, "KgCoOp")

    def config_prefix(self):
        return self.cfg_node().KEYS_FROM  # errors name the keys as the user's layout wrote them

    def check_cfg(self, cfg):
        self.hparams  # noqa: B018 - parses (and checks) the node once

    def build_model(self):
        super().build_model()
        c = self.hparams
        self.build_handcrafted_view(c.template_set, what=f"KgCoOp (keys from {c.keys_from}; W {c.w})")

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            text = self.model.text_features()
            output = self.model(image, text)
        loss_ce = F.cross_entropy(output.float(), label)
        loss_kg = cosine_consistency(text, self.text_h)
        loss = loss_ce + self.hparams.w * loss_kg
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "loss_ce": loss_ce.item(), "loss_kg": loss_kg.item(),
                "acc": compute_accuracy(output, label)}

    def result_metadata(self):
        c = self.hparams
        return {"prompt_init": self.model.prompt_learner.prompt_prefix, "templates": self.templates,
                "template_set": c.template_set, "kg_weight": c.w, "keys_from": c.keys_from}
