"""The E2MIM trainer on a Dassl checkout's engine (imported by e2mim_dassl.extend_cfg).

What is the host's: the trainer loop, logging and output layout (TrainerX), the registry, the
data manager with its datasets, transforms and train loader (whose sampler becomes E2MIM's
class-wise Mixup batch sampler), the optimizer and scheduler builders (for the prompt and for
the MI estimator, registered as a second model "mi_estimator"), checkpoints, resuming and the
evaluator; the `clip` package on the checkout's path (CoOp's copy, MaPLe's, or the pip one:
only what they share is used). What is the toolbox's: the method (e2mim_trainers.e2mim
.E2MIMMethod: config node, Mixup sampler, MI estimator, loss, inference), the prompt learner and
text encoder (e2mim_clip.prompting) and the precision rule (e2mim_engine.device).
"""
import inspect
import logging
import os
import sys

import torch
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint

from e2mim_clip.loader import cast_clip
from e2mim_clip.prompt_trainer import ClipTrainer, PromptTrainer, prompt_learner_of
from e2mim_clip.prompting import PromptCLIP
from e2mim_engine.device import resolve_precision
from e2mim_engine.errors import ConfigError
from e2mim_trainers.e2mim import E2MIMMethod

# MaPLe's and PromptSRC's clip.build_model take the prompt design; this one is plain CLIP (no
# deep prompts), as those repositories build it for their CoOp trainers.
PLAIN_CLIP_DESIGN = {"trainer": "CoOp", "vision_depth": 0, "language_depth": 0, "vision_ctx": 0,
                     "language_ctx": 0, "maple_length": 0}


class _PrintHandler(logging.Handler):
    """Writes through print(), so lines reach whatever sys.stdout is when they are logged
    (Dassl's setup_logger replaces it by a writer that also fills OUTPUT_DIR/log.txt)."""

    def emit(self, record):
        print(self.format(record), file=sys.stdout)


def route_log_to_stdout():
    """The toolbox's log lines (logger "e2mim") go to the host's stdout, once."""
    log = logging.getLogger("e2mim")
    if not any(isinstance(h, _PrintHandler) for h in log.handlers):
        log.addHandler(_PrintHandler())
    log.setLevel(logging.INFO)
    log.propagate = False
    # Dassl calls logging.disable(WARNING) process-wide to quiet wilds; the toolbox's own lines
    # (its notes and the method's summary) stay visible: this logger checks only its own level.
    log.isEnabledFor = lambda level: level >= log.level


def load_host_clip(name):
    """The checkout's CLIP of MODEL.BACKBONE.NAME (a CLIP name, downloaded or found by the
    checkout's clip._download, or a weight file's path), float32, frozen, on the CPU.
    Built by the checkout's clip.build_model, as its own trainers load it."""
    from clip import clip as host_clip

    path = os.path.expanduser(name)
    if not os.path.isfile(path):
        if name not in host_clip._MODELS:
            raise ConfigError(f"MODEL.BACKBONE.NAME='{name}' is neither a CLIP name of this checkout's clip "
                              f"package ({', '.join(host_clip._MODELS)}) nor a weight file.")
        path = host_clip._download(host_clip._MODELS[name])
    try:
        state_dict = torch.jit.load(path, map_location="cpu").eval().state_dict()
    except RuntimeError:
        state_dict = torch.load(path, map_location="cpu")
    build = host_clip.build_model
    if "design_details" in inspect.signature(build).parameters:
        model = build(state_dict, PLAIN_CLIP_DESIGN)
    else:
        model = build(state_dict)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.float().eval()


def dataset_template_of(name):
    """The toolbox's CoOp template of dataset ``name`` (Dassl's dataset classes carry none)."""
    import e2mim_datasets  # noqa: F401 - registers the dataset zoo
    from e2mim_engine.data import DATASET_REGISTRY

    return getattr(DATASET_REGISTRY.get(name), "template", None) if name in DATASET_REGISTRY else None


