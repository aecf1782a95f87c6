"""Optimizers and per-epoch LR schedules with Dassl's semantics, built from stock
torch schedulers (warm-up then successor via SequentialLR) rather than rewritten ones."""
import warnings

import torch
from torch.optim import lr_scheduler as lrs

from .errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("single_step", "multi_step", "cosine")
WARMUPS = ("constant", "linear")


def build_optimizer(params, optim_cfg):
    """``params``: a module or an iterable of parameters / param groups (trainable only)."""
    if isinstance(params, torch.nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
    params = list(params)
    name = optim_cfg.NAME.lower()
    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                               dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, weight_decay=wd, betas=(optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2))
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                                   alpha=optim_cfg.RMSPROP_ALPHA)
    raise ConfigError(f"Unknown optimizer OPTIM.NAME='{optim_cfg.NAME}'; valid: {', '.join(OPTIMIZERS)}.")


def _successor(optimizer, optim_cfg):
    name = optim_cfg.LR_SCHEDULER
    step = optim_cfg.STEPSIZE
    if name == "single_step":
        step = step[-1] if isinstance(step, (list, tuple)) else step
        if step <= 0:
            step = optim_cfg.MAX_EPOCH  # Dassl: a non-positive step size means "never decay"
        return lrs.StepLR(optimizer, step_size=step, gamma=optim_cfg.GAMMA)
    if name == "multi_step":
        return lrs.MultiStepLR(optimizer, milestones=list(step), gamma=optim_cfg.GAMMA)
    if name == "cosine":
        return lrs.CosineAnnealingLR(optimizer, T_max=float(optim_cfg.MAX_EPOCH))
    raise ConfigError(f"Unknown OPTIM.LR_SCHEDULER='{name}'; valid: {', '.join(SCHEDULERS)}.")


class _WarmupFactor:
    """LR multiplier for warm-up epoch e (a picklable callable so LambdaLR can save it).

    constant: WARMUP_CONS_LR for every warm-up epoch.
    linear:   WARMUP_MIN_LR at epoch 0, then base_lr * e / WARMUP_EPOCH (Dassl's rule).
    """

    def __init__(self, kind, base_lr, warmup_epoch, cons_lr, min_lr):
        self.kind, self.base_lr, self.warmup_epoch = kind, base_lr, warmup_epoch
        self.cons_lr, self.min_lr = cons_lr, min_lr

    def __call__(self, e):
        if self.kind == "constant":
            return self.cons_lr / self.base_lr
        if e == 0:
            return self.min_lr / self.base_lr
        return e / self.warmup_epoch


def build_lr_scheduler(optimizer, optim_cfg):
    """A scheduler stepped once per epoch. With W warm-up epochs, epochs 0..W-1 use the
    warm-up rule and epoch W+k uses the successor's k-th value (Dassl's WARMUP_RECOUNT)."""
    successor = _successor(optimizer, optim_cfg)
    W = optim_cfg.WARMUP_EPOCH
    if W <= 0:
        return successor
    kind = optim_cfg.WARMUP_TYPE
    if kind not in WARMUPS:
        raise ConfigError(f"Unknown OPTIM.WARMUP_TYPE='{kind}'; valid: {', '.join(WARMUPS)}.")
    if not optim_cfg.WARMUP_RECOUNT:
        raise ConfigError("OPTIM.WARMUP_RECOUNT=False is not supported; the successor schedule "
                          "starts after the warm-up epochs.")
    base_lr = optimizer.param_groups[0]["initial_lr"]
    warm = lrs.LambdaLR(optimizer, _WarmupFactor(kind, base_lr, W, optim_cfg.WARMUP_CONS_LR,
                                                 optim_cfg.WARMUP_MIN_LR))
    with warnings.catch_warnings():
        # SequentialLR restarts the successor with step(0); torch warns about the epoch argument.
        warnings.simplefilter("ignore", UserWarning)
        return _Sequential(optimizer, [warm, successor], milestones=[W])


class _Sequential(lrs.SequentialLR):
    def step(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            super().step()
