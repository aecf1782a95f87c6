"""ProGrad: prompt-aligned gradient (Zhu et al., ICCV 2023).

CoOp's context, trained with the cross-entropy gradient made to not fight the zero-shot
model. Per learnable tensor (the context), with s the prompt's logits and z the zero-shot
logits of the same images (frozen image features against the hand-crafted class features
t^h, encoded once):

    L_ce = CE(s, y)
    L_kl = T^2 * mean_i sum_c -softmax(z_i / T)_c * log softmax(s_i / T)_c
    g_ce = dL_ce/dctx,  g_kl = dL_kl/dctx
    g    = g_ce - LAMBDA * (g_ce . g_kl / |g_kl|^2) * g_kl   if g_ce . g_kl < 0
           g_ce                                             otherwise

and the optimizer steps with g. L_kl is the published "kl_loss" (a cross-entropy with soft
targets: KL plus the teacher's entropy, so the same gradient); both losses are logged, and
"loss" is L_ce, the objective that is optimized. LAMBDA 1 removes the whole conflicting
component; T is the distillation temperature of the general-knowledge direction only.

Zero-shot teacher: the dataset's template of TEMPLATE_SET "prograd" (ProGrad's own set: CoOp's
templates reworded so that the class name comes last, e.g. "a type of pet, a photo of a {}.").
CTX_INIT "{template}" (ProGrad's CTX_INIT True) initialises the context from the words of that
template before the class name, placed in the last positions of the N_CTX vectors and zeros
before them, as ProGrad's code does (it counts words, this counts tokens; they differ for
templates with a comma). Any other string: those words, the same way; "": N(0, 0.02).

Diagnostics (diagnostics.json, per epoch, besides the prompt's): conflict_share, the share of
steps where g_ce . g_kl < 0 (the projection acted), and grad_cos, the mean cos(g_ce, g_kl).

Precision: fp32, fp16, bf16 and amp. Under amp's GradScaler both gradients come from the
same scaled losses (scale s): the projection is homogeneous (proj(s a, s b) = s proj(a, b)),
so the scaler's unscale, overflow check and step see exactly s * g.

Config keys: TRAINER.PROGRAD.{N_CTX=16, CSC=False, CTX_INIT="{template}", PREC="fp16",
CLASS_TOKEN_POSITION="end", TEMPLATE_SET="prograd"} and the top-level LOSS.{NAME, LAMBDA=1.0,
T=1.0} (NAME "" or "prograd"). ProGrad's yaml files and scripts put the context keys under
TRAINER.COOP (CTX_INIT True); ``ProGrad.adapt_cfg_sources`` moves them to TRAINER.PROGRAD with
the defaults of ProGrad's code (N_CTX 16, CSC False, random init, PREC fp16, end) and records
TRAINER.PROGRAD.KEYS_FROM; keys under both nodes are an error.
"""
import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from e2mim_clip.prompt_trainer import (PUBLISHED_PROMPT_LEARNER, PromptTrainer, context_node,
                                       read_published_coop_keys)
from e2mim_clip.prompting import PromptLearner, embed_words, word_tokens
from e2mim_clip.templates import TEMPLATE_SETS, dataset_template
from e2mim_engine.errors import ConfigError, UserError
from e2mim_engine.evaluation import compute_accuracy
from e2mim_engine.method_config import AT_LEAST_0, config_node, option, parse_view, view_items
from e2mim_engine.trainer import TRAINER_REGISTRY

TEMPLATE_INIT = "{template}"  # CTX_INIT: the words of the dataset's template
# TRAINER.COOP.* defaults of ProGrad's train.py, used with its layout.
PUBLISHED_DEFAULTS = {"N_CTX": 16, "CSC": False, "CTX_INIT": "", "PREC": "fp16", "CLASS_TOKEN_POSITION": "end"}


@dataclass(frozen=True)
class ProGradConfig:
    """TRAINER.PROGRAD's own keys (besides CoOp's context keys), parsed once per run."""
    template_set: str = option("prograd", choices=TEMPLATE_SETS)  # the zero-shot teacher's templates
    keys_from: str = option("TRAINER.PROGRAD")  # set by adapt_cfg_sources when ProGrad's layout is read


