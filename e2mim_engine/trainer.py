"""The trainer contract (Dassl's template-method base class, without its globals).

A method is a short class registered in TRAINER_REGISTRY that fills in ``build_model``
and ``forward_backward`` (and ``extend_cfg`` for its own config node). The base class
runs epochs, logs Dassl's lines, checkpoints the registered (learnable) modules, resumes,
evaluates and writes results.json.
"""
import datetime
import os
import time
from collections import OrderedDict

import numpy as np
import torch
from tqdm import tqdm

from . import interrupt
from .checkpointer import Checkpointer
from .data.data_manager import DataManager
from .data.feature_cache import CachedFeatureLoader
from .device import resolve_precision, select_device
from .errors import ConfigError, UserError
from .evaluation import build_evaluator
from .feature_caches import FeatureCaches
from .optim import build_lr_scheduler, build_optimizer
from .registry import Registry
from .run import config_items, declared_keys, run_identity
from .seeding import epoch_seed, set_random_seed
from .utils import AverageMeter, MetricMeter, logger, read_json, write_json

TRAINER_REGISTRY = Registry("trainer")
DIAGNOSTICS_FILE = "diagnostics.json"   # per-epoch rows of TrainerBase.epoch_diagnostics()


def build_trainer(cfg):
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)


class TrainerBase:
    # A method whose image side is a frozen function of the image alone (a frozen encoder,
    # nothing learned, prompted or mixed before it) says so here. frozen_eval_features: its
    # model_inference also accepts the features of that function ([B, D], as encode_frozen
    # returns them) in place of images, so test() may serve them from the evaluation feature
    # cache. frozen_train_features: its forward_backward does too (parse_batch_train hands
    # over batch["feat"]), so DATALOADER.FEATURE_CACHE.TRAIN_VIEWS can replace the images.
    # Such a method also fills in encode_frozen and frozen_feature_identity.
    frozen_eval_features = False
    frozen_train_features = False
    # Augmented views of each training image the method's step reads (DATALOADER.K_TRANSFORMS
    # up to this; with K > 1 batch["img"] is a list of K image batches, Dassl's layout).
    train_views = 1
    # How the method's published Dassl trainer saved its model (checkpoint.PublishedFormat), so
    # that --eval-only --model-dir reads the authors' released model.pth.tar-N files; None: no
    # published code.
    published_checkpoint = None
    # --cross-eval: load_model accepts a checkpoint of another trainer or backbone (recorded)
    cross_eval = False

    @classmethod
    def extend_cfg(cls, cfg):
        """Add this method's config node (e.g. cfg.TRAINER.COOP). Called for every trainer."""

    @classmethod
    def adapt_cfg_sources(cls, sources):
        """Rewrite the config sources of a run of this trainer before they are merged.

        ``sources`` is a list of (label, CfgNode) in merge order (dataset yaml, method yaml,
        trailing KEY VALUE pairs). A trainer whose published repository used other key names
        translates them here, in one place (KgCoOp); the default changes nothing.
        """
        return sources

    def __init__(self, cfg):
        self.cfg = cfg
        self._models, self._optims, self._scheds = OrderedDict(), OrderedDict(), OrderedDict()
        self._writer = None
        self.scaler = None
        self.backbone_sha256 = None  # set by trainers that load weights (part of the run's identity)
        self.backbone_report = {}  # results.json fields on the weights (checksum, comparable or not)
        self.finished = False
        self.validate_cfg(cfg)
        self.check_cfg(cfg)
        self.device = select_device(cfg.USE_CUDA)
        self.pin_memory = torch.cuda.is_available() and cfg.USE_CUDA
        self.start_epoch = self.epoch = self.batch_idx = 0
        self.num_batches = None  # set by run_epoch; train_step outside the loop leaves it unknown
        self.model_mode = None
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.build_data_loader()
        self.build_model()
        keys = declared_keys(type(self))
        self.identity = run_identity(cfg, self.backbone_sha256, keys)
        # the collaborators: checkpoints + resume + manifest, and the feature caches
        self.checkpointer = Checkpointer(self._models, self._optims, self._scheds, self.identity,
                                         config_items(cfg, keys), cfg.TRAIN.CHECKPOINT_FREQ,
                                         published=self.published_checkpoint, classnames=self.classnames)
        self.feature_caches = FeatureCaches(cfg.DATALOADER.FEATURE_CACHE.DIR, self.encode_frozen,
                                            self.frozen_feature_identity, self.device, cfg.SEED,
                                            num_workers=cfg.DATALOADER.NUM_WORKERS, pin_memory=self.pin_memory)
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf

    # ---- hooks a method fills in -------------------------------------------------------
    def validate_cfg(self, cfg):
        """Start-up checks of the keys every trainer uses (base classes extend this chain;
        a method's own checks go in check_cfg)."""
        for key in ("DATALOADER.TRAIN_X.BATCH_SIZE", "DATALOADER.TEST.BATCH_SIZE"):
            v = cfg.DATALOADER.TRAIN_X.BATCH_SIZE if key.startswith("DATALOADER.TRAIN_X") else cfg.DATALOADER.TEST.BATCH_SIZE
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{key} must be a positive integer (images per batch); got {v!r}.")
        if not isinstance(cfg.OPTIM.MAX_EPOCH, int) or cfg.OPTIM.MAX_EPOCH < 0:
            raise ConfigError(f"OPTIM.MAX_EPOCH must be an integer >= 0; got {cfg.OPTIM.MAX_EPOCH!r}.")
        if not isinstance(cfg.DATALOADER.NUM_WORKERS, int) or cfg.DATALOADER.NUM_WORKERS < 0:
            raise ConfigError(f"DATALOADER.NUM_WORKERS must be an integer >= 0 (0 = load in the main "
                              f"process); got {cfg.DATALOADER.NUM_WORKERS!r}.")
        k = cfg.DATALOADER.K_TRANSFORMS
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.train_views:
            raise ConfigError(f"DATALOADER.K_TRANSFORMS must be an integer from 1 to {self.train_views} for "
                              f"{cfg.TRAINER.NAME} (augmented views of each training image its step reads"
                              f"{'; it reads one' if self.train_views == 1 else ''}); got {k!r}.")
        fc = cfg.DATALOADER.FEATURE_CACHE
        if not isinstance(fc.EVAL, bool):
            raise ConfigError(f"DATALOADER.FEATURE_CACHE.EVAL must be True or False; got {fc.EVAL!r}.")
        views = fc.TRAIN_VIEWS
        if isinstance(views, bool) or not isinstance(views, int) or views < 0:
            raise ConfigError(f"DATALOADER.FEATURE_CACHE.TRAIN_VIEWS must be an integer >= 0 (augmented views "
                              f"per training image encoded once; 0 = off); got {views!r}.")
        if views and not self.frozen_train_features:
            raise ConfigError(f"DATALOADER.FEATURE_CACHE.TRAIN_VIEWS {views}: {cfg.TRAINER.NAME} cannot train on "
                              f"cached image features (its training step runs the image encoder itself: "
                              f"prompts or mixing inside the image side). Set it to 0 for this trainer.")

    def check_cfg(self, cfg):
        pass

    def build_data_loader(self):
        dm = DataManager(self.cfg, train_batch_sampler=self.train_batch_sampler, pin_memory=self.pin_memory)
        self.dm = dm
        self.train_loader_x, self.val_loader, self.test_loader = dm.train_loader_x, dm.val_loader, dm.test_loader
        self.num_classes, self.lab2cname, self.classnames = dm.num_classes, dm.lab2cname, dm.classnames
        self.shots_drawn = self._count_shots()

    def _count_shots(self):
        """Training images per class as drawn ({min, max}), with a warning for the classes that
        have fewer than DATASET.NUM_SHOTS (few-shot takes all images of such a class)."""
        counts = {}
        for d in self.dm.dataset.train_x:
            counts[d.label] = counts.get(d.label, 0) + 1
        if not counts:
            return None
        k = self.cfg.DATASET.NUM_SHOTS
        short = sorted((n, self.lab2cname.get(label, label)) for label, n in counts.items() if 0 < k and n < k)
        if short:
            listed = ", ".join(f"{name} ({n})" for n, name in short[:10]) + (" ..." if len(short) > 10 else "")
            logger.warning(f"Warning: {len(short)} of {len(counts)} classes have fewer than NUM_SHOTS={k} "
                           f"training images and use all they have: {listed}")
        return {"min": min(counts.values()), "max": max(counts.values())}

    def train_batch_sampler(self, items):
        """A batch sampler over the training items, or None for Dassl's train loader."""
        return None

    def build_model(self):
        raise NotImplementedError

    def forward_backward(self, batch):
        """One optimisation step; returns a dict of scalars to log."""
        raise NotImplementedError

    def model_inference(self, input):
        return self.model(input)

    def parse_batch_train(self, batch):
        # "feat": the cached features of the images (DATALOADER.FEATURE_CACHE.TRAIN_VIEWS)
        x = batch["feat"] if "feat" in batch else batch["img"]
        return x.to(self.device, non_blocking=True), batch["label"].to(self.device)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device, non_blocking=True), batch["label"].to(self.device)

    def epoch_diagnostics(self):
        """{name: float} measured over the epoch that just ended (e.g. how alike the learned
        class features are), or {}. The base class logs them, writes them to tensorboard
        under diag/ and keeps one row per epoch in OUTPUT_DIR/diagnostics.json, which
        results.json copies; a resumed run continues the rows of the epochs it keeps."""
        return {}

    def result_metadata(self):
        """Extra fields for results.json (e.g. the templates a method used)."""
        return {}

    def hyperparameters(self):
        """{full config key: value} of every method setting that changes what the method
        computes (its loss, its prediction), recorded in results.json as "hyperparameters"."""
        return {}

    def encode_frozen(self, images):
        """The frozen image function of a method with frozen_*_features: features [B, D]
        (float32) of a batch of transformed images, without autograd. These are cached."""
        raise NotImplementedError(f"{type(self).__name__} declares frozen image features but no encode_frozen")

    def frozen_feature_identity(self):
        """Everything besides the image and its transform that decides encode_frozen's output
        (backbone and its checksum, precision, device, code version): a dict of plain values,
        part of the feature cache's key."""
        raise NotImplementedError(f"{type(self).__name__} declares frozen image features but no "
                                  f"frozen_feature_identity")

    # ---- models, optimizers, precision -------------------------------------------------
    def set_precision(self, prec, key):
        """Resolve PREC once; every forward then uses self.precision.autocast()."""
        self.precision = resolve_precision(prec, self.device, key)
        self.scaler = self.precision.grad_scaler()
        return self.precision

    def build_optim_sched(self, module_or_params, optim_cfg=None):
        """Optimizer and scheduler of OPTIM (or of ``optim_cfg``, e.g. a second model's copy)."""
        optim_cfg = optim_cfg or self.cfg.OPTIM
        optim = build_optimizer(module_or_params, optim_cfg)
        return optim, build_lr_scheduler(optim, optim_cfg)

    def register_model(self, name="model", model=None, optim=None, sched=None):
        """Only registered modules are checkpointed, and only their learnable tensors."""
        if name in self._models:
            raise KeyError(f"model '{name}' is registered twice")
        self._models[name], self._optims[name], self._scheds[name] = model, optim, sched

    def get_model_names(self, names=None):
        names_real = list(self._models.keys())
        if names is None:
            return names_real
        names = [names] if isinstance(names, str) else names
        for n in names:
            assert n in names_real, f"no model named {n}"
        return names

    def set_model_mode(self, mode="train", names=None):
        for name in self.get_model_names(names):
            self._models[name].train(mode == "train")
        self.model_mode = mode  # what train_step / eval_step find, so they switch only when needed

    def num_trainable_params(self):
        """Parameters the optimizers update (those of the registered models that require grad)."""
        return sum(p.numel() for m in self._models.values() for p in m.parameters() if p.requires_grad)

    def update_lr(self, names=None):
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def get_current_lr(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                return self._optims[name].param_groups[0]["lr"]
        return 0.0

    def detect_anomaly(self, loss):
        if not torch.isfinite(loss).all():
            what = "NaN" if torch.isnan(loss).any() else "infinite"
            batch, nb = self.batch_idx + 1, self.num_batches or "?"
            raise UserError(
                f"The loss became {what} at epoch {self.epoch + 1}/{self.max_epoch}, batch {batch}/{nb} "
                f"(lr {self.get_current_lr():.4e}): training stopped. Nothing of this epoch was saved; a "
                f"restart resumes from the last finished epoch. Try a lower OPTIM.LR, or PREC fp32 if it "
                f"happened in fp16/amp.")

    def _optimizers(self, names):
        return [self._optims[n] for n in self.get_model_names(names) if self._optims[n] is not None]

    def model_zero_grad(self, names=None):
        for o in self._optimizers(names):
            o.zero_grad(set_to_none=True)

    def model_backward(self, loss):
        """Backward of one loss (scaled under fp16/amp). Several calls accumulate gradients,
        so a method can split a batch into groups and step once."""
        self.detect_anomaly(loss)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def model_update(self, names=None):
        optims = self._optimizers(names)
        if self.scaler is not None:
            for o in optims:
                self.scaler.step(o)
            self.scaler.update()
        else:
            for o in optims:
                o.step()

    def model_backward_and_update(self, loss, names=None):
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)

    # ---- checkpoints (e2mim_engine.checkpointer) ---------------------------------------
    def save_model(self, epoch, directory, val_result=None, model_name=""):
        """Write every model's checkpoint of ``epoch`` (0-based) to ``directory`` (the epoch
        files, then the manifest; or ``model_name`` alone, e.g. the best-validation file)."""
        self.checkpointer.save(epoch, directory, self.max_epoch, val_result=val_result, model_name=model_name)

    def resume_model_if_exist(self, directory):
        """Resume models, optimizers and schedulers from ``directory``; returns the epochs done."""
        start_epoch, best = self.checkpointer.resume(directory)
        if best is not None:
            self.best_result = best
        return start_epoch

    def load_model(self, directory, epoch=None, names=None):
        """Load weights for evaluation (no optimizer state). ``names`` limits which models:
        training-only parts (e.g. a critic sized for the base classes) can be left out. A
        folder written by the method's published Dassl trainer (published_checkpoint) is read
        too, its parameter names mapped to ours."""
        if not directory:
            logger.info("Note that load_model() is skipped as no pretrained model is given")
            return
        loaded = self.checkpointer.load(directory, epoch, self.get_model_names(names),
                                        allow_cross=self.cross_eval)
        if loaded is not None:
            self.epoch = loaded - 1  # so results.json names the epoch evaluated

    # ---- tensorboard -------------------------------------------------------------------
    def init_writer(self, log_dir):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # heavy import, only when training

            logger.info(f"Initialize tensorboard (log_dir={log_dir})")
            self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag, value, step=None):
        if self._writer is not None:
            self._writer.add_scalar(tag, value, step)

    # ---- feature caches (e2mim_engine.feature_caches) ---------------------------------
    @property
    def feature_cache_stats(self):
        """Images served from / encoded into the feature caches by this run (all splits)."""
        return self.feature_caches.stats

    def eval_feature_cache_on(self):
        return bool(self.frozen_eval_features and self.cfg.DATALOADER.FEATURE_CACHE.EVAL)

    def feature_store(self, transform, views=False):
        return self.feature_caches.store(transform, views)

    def cached_eval_features(self, loader):
        """(features [N, D], labels [N]) of an evaluation loader's images, through the cache."""
        return self.feature_caches.eval_features(loader, self.cfg.DATALOADER.TEST.BATCH_SIZE)

    def cached_train_loader(self):
        """The training loader on DATALOADER.FEATURE_CACHE.TRAIN_VIEWS cached views per image."""
        self.set_model_mode("eval")
        return self.feature_caches.train_loader(self.train_loader_x, self.cfg.DATALOADER.FEATURE_CACHE.TRAIN_VIEWS,
                                                self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE)

    # ---- the loop ----------------------------------------------------------------------
    def train(self, start_epoch=None, max_epoch=None):
        self.before_train()
        if start_epoch is not None:
            self.start_epoch = start_epoch
        if max_epoch is not None:
            self.max_epoch = max_epoch
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self):
        directory = self.cfg.RESUME or self.output_dir
        if self.cfg.RESUME and not os.path.isdir(self.cfg.RESUME):
            raise UserError(f"--resume {self.cfg.RESUME}: no such folder. Pass the OUTPUT_DIR of the run to "
                            f"resume (or leave --resume out: a run restarted into its own folder resumes).")
        self.start_epoch = self.resume_model_if_exist(directory)
        # The epoch the loaded weights come from, in case no epoch runs (results.json names it).
        self.epoch = max(self.start_epoch - 1, 0)
        # results.json is removed when training starts, so this run's is from its final test.
        self.finished = self.start_epoch >= self.max_epoch and self._has_results()
        if self.start_epoch < self.max_epoch:
            # A results.json left from an earlier run would make this unfinished run look done.
            stale = os.path.join(self.output_dir, "results.json")
            if os.path.exists(stale):
                os.remove(stale)
        self.init_writer(os.path.join(self.output_dir, "tensorboard"))
        self.time_start = time.time()
        if self.cfg.DATALOADER.FEATURE_CACHE.TRAIN_VIEWS and self.start_epoch < self.max_epoch \
                and not isinstance(self.train_loader_x, CachedFeatureLoader):
            self.train_loader_x = self.cached_train_loader()

    def before_epoch(self):
        if self.cfg.SEED >= 0:
            set_random_seed(epoch_seed(self.cfg.SEED, self.epoch))
        sampler = getattr(self.train_loader_x, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        if hasattr(self.train_loader_x, "set_epoch"):  # cached training views: this epoch's view per image
            self.train_loader_x.set_epoch(self.epoch)

    def _record_diagnostics(self):
        diag = self.epoch_diagnostics()
        if not diag:
            return
        path = os.path.join(self.output_dir, DIAGNOSTICS_FILE)
        rows = [r for r in self._read_diagnostics() if r.get("epoch", 0) < self.epoch + 1]
        rows.append(OrderedDict([("epoch", self.epoch + 1)] + [(k, float(v)) for k, v in diag.items()]))
        write_json(rows, path)
        for k, v in diag.items():
            self.write_scalar(f"diag/{k}", v, self.epoch + 1)
        # Not "epoch [e/E] ...": parsers of Dassl's logs read lines of that prefix as progress lines.
        logger.info(f"Diagnostics of epoch {self.epoch + 1}/{self.max_epoch}: "
                    + " ".join(f"{k} {v:.4g}" for k, v in diag.items()))

    def _read_diagnostics(self):
        try:
            rows = read_json(os.path.join(self.output_dir, DIAGNOSTICS_FILE))
        except (OSError, ValueError):
            return []
        return rows if isinstance(rows, list) else []

    def after_epoch(self):
        self._record_diagnostics()
        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr = self.test(split="val")
            if curr > self.best_result:
                self.best_result = curr
                self.save_model(self.epoch, self.output_dir, val_result=curr, model_name="model-best.pth.tar")
        # Saved every epoch so a restarted run resumes from here; files that are neither a
        # CHECKPOINT_FREQ multiple nor the last epoch are removed when the next one lands.
        self.save_model(self.epoch, self.output_dir)

    def _has_results(self):
        """True when OUTPUT_DIR/results.json exists and is this run's."""
        path = os.path.join(self.output_dir, "results.json")
        try:
            res = read_json(path)
        except (OSError, ValueError):
            return False
        return res.get("identity") == dict(self.identity)

    def after_train(self):
        if self.finished:
            logger.info(f"This run has already finished ({self.max_epoch} epochs) and its results are in "
                        f"{os.path.join(self.output_dir, 'results.json')}: nothing to do.")
            self.close_writer()
            return
        logger.info("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                logger.info("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                logger.info("Deploy the last-epoch model")
            if self.cfg.TEST.REPORT_VAL and self.val_loader is not None and self.cfg.TEST.SPLIT != "val":
                self.val_accuracy = self.test(split="val")
            self.test()
        elapsed = str(datetime.timedelta(seconds=round(time.time() - self.time_start)))
        logger.info(f"Elapsed: {elapsed}")
        self.close_writer()

    def run_epoch(self):
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time, data_time = AverageMeter(), AverageMeter()
        self.num_batches = len(self.train_loader_x)
        freq = self.cfg.TRAIN.PRINT_FREQ
        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            data_time.update(time.time() - end)
            loss_summary = self.train_step(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)
            if (self.batch_idx + 1) % freq == 0 or self.num_batches < freq:
                nb_remain = self.num_batches - self.batch_idx - 1
                nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
                eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
                logger.info(" ".join([
                    f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                    f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                    f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                    f"{losses}",
                    f"lr {self.get_current_lr():.4e}",
                    f"eta {eta}",
                ]))
            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()
        self.update_lr()

    # ---- one step, one evaluation: public, for the loop and for outside harnesses ------
    def train_step(self, batch):
        """One optimisation step on a training batch (a loader's dict: "img" or "feat",
        "label", ...): the method's forward_backward with the models in train mode. Returns
        its dict of scalars. The loop calls it for every batch; a benchmark or a harness may
        call it on a built trainer without train() (epoch 0, batch count unknown)."""
        interrupt.check()
        if self.model_mode != "train":
            self.set_model_mode("train")
        return self.forward_backward(batch)

    @torch.no_grad()
    def eval_step(self, input):
        """Logits [B, C] of one batch of images (or of their cached frozen features, for a
        method with frozen_eval_features) in eval mode, without autograd: what evaluate()
        runs per batch. Class features a method encodes once per evaluation are encoded by
        the first call after a switch to eval mode."""
        interrupt.check()
        if self.model_mode != "eval":
            self.set_model_mode("eval")
        return self.model_inference(input)

    def eval_loader(self, split=None):
        """(split, loader) to evaluate: ``split`` or TEST.SPLIT; "val" falls back to the test
        set when the dataset has no validation split."""
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            return split, self.val_loader
        return ("test" if split == "val" else split), self.test_loader

    @torch.no_grad()
    def evaluate(self, split=None):
        """The evaluator's results ({accuracy, error, macro_f1, total, correct, ...}) on
        ``split`` (TEST.SPLIT by default), served from the evaluation feature cache where the
        method allows it. Writes nothing; test() is evaluate() plus the logs and results.json."""
        split, loader = self.eval_loader(split)
        self.set_model_mode("eval")
        self.evaluator.reset()
        if self.eval_feature_cache_on() and hasattr(loader.dataset, "data_source"):
            feats, labels = self.cached_eval_features(loader)
            bs = self.cfg.DATALOADER.TEST.BATCH_SIZE
            for i in tqdm(range(0, len(labels), bs), disable=not self.cfg.VERBOSE, leave=False):
                self.evaluator.process(self.eval_step(feats[i:i + bs].to(self.device)),
                                       labels[i:i + bs].to(self.device))
        else:
            for batch in tqdm(loader, disable=not self.cfg.VERBOSE, leave=False):
                input, label = self.parse_batch_test(batch)
                self.evaluator.process(self.eval_step(input), label)
        return self.evaluator.evaluate()

    def test(self, split=None):
        """Evaluate on ``split`` (TEST.SPLIT by default); log Dassl's result block and, for
        the final test split, write results.json. Returns the accuracy."""
        split = self.eval_loader(split)[0]
        logger.info(f"Evaluate on the *{split}* set")
        results = self.evaluate(split)
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        if split == self.cfg.TEST.SPLIT:
            self.write_results(results, split)
        return results["accuracy"]

    def write_results(self, results, split):
        cfg = self.cfg
        out = OrderedDict(
            split=split, trainer=cfg.TRAINER.NAME, dataset=cfg.DATASET.NAME, seed=cfg.SEED,
            shots=cfg.DATASET.NUM_SHOTS, subsample=cfg.DATASET.SUBSAMPLE_CLASSES,
            backbone=cfg.MODEL.BACKBONE.NAME, num_classes=self.num_classes,
            accuracy=results["accuracy"], error=results["error"], macro_f1=results["macro_f1"],
            total=results["total"], correct=results["correct"],
        )
        if "perclass_accuracy" in results:
            out["perclass_accuracy"] = results["perclass_accuracy"]
        if getattr(self, "val_accuracy", None) is not None:
            out["val_accuracy"] = self.val_accuracy
        out["epoch"] = self.epoch + 1 if self._models else 0
        out["shots_drawn"] = getattr(self, "shots_drawn", None)
        out.update(self.result_metadata())
        hp = self.hyperparameters()
        if hp:
            out["hyperparameters"] = hp
        out.update(self.backbone_report)
        diagnostics = self._read_diagnostics() if self._models else []
        if diagnostics:
            out["diagnostics"] = diagnostics
        out["precision"] = getattr(getattr(self, "precision", None), "name", None)
        out["device"] = self.device.type
        out["identity"] = dict(self.identity)
        if self.checkpointer.cross_eval:   # a deliberate cross-evaluation (--cross-eval): what differs
            out["cross_eval"] = list(self.checkpointer.cross_eval)
        write_json(out, os.path.join(self.output_dir, "results.json"))
