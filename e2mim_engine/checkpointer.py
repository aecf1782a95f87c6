"""The checkpoints of one run: save, resume and load its registered models as a unit.

A ``Checkpointer`` holds the run's models (name -> module, optimizer, scheduler, the
trainer's own dicts, so models registered later are seen), its identity and the config
items behind that identity. It writes every model's epoch file, then the manifest that
names them (e2mim_engine.run), then prunes epoch files kept only for resuming; it resumes
from the manifest's epoch after checking the identity, and loads weights for evaluation.
Files are in Dassl's layout (e2mim_engine.checkpoint). It knows nothing of the loop: the
trainer passes the epoch and the number of epochs. With the method's PublishedFormat it also
loads, for evaluation, the files the method's published Dassl trainer wrote.
"""
import os
import re

import torch

from .checkpoint import (epoch_file, learnable_state_dict, load_checkpoint, prune_epoch_files, read_checkpoint_file,
                         save_checkpoint)
from .errors import UserError
from .interrupt import deferred
from .run import check_identity, read_manifest, write_manifest
from .utils import logger, remove_stale_temp_files

BEST_FILE = "model-best.pth.tar"
def eval_identity_differences(stored, current):
    """"field: checkpoint X, this run Y" for what an evaluation must share with the checkpoint
    it loads: the trainer and the backbone -- its checksum where both runs have one (the same
    file may be named differently), else its name (random backbones have no checksum). The
    rest of the identity (dataset, subsample, seed, shots, settings) legitimately differs,
    e.g. base -> new classes or cross-dataset."""
    keys = ["trainer"]
    keys.append("backbone_sha256" if stored.get("backbone_sha256") and current.get("backbone_sha256")
                else "backbone")
    return [f"{k}: checkpoint {stored.get(k)!r}, this run {current.get(k)!r}" for k in keys
            if stored.get(k) != current.get(k)]