class WithIndex(torch.utils.data.Dataset):
    """The host's dataset wrapper, adding each item's "index" where an older Dassl leaves it out
    (KgCoOp's copy): E2MIM's MI term reads it to tell which rows of a batch share an image."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        item = self.dataset[idx]
        item.setdefault("index", idx)
        return item


class DasslPromptTrainer(TrainerX):
    """Dassl's TrainerX holding the toolbox's CoOp model (frozen CLIP + prompt learner,
    registered as "prompt_learner"); the trainer-base services E2MIMMethod asks for."""

    node = None
    # No engine state in these: the toolbox's trainer base's own functions.
    handcrafted_view = ClipTrainer.handcrafted_view
    build_handcrafted_view = PromptTrainer.build_handcrafted_view
    eval_text_features = PromptTrainer.eval_text_features
    epoch_diagnostics = PromptTrainer.epoch_diagnostics

    def train_batch_sampler(self, items):
        return None

    def build_data_loader(self):
        super().build_data_loader()
        dataset = self.dm.dataset
        self.classnames = dataset.classnames
        template = dataset_template_of(self.cfg.DATASET.NAME)
        if template and getattr(dataset, "template", None) is None:
            dataset.template = template  # else the fork's own dataset: CLIP's "a photo of a {}."
        # Dassl's train loader (its dataset wrapper, transforms, workers), drawing batches from
        # the method's batch sampler (E2MIM's class-wise Mixup pairs) where it has one.
        old = self.train_loader_x
        self.train_loader_x = self.dm.train_loader_x = torch.utils.data.DataLoader(
            WithIndex(old.dataset), batch_sampler=self.train_batch_sampler(dataset.train_x) or old.batch_sampler,
            num_workers=old.num_workers, pin_memory=old.pin_memory)

    def build_optim_sched(self, module, optim_cfg=None):
        optim_cfg = optim_cfg or self.cfg.OPTIM
        optim = build_optimizer(module, optim_cfg)
        return optim, build_lr_scheduler(optim, optim_cfg)

    def build_model(self):
        cfg, c = self.cfg, self.cfg.TRAINER[self.node]
        self.precision = resolve_precision(c.PREC, self.device, f"TRAINER.{self.node}.PREC")
        self.scaler = self.precision.grad_scaler()
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        clip_model = load_host_clip(cfg.MODEL.BACKBONE.NAME)
        if self.precision.weight_dtype != torch.float32:
            cast_clip(clip_model, self.precision.weight_dtype)
        clip_model.to(self.device)
        learner = prompt_learner_of(c, clip_model, self.classnames).to(self.device)
        self.model = PromptCLIP(clip_model, learner)
        optim, sched = self.build_optim_sched(learner)
        self.register_model("prompt_learner", learner, optim, sched)

    def set_model_mode(self, mode="train", names=None):
        super().set_model_mode(mode, names)
        self.model.clip.eval()  # frozen
        self._eval_text = None

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def before_epoch(self):
        sampler = self.train_loader_x.batch_sampler
        if hasattr(sampler, "set_epoch"):  # a resumed run draws the batches of the uninterrupted one
            sampler.set_epoch(self.epoch)

    def after_epoch(self):
        # Dassl's loop leaves the scheduler to the trainer (CoOp steps it after its last batch);
        # stepped before the epoch's checkpoint, which holds the scheduler's state.
        self.update_lr()
        diag = self.epoch_diagnostics()
        if diag:
            print(f"Diagnostics of epoch {self.epoch + 1}/{self.max_epoch}: "
                  + " ".join(f"{k} {v:.4g}" for k, v in diag.items()))
        super().after_epoch()

    def model_backward_and_update(self, loss, names=None):
        if self.scaler is None:
            return super().model_backward_and_update(loss, names)
        self.model_zero_grad(names)
        self.detect_anomaly(loss)
        self.scaler.scale(loss).backward()
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self.scaler.step(self._optims[name])
        self.scaler.update()

    def load_model(self, directory, epoch=None, names=None):
        """Dassl's load_model for the models ``names`` (all by default)."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names(names):
            path = os.path.join(directory, name, model_file)
            if not os.path.exists(path):
                raise FileNotFoundError(f"No model at {path}")
            checkpoint = load_checkpoint(path)
            print(f"Load {path} to {name} (epoch={checkpoint['epoch']})")
            self._models[name].load_state_dict(checkpoint["state_dict"])


@TRAINER_REGISTRY.register()
class E2MIM(E2MIMMethod, DasslPromptTrainer):
    """E2MIM on the checkout's Dassl engine: the toolbox's method code, unchanged."""
