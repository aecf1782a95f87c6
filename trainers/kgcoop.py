"""KgCoOp: knowledge-guided context optimization (Yao et al., CVPR 2023).

CoOp plus a term that keeps the learned class text features close to the hand-crafted ones:

    loss = CE(scale * v . t^s, y) + W * (1 - mean_c cos(t^s_c, t^h_c))

as in htyao89/KgCoOp (trainers/kgcoop.py: torch.nn.CosineSimilarity over the normalized
features, 1 - the mean over classes). t^h_c is the dataset's template from the "kgcoop" set
(CoOp's set with "a photo of a {}, a type of texture." for DTD) encoded once by the frozen
encoder; only the context is learned and checkpointed ("prompt_learner").

Config keys. Our node is TRAINER.KGCOOP.{N_CTX=4, CSC=False, CTX_INIT="a photo of a",
PREC="fp16", CLASS_TOKEN_POSITION="end", W=8.0, TEMPLATE_SET="kgcoop"}, the settings of
KgCoOp's published base-to-new runs. KgCoOp's own yaml files and scripts put these keys
under CoOp's node instead (TRAINER.COOP.{N_CTX, CSC, CTX_INIT, CLASS_TOKEN_POSITION, PREC}
plus TRAINER.COOP.W, and CTX_INIT: True meaning "a photo of a"). So that they run
unchanged, the rule is:

  * KgCoOp reads TRAINER.KGCOOP, unless a TRAINER.COOP key differs from CoOp's default or
    TRAINER.COOP.W is set; then it reads all its keys from TRAINER.COOP, with the meanings
    of KgCoOp's code: CTX_INIT True -> "a photo of a", False -> random init, W unset -> 1.0
    (KgCoOp's default). A CTX_INIT string is used as given (KgCoOp's code replaces any true
    value by "a photo of a"). TEMPLATE_SET always comes from TRAINER.KGCOOP.
  * Changing keys under both nodes in one run is an error (one of them would be ignored).

For that, this module adds TRAINER.COOP.W (default None: not set) and lets
TRAINER.COOP.CTX_INIT take KgCoOp's booleans (its default becomes None, which CoOp reads as
"" like before: yacs accepts a value of another type only over a None default).
"""
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from e2mim_engine.errors import ConfigError
from e2mim_engine.trainer import TRAINER_REGISTRY
from e2mim_engine.utils import logger

from .coop import CoOp, PromptTrainer, compute_accuracy
from e2mim_clip.prompting import handcrafted_text_features
from e2mim_clip.templates import TEMPLATE_SETS, dataset_template

KGCOOP_CTX_INIT = "a photo of a"   # what KgCoOp's code uses whenever CTX_INIT is true
KGCOOP_W_DEFAULT = 1.0             # TRAINER.COOP.W's default in KgCoOp's train.py
SHARED_KEYS = ("N_CTX", "CSC", "CTX_INIT", "PREC", "CLASS_TOKEN_POSITION")


def _node_defaults(extend):
    scratch = CN()
    scratch.TRAINER = CN()
    extend(scratch)
    return scratch.TRAINER


def _kgcoop_node(cfg):
    c = cfg.TRAINER.KGCOOP = CN()
    c.N_CTX = 4
    c.CSC = False
    c.CTX_INIT = KGCOOP_CTX_INIT
    c.PREC = "fp16"
    c.CLASS_TOKEN_POSITION = "end"
    c.W = 8.0                      # weight of 1 - mean cos(t^s, t^h)
    c.TEMPLATE_SET = "kgcoop"      # trainers/templates.py