class Checkpointer:
    def __init__(self, models, optims, scheds, identity, config, checkpoint_freq=0, published=None,
                 classnames=None):
        self.models, self.optims, self.scheds = models, optims, scheds
        self.identity, self.config = identity, config
        self.checkpoint_freq = checkpoint_freq
        self.published = published  # checkpoint.PublishedFormat of the method's published trainer
        self.cross_eval = []        # identity differences load() accepted (allow_cross): for results.json
        self.classnames = list(classnames) if classnames is not None else None
        # what load() read per model: {"identity", "classnames"} of the file (None for a file
        # of the published code): a method whose inference depends on the classes it was
        # trained on reads it (MMRL)
        self.loaded = {}

    @property
    def names(self):
        return list(self.models)

    def state(self, name, epoch, val_result=None):
        """The checkpoint dict of model ``name`` after ``epoch`` (0-based): Dassl's keys plus
        the identity. Refuses tensors that are NaN or infinite."""
        state = learnable_state_dict(self.models[name])
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise UserError(f"The learnable tensors {bad} of '{name}' hold NaN or infinite values after epoch "
                            f"{epoch + 1}: training stopped without saving them, so a restart resumes from the "
                            f"last good epoch. Try a lower OPTIM.LR, or PREC fp32.")
        optim, sched = self.optims[name], self.scheds[name]
        return {"state_dict": state, "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim else None,
                "scheduler": sched.state_dict() if sched else None,
                "val_result": val_result, "identity": dict(self.identity), "classnames": self.classnames}

    def keep_epoch(self, epoch, max_epoch):
        """Epoch files that stay on disk: CHECKPOINT_FREQ multiples and the last epoch.
        Others are written for resuming and removed when the next one lands."""
        f = self.checkpoint_freq
        return epoch == max_epoch or (f > 0 and epoch % f == 0)

    def save(self, epoch, directory, max_epoch, val_result=None, model_name=""):
        """Write <directory>/<name>/model.pth.tar-<epoch+1> (or model_name) for every model.

        Epoch files of all models are written first, then the manifest that names them (the
        unit a restart resumes from), then older epoch files are pruned: a kill at any instant
        leaves one complete epoch for all models."""
        states = {name: self.state(name, epoch, val_result) for name in self.names}
        with deferred():  # SIGTERM / SIGINT act once the epoch is whole on disk
            files = {name: save_checkpoint(states[name], os.path.join(directory, name), model_name=model_name)
                     for name in states}
            if model_name or not files:
                return
            write_manifest(directory, epoch + 1, files, self.identity, self.config)
            for name, fname in files.items():
                prune_epoch_files(os.path.join(directory, name), {fname}, lambda e: self.keep_epoch(e, max_epoch))

    def resume_files(self, directory):
        """({model name: epoch file}, epoch) to resume from: the manifest's (identity checked),
        or for a folder written without one, each model's checkpoint file (all of the same
        epoch); (None, 0) when the folder holds none."""
        names = self.names
        manifest = read_manifest(directory)
        if manifest is not None:
            check_identity(directory, manifest.get("identity", {}), self.identity, manifest.get("config"), self.config)
            files = manifest["models"]
            if sorted(files) != sorted(names):
                raise UserError(f"{directory} holds checkpoints of the models {sorted(files)}, this run has "
                                f"{sorted(names)}: it was written by another trainer. Use a new --output-dir.")
            missing = [os.path.join(directory, n, f) for n, f in files.items()
                       if not os.path.isfile(os.path.join(directory, n, f))]
            if missing:
                raise UserError(f"The checkpoint manifest of {directory} names files that are gone: {missing}. "
                                f"Delete the folder to start over.")
            return files, manifest["epoch"]
        found = {n: read_checkpoint_file(os.path.join(directory, n)) for n in names}
        if not names or all(f is None for f in found.values()):
            return None, 0
        if any(f is None for f in found.values()):
            have = [n for n, f in found.items() if f]
            lack = [n for n, f in found.items() if not f]
            raise UserError(f"{directory} holds checkpoints for {have} but not for {lack}: it was written by a "
                            f"run with other settings. Use a new --output-dir, or delete the folder to start over.")
        epochs = {n: int(f.rsplit("-", 1)[1]) if f.startswith("model.pth.tar-") else None for n, f in found.items()}
        if len(set(epochs.values())) > 1:
            raise UserError(f"{directory} holds checkpoints of different epochs ({epochs}): the run was "
                            f"interrupted while saving. Delete the folder to start over.")
        return found, next(iter(epochs.values()))

    def resume(self, directory):
        """Load models, optimizers and schedulers from ``directory``'s newest complete epoch.
        Returns (epochs done, best validation result so far or None); (0, None) when the
        folder holds no checkpoint. Temp files a killed write left are removed first."""
        for name in self.names:
            remove_stale_temp_files(os.path.join(directory, name))
        remove_stale_temp_files(directory)
        files, _ = self.resume_files(directory)
        if files is None:
            return 0, None
        logger.info("*" * 60)
        logger.info(f"Found checkpoint at {directory} (will resume training)")
        logger.info("*" * 60)
        start_epoch = 0
        # the files belong together (manifest): starting over means without all of them
        restart = f"delete the folder {directory} to start this run over, or train into a new --output-dir"
        for name, fname in files.items():
            path = os.path.join(directory, name, fname)
            ckpt = load_checkpoint(path, unreadable_hint=restart)
            if ckpt.get("identity") is not None:
                check_identity(path, ckpt["identity"], self.identity)
            logger.info(f'Loading checkpoint from "{path}"')
            self.load_state(name, ckpt["state_dict"], path)
            if self.optims[name] is not None and ckpt.get("optimizer"):
                self.optims[name].load_state_dict(ckpt["optimizer"])
                logger.info("Loaded optimizer")
            if self.scheds[name] is not None and ckpt.get("scheduler"):
                self.scheds[name].load_state_dict(ckpt["scheduler"])
                logger.info("Loaded scheduler")
            start_epoch = ckpt["epoch"]
            logger.info(f"Previous epoch: {start_epoch}")
        best = os.path.join(directory, self.names[0], BEST_FILE)
        # best_val selection continues against the best result seen before the restart
        best_val = load_checkpoint(best, unreadable_hint=restart).get("val_result") if os.path.isfile(best) else None
        return start_epoch, best_val

    def load(self, directory, epoch=None, names=None, allow_cross=False):
        """Load the weights of ``names`` (all models by default) for evaluation, no optimizer
        state: the best-validation file, or epoch ``epoch``'s. Returns the epoch loaded.

        A checkpoint whose identity names another trainer or backbone (checksum) is refused
        with the differing fields, unless ``allow_cross`` (a deliberate cross-evaluation: the
        differences are kept in ``cross_eval``)."""
        model_file = BEST_FILE if epoch is None else epoch_file(epoch)
        loaded, fmt = None, self.published
        for name in names if names is not None else self.names:
            path = os.path.join(directory, name, model_file)
            if not os.path.exists(path) and fmt is not None and len(self.models) == 1:
                path = os.path.join(directory, fmt.folder, model_file)   # the published trainer's folder
            if not os.path.exists(path):
                raise UserError(f'Model not found at "{os.path.join(directory, name, model_file)}". --model-dir '
                                f'should be the OUTPUT_DIR of a training run and --load-epoch an epoch whose file '
                                f'exists there.')
            ckpt = load_checkpoint(path, unreadable_hint="evaluate another epoch (--load-epoch) or the model of "
                                                         "another run")
            state, optional = ckpt["state_dict"], ()
            if isinstance(ckpt.get("identity"), dict):
                diffs = eval_identity_differences(ckpt["identity"], self.identity)
                # class-specific tensors (CoOp's CSC) on other classes of the same count would load
                stored = ckpt.get("classnames")
                if stored is not None and self.classnames is not None and stored != self.classnames and \
                        getattr(self.models[name], "class_specific", False):
                    diffs.append(f"classes of its class-specific tensors: checkpoint {len(stored)} "
                                 f"({', '.join(stored[:3])}{', ...' if len(stored) > 3 else ''}), this run "
                                 f"{len(self.classnames)} ({', '.join(self.classnames[:3])}"
                                 f"{', ...' if len(self.classnames) > 3 else ''})")
                if diffs and not allow_cross:
                    raise UserError(f"The checkpoint {path} was not trained as this run evaluates it: "
                                    f"{'; '.join(diffs)}. Its numbers would be filed as this run's. Evaluate it "
                                    f"with the trainer and backbone it was trained with, or pass --cross-eval "
                                    f"for a deliberate cross-evaluation (recorded in results.json).")
                self.cross_eval += [d for d in diffs if d not in self.cross_eval]
            if ckpt.get("identity") is None and fmt is not None and \
                    os.path.basename(os.path.dirname(path)) == fmt.folder:
                # written by the published trainer: its names, maybe the whole CLIP model
                state, optional = fmt.our_state_dict(state), fmt.not_saved
                logger.info(f"{path} was written by the published code of this method (Dassl's layout, no run "
                            f"identity, so trainer and backbone cannot be checked): {len(state)} of its tensors "
                            f"are {name}'s")
            logger.info(f'Loading weights to {name} from "{path}" (epoch = {ckpt.get("epoch")})')
            self.loaded[name] = {"identity": ckpt.get("identity"), "classnames": ckpt.get("classnames")}
            self.load_state(name, state, path, optional)
            if isinstance(ckpt.get("epoch"), int):
                loaded = ckpt["epoch"]
        return loaded

    def load_state(self, name, state_dict, path, optional=()):
        """Copy a checkpoint's learnable tensors into model ``name`` (in the model's dtype);
        a file that does not fit the model is refused naming what differs. Keys matching a
        regex of ``optional`` may be absent (left as built)."""
        model = self.models[name]
        # A module may name buffers that belong to the run rather than to the checkpoint
        # (a prompt learner's class-name embeddings: CoOp saves them, a new class set differs).
        ignored = set(getattr(model, "checkpoint_ignored_keys", ()))
        state_dict = {k: v for k, v in state_dict.items() if k.split(".")[-1] not in ignored}
        expected = learnable_state_dict(model)
        missing = [k for k in expected if k not in state_dict and not any(re.search(o, k) for o in optional)]
        unexpected = [k for k in state_dict if k not in expected]
        bad_shape = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
        if missing or unexpected or bad_shape:
            raise UserError(f"The checkpoint {path} does not fit model '{name}': missing {missing}, "
                            f"unexpected {unexpected}, shape mismatch {bad_shape}. It was probably trained "
                            f"with other settings (e.g. N_CTX, CSC or the number of classes with CSC=True).")
        with torch.no_grad():
            for k, v in model.state_dict(keep_vars=True).items():
                if k in state_dict:
                    v.copy_(state_dict[k].to(v.dtype))
