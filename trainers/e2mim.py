"""E2MIM: hand-crafted and soft prompts as two views of the prediction, tied by a learnable
mutual-information (MI) estimator; class-wise visual Mixup explores between classes.

Our reading of the paper ("Generalizable Prompt Tuning for Vision-Language Models") is in
docs/METHOD.md, with the config key behind every choice. The parts live elsewhere and are
reusable: the MI estimator head in trainers/mi_estimators.py, the class-wise Mixup sampler
and the Mixup arithmetic in e2mim_engine/data/mixup_sampler.py, the prompt learner, text
encoder and hand-crafted view in e2mim_clip (prompting.py, prompt_trainer.py).

One training step on a batch of B = 2m images [anchors..., partners...] (label(i_k) !=
label(m + k), from ClassMixupBatchSampler):
  v      = normalized frozen image features of the B clean images (no autograd)
  v~     = features of the m mixed images: image level, the encoder's features of
           lam*x_i + (1-lam)*x_j (one extra pass of m images, batched with the clean ones);
           feature level, normalize(lam*v_i + (1-lam)*v_j)
  t^s    = soft-prompt class features (ONE text-encoder pass serves clean and mixed logits)
  t^h    = hand-crafted class features (computed once in build_model)
  loss   = CE(tau v t^s, y) + MIX_WEIGHT * softCE(tau v~ t^s, lam y_i + (1-lam) y_j)
           - MI_WEIGHT * I_phi(p^h; p^s)      over the clean and the mixed rows (MI_ON both)
Defaults (chosen on base-class validation accuracy, docs/METHOD.md): feature-level mixing,
MIX_WEIGHT 0 (the mixtures enter the two views and the MI term only), the critic on
log-probabilities.
The critic phi ascends I_phi with unit weight (MI_WEIGHT scales only the gradient that
reaches the prompt), so beta does not change how fast the critic learns.
"""
from collections import defaultdict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from e2mim_clip.prompt_trainer import PromptTrainer, context_node
from e2mim_clip.prompting import cosine_consistency, encode_images
from e2mim_clip.templates import TEMPLATE_SETS
from e2mim_engine.data.mixup_sampler import ClassMixupBatchSampler, mix, mix_targets, sample_lambda
from e2mim_engine.errors import ConfigError
from e2mim_engine.evaluation import compute_accuracy
from e2mim_engine.method_config import (AT_LEAST_0, IN_0_1, INT_AT_LEAST_0, POSITIVE, POSITIVE_INT, config_node,
                                        option)
from e2mim_engine.optim import build_lr_scheduler, build_optimizer
from e2mim_engine.seeding import epoch_seed
from e2mim_engine.trainer import TRAINER_REGISTRY
from e2mim_engine.utils import logger

from .mi_estimators import (DEFAULT_ESTIMATOR, DEFAULT_HIDDEN, DEFAULT_LAYERS, DEFAULT_MARGINAL, MARGINAL_MODES,
                            MI_ESTIMATORS, build_mi_estimator, estimator_options)

NODE_NAME = "E2MIM"             # E2MIM.node
NODE = f"TRAINER.{NODE_NAME}"   # the config node, as messages name it