@dataclass(frozen=True)
class ProGradLoss:
    """ProGrad's published top-level LOSS node, parsed once per run."""
    name: str = option("", check=(lambda v: v in ("", "prograd"), "must be 'prograd' or '' (ProGrad trains "
                                                                    "with its own loss)"))
    lam: float = option(1.0, key="LAMBDA", check=(lambda v: v >= 0, "must be >= 0 (1 removes the whole "
                                                                     "conflicting component)"))
    t: float = option(1.0, check=(lambda v: v > 0, "(the temperature of the zero-shot direction) must be > 0"))


def prograd_losses(logits, zs_logits, label, T=1.0):
    """(L_ce, L_kl) as in the module docstring; float32."""
    logits, zs_logits = logits.float(), zs_logits.float()
    ce = F.cross_entropy(logits, label)
    teacher = F.softmax(zs_logits / T, dim=-1)
    kl = (-teacher * F.log_softmax(logits / T, dim=-1)).sum(dim=1).mean() * T * T
    return ce, kl


def project_gradient(g_ce, g_kl, lam=1.0):
    """g_ce without LAMBDA times its component along g_kl when the two conflict."""
    dot = torch.dot(g_ce.flatten().float(), g_kl.flatten().float())
    if dot < 0:  # dot 0 (e.g. g_kl = 0: the prompt equals the zero-shot model) leaves g_ce
        return g_ce - (lam * dot / g_kl.float().pow(2).sum()).to(g_ce.dtype) * g_kl
    return g_ce