def resolve_kgcoop_settings(cfg):
    """(settings CfgNode, node name it came from) under the rule in the module docstring."""
    coop, kg = cfg.TRAINER.COOP, cfg.TRAINER.KGCOOP
    coop_def = _node_defaults(CoOp.extend_cfg).COOP
    kg_def = _node_defaults(_kgcoop_node).KGCOOP

    def coop_changed(k):
        if k == "CTX_INIT":
            return coop.CTX_INIT not in (None, "")
        return coop[k] != coop_def[k]

    coop_set = [f"TRAINER.COOP.{k}" for k in SHARED_KEYS if coop_changed(k)]
    if coop.get("W") is not None:
        coop_set.append("TRAINER.COOP.W")
    kg_set = [f"TRAINER.KGCOOP.{k}" for k in SHARED_KEYS + ("W",) if kg[k] != kg_def[k]]
    s = CN()
    s.TEMPLATE_SET = kg.TEMPLATE_SET
    if not coop_set:
        for k in SHARED_KEYS + ("W",):
            s[k] = kg[k]
        return s, "KGCOOP"
    if kg_set:
        raise ConfigError(
            f"KgCoOp reads its keys from one node: {', '.join(coop_set)} (KgCoOp's published keys) and "
            f"{', '.join(kg_set)} are both set. Use TRAINER.KGCOOP.* only, or TRAINER.COOP.* (+ W) only.")
    for k in SHARED_KEYS:
        s[k] = coop[k]
    ctx = coop.CTX_INIT
    s.CTX_INIT = KGCOOP_CTX_INIT if ctx is True else ("" if ctx in (False, None) else str(ctx))
    s.W = float(coop.W) if coop.get("W") is not None else KGCOOP_W_DEFAULT
    return s, "COOP"


@TRAINER_REGISTRY.register()
class KgCoOp(PromptTrainer):
    node = "KGCOOP"

    @classmethod
    def extend_cfg(cls, cfg):
        _kgcoop_node(cfg)
        if "COOP" not in cfg.TRAINER:
            CoOp.extend_cfg(cfg)
        # KgCoOp's published keys under CoOp's node (see the module docstring).
        cfg.TRAINER.COOP.W = None
        if cfg.TRAINER.COOP.CTX_INIT == "":
            cfg.TRAINER.COOP.CTX_INIT = None

    def check_cfg(self, cfg):
        self.settings, self.node = resolve_kgcoop_settings(cfg)
        if self.settings.TEMPLATE_SET not in TEMPLATE_SETS:
            raise ConfigError(f"Unknown TRAINER.KGCOOP.TEMPLATE_SET='{self.settings.TEMPLATE_SET}'; "
                              f"valid: {', '.join(TEMPLATE_SETS)}.")
        if not self.settings.W >= 0:
            raise ConfigError(f"TRAINER.{self.node}.W must be >= 0; got {self.settings.W}.")

    def cfg_node(self):
        return self.settings

    def build_model(self):
        super().build_model()
        s = self.settings
        self.templates = [dataset_template(self.cfg, self.dm.dataset, s.TEMPLATE_SET)]
        with self.precision.autocast():  # frozen: encoded once for this run's classes
            self.text_h = handcrafted_text_features(self.model.clip, self.classnames, self.templates,
                                                    self.model.text_encoder)
        logger.info(f"KgCoOp: keys from TRAINER.{self.node}; W {s.W}; hand-crafted prompts "
                    f"{self.templates} ({len(self.classnames)} classes, encoded once)")

    def kg_loss(self, text_features):
        """1 - mean over classes of cos(learned, hand-crafted)."""
        return 1.0 - F.cosine_similarity(text_features.float(), self.text_h, dim=1, eps=1e-7).mean()

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            text = self.model.text_features()
            output = self.model(image, text)
        loss_ce = F.cross_entropy(output.float(), label)
        loss_kg = self.kg_loss(text)
        loss = loss_ce + self.settings.W * loss_kg
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "loss_ce": loss_ce.item(), "loss_kg": loss_kg.item(),
                "acc": compute_accuracy(output, label)}

    def result_metadata(self):
        return {"prompt_init": self.model.prompt_learner.prompt_prefix, "templates": self.templates,
                "template_set": self.settings.TEMPLATE_SET, "kg_weight": self.settings.W,
                "keys_from": f"TRAINER.{self.node}"}