@dataclass(frozen=True)
class E2MIMConfig:
    """TRAINER.E2MIM's own keys (besides CoOp's context keys), parsed once per run: the
    defaults, choices and checks are declared here only (those of the MI estimator come
    from trainers/mi_estimators.py). String choices are case-insensitive, stored lower-case."""
    # Hand-crafted view: the dataset's template from a named set, optionally ensembled with
    # CoOp's 7 ImageNet templates (ZeroshotCLIP2's set).
    template_set: str = option("coop", choices=TEMPLATE_SETS)
    template_ensemble: bool = option(False)
    # Consistency between the views: "mi" (E2MIM), "cosine" (KgCoOp-style ablation), "none".
    consistency: str = option("mi", choices=("mi", "cosine", "none"))
    mi_estimator: str = option(DEFAULT_ESTIMATOR, choices=sorted(MI_ESTIMATORS))
    mi_weight: float = option(1.0, check=AT_LEAST_0)                 # beta
    mi_hidden: int = option(DEFAULT_HIDDEN, check=POSITIVE_INT)      # critic width
    mi_layers: int = option(DEFAULT_LAYERS, check=POSITIVE_INT)      # critic hidden layers
    # jsd/dv marginal pairs: all off-diagonal pairs | shuffle
    mi_marginal: str = option(DEFAULT_MARGINAL, choices=MARGINAL_MODES)
    mi_bias_correction: bool = option(False)  # dv only: MINE's moving-average gradient correction
    # What the critic sees: log_prob (chosen on base-class validation data, docs/METHOD.md)
    # | prob (the Figure's "prediction probability" taken literally).
    mi_input: str = option("log_prob", choices=("prob", "log_prob"))
    mi_on: str = option("both", choices=("both", "clean", "mixed"))  # pairs from clean, mixed or both
    # The critic is a freshly initialised MLP: with the prompt's SGD at lr 0.002 it does not
    # leave its initial estimate (-2 log 2 for jsd) in a few hundred steps, so it gets its own
    # optimizer. MI_OPTIM "" means OPTIM.NAME; MI_LR 0 means OPTIM.LR.
    mi_optim: str = option("adam")
    mi_lr: float = option(1e-3, check=AT_LEAST_0)
    # The critic's schedule is the prompt's cosine; MI_WARMUP True also copies the prompt's
    # warm-up epochs (at WARMUP_CONS_LR the critic then barely moves in epoch 1).
    mi_warmup: bool = option(False)
    # Marginal pairs only from rows of independent images: a clean image and a mixture made
    # from it, or an item drawn twice into a batch, are dependent pairs (False: every
    # off-diagonal pair, as before).
    mi_independent_marginals: bool = option(True)
    # The critic sees softmax(z / T): T > 1 softens near-one-hot predictions, on which the
    # bound saturates and passes little gradient.
    mi_temperature: float = option(1.0, check=POSITIVE)
    cos_weight: float = option(8.0, check=AT_LEAST_0)  # CONSISTENCY=cosine: weight of 1 - mean cos(t^s, t^h)
    # Class-wise visual Mixup.
    mixup: bool = option(True)
    mixup_alpha: float = option(1.0)                   # lam ~ Beta(alpha, alpha)
    mix_level: str = option("feature", choices=("image", "feature"))  # chosen: docs/METHOD.md
    # feature level: mix normalized or raw features
    feature_mix_space: str = option("normalized", choices=("normalized", "unnormalized"))
    mix_prob: float = option(1.0, check=IN_0_1)        # probability that a step adds the mixed images
    # Weight of a soft-label CE on the mixed images. 0 (chosen): the mixtures feed the two
    # views and the MI term only, the paper's Figure 1 read literally.
    mix_weight: float = option(0.0, check=AT_LEAST_0)
    # dataset: CoOp's batches per epoch; anchors: every image an anchor
    epoch_batches: str = option("dataset", choices=("dataset", "anchors"))
    # Inference: the soft prompt alone, or w * p^s + (1 - w) * p^h.
    inference: str = option("soft", choices=("soft", "ensemble"))
    ensemble_weight: float = option(0.5, check=IN_0_1)
    # Diagnostics (results.json "diagnostics", tensorboard diag/): every DIAG_FREQ-th step of
    # an epoch (and its first) also measures each loss term's gradient on the prompt (extra
    # backward passes through the text encoder); 0 turns that off.
    diag_freq: int = option(10, check=INT_AT_LEAST_0)

    def check(self, prefix):
        if self.mixup and not 0 < self.mixup_alpha < float("inf"):
            raise ConfigError(f"{prefix}.MIXUP_ALPHA must be a positive number (Beta(alpha, alpha)); "
                              f"got {self.mixup_alpha}.")