@TRAINER_REGISTRY.register()
class ProGrad(PromptTrainer):
    published_checkpoint = PUBLISHED_PROMPT_LEARNER
    node = "PROGRAD"
    frozen_eval_features = frozen_train_features = True  # the image side is the frozen encoder

    config_view = ProGradConfig

    @classmethod
    def extend_cfg(cls, cfg):
        cfg.TRAINER.PROGRAD = config_node(ProGradConfig, context_node(n_ctx=16, ctx_init=TEMPLATE_INIT))
        # ProGrad's published top-level node; kept if another part of the tree declared it.
        if "LOSS" not in cfg:
            cfg.LOSS = CN()
        defaults = config_node(ProGradLoss)
        for k, v in defaults.items():
            if k not in cfg.LOSS:
                cfg.LOSS[k] = v

    @classmethod
    def adapt_cfg_sources(cls, sources):
        """ProGrad's published TRAINER.COOP keys read as TRAINER.PROGRAD (module docstring)."""
        return read_published_coop_keys(sources, "PROGRAD", PUBLISHED_DEFAULTS, TEMPLATE_INIT, "ProGrad")

    def config_prefix(self):
        return self.cfg_node().KEYS_FROM  # errors name the keys as the user's layout wrote them

    @functools.cached_property
    def loss_hparams(self):
        """The LOSS node parsed once (ProGradLoss)."""
        return parse_view(ProGradLoss, self.cfg.LOSS, "LOSS")

    def check_cfg(self, cfg):
        self.hparams, self.loss_hparams  # noqa: B018 - parses (and checks) both nodes once

    def init_words(self):
        c = self.cfg_node()
        if c.CTX_INIT != TEMPLATE_INIT:
            return c.CTX_INIT.replace("_", " ").strip()
        template = dataset_template(self.cfg, self.dm.dataset, self.hparams.template_set)
        words = template.split("{}")[0].strip()
        if not words:
            raise ConfigError(f"{c.KEYS_FROM}.CTX_INIT asks for the words of the template before the class "
                              f"name, and '{template}' has none: set CTX_INIT to words, or '' for random init.")
        return words

    def build_prompt_learner(self, clip_model):
        c = self.cfg_node()
        words = self.init_words()
        n_init = len(word_tokens(clip_model, words)) if words else 0
        if n_init > c.N_CTX:
            raise ConfigError(f"{c.KEYS_FROM}.N_CTX {c.N_CTX} is shorter than the {n_init} tokens of the "
                              f"initial words '{words}': raise N_CTX.")
        pl = PromptLearner(clip_model, self.classnames, n_ctx=c.N_CTX, ctx_init="", csc=c.CSC,
                           class_token_position=c.CLASS_TOKEN_POSITION).to(self.device)  # N(0, 0.02)
        if n_init:
            init = embed_words(clip_model, words)
            with torch.no_grad():
                ctx = torch.zeros(c.N_CTX, init.shape[1], device=init.device)
                ctx[c.N_CTX - n_init:] = init
                pl.ctx.copy_(ctx.expand_as(pl.ctx))
            pl.prompt_prefix = " ".join(["X"] * (c.N_CTX - n_init) + [words])
        return pl

    def build_model(self):
        super().build_model()
        self._grad_stats = []  # (conflict, cos(g_ce, g_kl)) of each step since the last epoch_diagnostics
        c, loss = self.hparams, self.loss_hparams
        self.build_handcrafted_view(c.template_set, what=f"ProGrad (keys from {c.keys_from}; LAMBDA "
                                                         f"{loss.lam}, T {loss.t}) zero-shot teacher")

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        loss_cfg = self.loss_hparams
        with self.precision.autocast():
            img = self.model.image_features(image)  # frozen, shared by the prompt and the teacher
            output = self.model.logit_scale * img @ self.model.text_features().t()
            zs_output = self.model.logit_scale * img @ self.text_h.float().t()
        loss_ce, loss_kl = prograd_losses(output, zs_output.detach(), label, loss_cfg.t)
        self.prograd_backward_and_update(loss_ce, loss_kl, loss_cfg.lam)
        return {"loss": loss_ce.item(), "xe_loss": loss_ce.item(), "kl_loss": loss_kl.item(),
                "acc": compute_accuracy(output, label)}

    def prograd_backward_and_update(self, loss_ce, loss_kl, lam):
        """One step with the projected CE gradient (module docstring), through the base hooks."""
        params = [p for p in self.model.prompt_learner.parameters() if p.requires_grad]
        self.detect_anomaly(loss_kl)
        scaled_kl = self.scaler.scale(loss_kl) if self.scaler is not None else loss_kl
        # The KL pass keeps the graph: the CE pass below runs through the same text features.
        g_kl = torch.autograd.grad(scaled_kl, params, retain_graph=True, allow_unused=True)
        self.model_zero_grad()
        self.model_backward(loss_ce)  # same scale as the KL pass under amp
        dot = n_ce = n_kl = 0.0
        for p, gk in zip(params, g_kl):
            if p.grad is None or gk is None:
                continue
            if not torch.isfinite(gk).all():
                if self.scaler is None:
                    raise UserError(f"The zero-shot (KL) gradient became non-finite at epoch {self.epoch + 1}: "
                                    f"training stopped. Try a lower OPTIM.LR, or PREC fp32/amp.")
                p.grad.fill_(float("nan"))  # an overflow: the scaler skips this step and lowers its scale
                continue
            g, k = p.grad.detach().flatten().float(), gk.detach().flatten().float()
            dot, n_ce, n_kl = dot + float(g @ k), n_ce + float(g @ g), n_kl + float(k @ k)
            p.grad = project_gradient(p.grad, gk, lam)
        if n_ce > 0 and n_kl > 0:
            self._grad_stats.append((dot < 0, dot / (n_ce * n_kl) ** 0.5))
        self.model_update()

    def epoch_diagnostics(self):
        """Besides the prompt's: conflict_share, the share of the epoch's steps whose CE gradient
        fought the zero-shot one (and was projected), and grad_cos, their mean cosine."""
        out = super().epoch_diagnostics()
        stats = self._grad_stats
        if stats:
            out["conflict_share"] = sum(c for c, _ in stats) / len(stats)
            out["grad_cos"] = sum(c for _, c in stats) / len(stats)
            stats.clear()
        return out

    def hyperparameters(self):
        # the loss's keys live in Dassl's LOSS node, not in the method's
        return {**super().hyperparameters(), **view_items(self.loss_hparams, "LOSS")}

    def result_metadata(self):
        c, loss = self.hparams, self.loss_hparams
        return {"prompt_init": self.model.prompt_learner.prompt_prefix, "templates": self.templates,
                "template_set": c.template_set, "lambda": loss.lam, "T": loss.t, "keys_from": c.keys_from}