def mi_estimator_of(hp, num_classes):
    """The critic an E2MIMConfig asks for, over ``num_classes``-dim predictions."""
    opts = estimator_options(hp.mi_estimator, marginal=hp.mi_marginal, bias_correction=hp.mi_bias_correction)
    return build_mi_estimator(hp.mi_estimator, num_classes, hidden=hp.mi_hidden, layers=hp.mi_layers, **opts)


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``scale`` on the way back."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def soft_cross_entropy(logits, target):
    """Mean over rows of -sum_c target_c log softmax(logits)_c (target rows sum to 1)."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def mixup_batch_sampler(cfg, items, epoch_batches=None):
    """The class-wise Mixup batch sampler for the training items (see mixup_sampler.py).
    ``epoch_batches`` (TRAINER.E2MIM.EPOCH_BATCHES when None) "dataset": as many batches per
    epoch as Dassl's train loader of the same batch size (which drops the last partial batch
    when a full one exists); "anchors": every item is an anchor once per epoch (about twice
    as many batches)."""
    labels = [d.label for d in items]
    bs, n = cfg.DATALOADER.TRAIN_X.BATCH_SIZE, len(labels)
    num_batches = None
    if epoch_batches is None:
        epoch_batches = cfg.TRAINER[NODE_NAME].EPOCH_BATCHES
    if str(epoch_batches).lower() == "dataset":
        num_batches = n // bs if n >= bs else 1
    try:
        return ClassMixupBatchSampler(labels, bs, seed=cfg.SEED if cfg.SEED >= 0 else None,
                                      drop_last=True, num_batches=num_batches)
    except ValueError as e:
        raise ConfigError(f"{NODE}.MIXUP=True cannot build class-wise pairs: {e}") from None


@TRAINER_REGISTRY.register()
class E2MIM(PromptTrainer):
    node = NODE_NAME
    # Evaluation reads the frozen image features only (cacheable); training mixes images or
    # raw features, so it has no cached-view path.
    frozen_eval_features = True

    config_view = E2MIMConfig

    @classmethod
    def extend_cfg(cls, cfg):
        # Learnable view: CoOp's context keys; then E2MIM's own (E2MIMConfig).
        cfg.TRAINER[NODE_NAME] = config_node(E2MIMConfig, context_node(n_ctx=4, ctx_init="a photo of a"))

    # ---- start-up checks ---------------------------------------------------------------
    def check_cfg(self, cfg):
        hp = self.hparams  # parses (and checks) TRAINER.E2MIM once
        n_ctx = self.cfg_node().N_CTX
        if int(n_ctx) != n_ctx or n_ctx < 1:
            raise ConfigError(f"{NODE}.N_CTX must be a positive integer; got {n_ctx}.")
        bs = cfg.DATALOADER.TRAIN_X.BATCH_SIZE
        if hp.mixup and bs < 2:
            raise ConfigError(f"{NODE}.MIXUP=True pairs every image with one of another class, so a batch "
                              f"must hold at least one pair: DATALOADER.TRAIN_X.BATCH_SIZE must be >= 2 "
                              f"(got {bs}). Raise it or set {NODE}.MIXUP False.")
        if hp.consistency == "mi" and bs < 2:
            raise ConfigError(f"{NODE}.CONSISTENCY=mi needs marginal pairs (two images of a batch): "
                              f"DATALOADER.TRAIN_X.BATCH_SIZE must be >= 2 (got {bs}).")

    # ---- data --------------------------------------------------------------------------
    def train_batch_sampler(self, items):
        hp = self.hparams
        return mixup_batch_sampler(self.cfg, items, hp.epoch_batches) if hp.mixup else None

    # ---- model -------------------------------------------------------------------------
    def build_model(self):
        super().build_model()  # frozen CLIP + prompt learner, registered as "prompt_learner"
        cfg, c = self.cfg, self.hparams
        self.build_handcrafted_view(c.template_set, c.template_ensemble)
        self.critic = None
        if c.consistency == "mi":
            self.critic = mi_estimator_of(c, self.num_classes).to(self.device)
            optim_cfg = cfg.OPTIM.clone()
            optim_cfg.defrost()
            optim_cfg.LR = c.mi_lr if c.mi_lr > 0 else cfg.OPTIM.LR
            optim_cfg.NAME = c.mi_optim or cfg.OPTIM.NAME
            if not c.mi_warmup:
                optim_cfg.WARMUP_EPOCH = 0
            optim = build_optimizer(self.critic, optim_cfg)
            sched = build_lr_scheduler(optim, optim_cfg)
            self.register_model("mi_estimator", self.critic, optim, sched)
        if c.mixup and c.mix_weight == 0 and self.critic is None:
            logger.info(f"Note: {NODE}.MIXUP is on but nothing uses the mixtures ({NODE}.MIX_WEIGHT 0 and no MI "
                        f"term): this run trains as without Mixup.")
        logger.info(f"E2MIM: consistency {c.consistency}"
                    + (f" ({c.mi_estimator}, beta {c.mi_weight}, critic {c.mi_layers}x{c.mi_hidden})"
                       if self.critic is not None else "")
                    + (f"; Mixup at {c.mix_level} level, alpha {c.mixup_alpha}" if c.mixup else "; no Mixup")
                    + f"; inference {c.inference}")
        self._mix_gen = torch.Generator()  # seeded per epoch in before_epoch
        self._diag = defaultdict(list)     # per-step diagnostics of the running epoch

    def before_epoch(self):
        super().before_epoch()
        # Lambdas and MIX_PROB draws: a generator of our own, reseeded per epoch, so a resumed
        # run draws what the uninterrupted run drew whatever the data pipeline consumed.
        seed = self.cfg.SEED if self.cfg.SEED >= 0 else int(torch.randint(0, 2**31 - 1, (1,)))
        self._mix_gen.manual_seed(epoch_seed(seed, self.epoch, "lambda"))
        self._diag = defaultdict(list)

    def epoch_diagnostics(self):
        out = super().epoch_diagnostics()
        out.update({k: sum(v) / len(v) for k, v in sorted(self._diag.items()) if v})
        return out

    def _gradient_shares(self, terms):
        """Each term's gradient norm on the prompt, its share of their sum, and the cosine
        between the MI (or cosine) term's gradient and the cross-entropy's."""
        params = [p for p in self.model.prompt_learner.parameters() if p.requires_grad]
        grads = {}
        for name, term in terms.items():
            g = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
            grads[name] = torch.cat([(x if x is not None else torch.zeros_like(p)).flatten().float()
                                     for x, p in zip(g, params)])
        total = sum(float(g.norm()) for g in grads.values()) or 1.0
        for name, g in grads.items():
            self._diag[f"grad_norm_{name}"].append(float(g.norm()))
            self._diag[f"grad_share_{name}"].append(float(g.norm()) / total)
        for name in ("mi", "cos"):
            if name in grads:
                self._diag[f"grad_cos_{name}_ce"].append(float(F.cosine_similarity(grads[name], grads["ce"], dim=0)))

    # ---- training ----------------------------------------------------------------------
    def _image_features(self, images):
        """Normalized features (float32), and the raw ones when feature-level mixing wants them."""
        c = self.hparams
        if c.mix_level == "feature" and c.feature_mix_space == "unnormalized":
            raw = encode_images(self.model.clip, images, normalize=False)
            return F.normalize(raw, dim=-1), raw
        feats = encode_images(self.model.clip, images)
        return feats, feats

    def forward_backward(self, batch):
        c = self.hparams
        image, label = self.parse_batch_train(batch)
        B = image.shape[0]
        m = B // 2
        use_mix = bool(c.mixup) and m >= 1
        if use_mix and c.mix_prob < 1.0:
            use_mix = bool(torch.rand((), generator=self._mix_gen) < c.mix_prob)
        if use_mix:
            lam = sample_lambda(m, c.mixup_alpha, generator=self._mix_gen, device=self.device)
            y_mix = mix_targets(label[:m], label[m:2 * m], lam, self.num_classes)

        with torch.no_grad(), self.precision.autocast():
            if use_mix and c.mix_level == "image":
                # One encoder call for the B clean and the m mixed images.
                x_mix = mix(image[:m], image[m:2 * m], lam)
                v_all, _ = self._image_features(torch.cat([image, x_mix]))
            else:
                v_all, pre = self._image_features(image)
                if use_mix:
                    v_mix = F.normalize(mix(pre[:m], pre[m:2 * m], lam), dim=-1)
                    v_all = torch.cat([v_all, v_mix])
        with self.precision.autocast():
            t_s = self.model.text_features()  # the step's only text-encoder pass
        scale = self.model.logit_scale
        logits_all = scale * v_all @ t_s.float().t()
        logits = logits_all[:B]
        loss_ce = F.cross_entropy(logits, label)
        loss = loss_ce
        summary = {}
        if use_mix:
            loss_mix = soft_cross_entropy(logits_all[B:], y_mix)
            loss = loss + c.mix_weight * loss_mix
            summary["loss_mix"] = loss_mix.item()
        loss_opt = loss_log = loss
        terms = {"ce": loss_ce}
        if use_mix and c.mix_weight > 0:
            terms["mix"] = c.mix_weight * loss_mix
        if c.consistency == "mi":
            mi, mi_indep = self._mi_term(v_all, logits_all, B, use_mix, batch.get("index"))
            if mi is not None:
                # Prompts get -beta * grad(I); the critic gets -grad(I) (see module docstring).
                loss_opt = loss - mi
                loss_log = loss - c.mi_weight * mi.detach()
                summary["mi"] = mi.item()
                summary["mi_indep"] = mi_indep
                terms["mi"] = -mi  # through _ScaleGrad: -beta * grad(I) on the prompt
        elif c.consistency == "cosine":
            loss_cos = cosine_consistency(t_s, self.text_h)
            loss_opt = loss_log = loss + c.cos_weight * loss_cos
            summary["loss_cos"] = loss_cos.item()
            terms["cos"] = c.cos_weight * loss_cos
        for k in ("mi", "mi_indep", "loss_mix", "loss_cos"):
            if k in summary:
                self._diag[k].append(summary[k])
        freq = int(c.diag_freq)
        if freq and getattr(self, "batch_idx", 0) % freq == 0 and len(terms) > 1:
            self._gradient_shares(terms)
        # A step without an MI term leaves the critic without gradients: step the prompt alone
        # (GradScaler refuses an optimizer whose parameters got no gradient).
        self.model_backward_and_update(loss_opt, None if "mi" in summary else ["prompt_learner"])
        out = {"loss": loss_log.item(), "loss_ce": loss_ce.item()}
        out.update(summary)
        out["acc"] = compute_accuracy(logits, label)
        return out

    @staticmethod
    def _dependent_pairs(index, B, n_rows):
        """Bool [n_rows, n_rows]: rows made from a common training item (clean row b is item
        index[b]; mixed row k is made of items index[k] and index[m + k])."""
        m = (n_rows - B) if n_rows > B else 0
        items, inverse = torch.unique(index, return_inverse=True)
        member = torch.zeros(n_rows, len(items), dtype=torch.bool)
        member[torch.arange(B), inverse[:B]] = True
        if m:
            member[B + torch.arange(m), inverse[:m]] = True
            member[B + torch.arange(m), inverse[m:2 * m]] = True
        f = member.float()
        dep = (f @ f.t()) > 0
        dep.fill_diagonal_(False)
        return dep

    def _mi_term(self, v_all, logits_s_all, B, use_mix, index=None):
        """(the bound to maximise, what the same critic gives for independent views), or
        (None, None) when the step has no marginal pair."""
        c = self.hparams
        on = c.mi_on
        if on == "clean" or not use_mix:
            rows = slice(0, B)
        elif on == "mixed":
            rows = slice(B, None)
        else:
            rows = slice(0, None)
        v = v_all[rows]
        if v.shape[0] < 2:  # no marginal pair (e.g. a one-image training set)
            return None, None
        exclude = None
        if c.mi_independent_marginals and index is not None:
            exclude = self._dependent_pairs(index.cpu(), B, v_all.shape[0])[rows, rows]
            if bool((exclude | torch.eye(len(exclude), dtype=torch.bool)).all()):
                return None, None  # no independent pair in this batch
        with torch.no_grad():
            logits_h = self.model.logit_scale * v @ self.text_h.t()
        logits_s = _ScaleGrad.apply(logits_s_all[rows], float(c.mi_weight))
        if c.mi_temperature != 1.0:
            logits_h, logits_s = logits_h / c.mi_temperature, logits_s / c.mi_temperature
        if c.mi_input == "log_prob":
            a, b = F.log_softmax(logits_h, dim=-1), F.log_softmax(logits_s, dim=-1)
        else:
            a, b = F.softmax(logits_h, dim=-1), F.softmax(logits_s, dim=-1)
        with torch.no_grad():
            # What the same critic reports for independent views: b of another image (a
            # cyclic shift of the rows, a derangement) in place of the joint partner.
            mi_indep = float(self.critic(a, b.roll(1, dims=0)))
        return self.critic(a, b, exclude=exclude), mi_indep

    # ---- evaluation and checkpoints ----------------------------------------------------
    def model_inference(self, image):
        c = self.hparams
        with self.precision.autocast():
            text = self.eval_text_features()
            img = self.model.image_features(image)
        scale = self.model.logit_scale
        logits_s = scale * img @ text.t()
        if c.inference == "soft":
            return logits_s
        w = c.ensemble_weight
        p = w * logits_s.softmax(dim=-1) + (1 - w) * (scale * img @ self.text_h.t()).softmax(dim=-1)
        return p.clamp_min(1e-12).log()  # log-probabilities: argmax as for logits

    def load_model(self, directory, epoch=None, names=None):
        # The critic is training-only and sized for the training classes: evaluation
        # (also on new classes) loads the prompt alone. Resuming restores the critic too.
        super().load_model(directory, epoch, names=names if names is not None else ["prompt_learner"])

    def result_metadata(self):
        c = self.hparams
        meta = {"prompt_init": self.model.prompt_learner.prompt_prefix, "templates": self.templates,
                "template_set": c.template_set, "inference": c.inference,
                "consistency": c.consistency, "mixup": bool(c.mixup)}
        if c.inference == "ensemble":
            meta["ensemble_weight"] = c.ensemble_weight
        if c.consistency == "mi":
            meta["mi_estimator"] = c.mi_estimator
        if c.mixup:
            meta["mix_level"] = c.mix_level
        return meta
