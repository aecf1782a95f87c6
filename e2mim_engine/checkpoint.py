"""Checkpoint files in Dassl's layout, written so an interruption never leaves a broken one.

<dir>/model.pth.tar-<epoch> holds {state_dict, epoch, optimizer, scheduler, val_result}
(Dassl's keys) plus the run's identity; <dir>/checkpoint names the newest epoch file. For
resuming, the run's manifest (e2mim_engine.run) is what decides which files belong together.

Files are read without arbitrary unpickling: torch's weights-only loader, which admits
tensors, dicts, lists, numbers and strings, plus the few types a checkpoint of Dassl's
trainers pickles besides them (DASSL_PICKLED_TYPES). The published methods' own files
(``model.pth.tar-N`` of the authors' Dassl trainers) are read the same way and their
parameter names mapped to ours by the trainer's PublishedFormat.
"""
import _compat_pickle
import os
import pickle
import re
from typing import NamedTuple, Tuple

import torch

from .errors import UserError
from .utils import atomic_write, logger


def learnable_state_dict(module):
    """Trainable parameters and persistent buffers only: never the frozen CLIP."""
    frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
    return {k: v.detach().clone() for k, v in module.state_dict().items() if k not in frozen}


def read_checkpoint_file(directory):
    path = os.path.join(directory, "checkpoint")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        name = f.readline().strip()
    return name if name and os.path.isfile(os.path.join(directory, name)) else None


def epoch_file(epoch):
    return f"model.pth.tar-{epoch}"


def save_checkpoint(state, directory, model_name=""):
    """Write the state as <directory>/<model_name or model.pth.tar-<epoch>>; an epoch file
    also becomes the one <directory>/checkpoint names. Returns the file name."""
    fname = model_name or epoch_file(state["epoch"])
    path = os.path.join(directory, fname)
    atomic_write(path, lambda f: torch.save(state, f), mode="wb")
    logger.info(f"Checkpoint saved to {path}")
    if not model_name:
        atomic_write(os.path.join(directory, "checkpoint"), lambda f: f.write(fname + "\n"))
    return fname


def prune_epoch_files(directory, keep_names, keep_epoch):
    """Remove epoch files that are neither in ``keep_names`` nor kept by ``keep_epoch(epoch)``:
    they existed only so that an interrupted run could resume."""
    if not os.path.isdir(directory):
        return
    for f in os.listdir(directory):
        if f.startswith("model.pth.tar-") and f not in keep_names:
            try:
                epoch = int(f.rsplit("-", 1)[1])
            except ValueError:
                continue
            if not keep_epoch(epoch):
                os.remove(os.path.join(directory, f))


# Dassl saves the optimizer's and the LR scheduler's state_dict(). A warmup scheduler's state
# holds its successor scheduler *object* (CosineAnnealingLR, StepLR or MultiStepLR), which
# pickles the optimizer object it steps (torch's Optimizer pickles its defaults, param groups
# and state, a defaultdict(dict)); MultiStepLR keeps its milestones in a Counter. Those objects
# are rebuilt as inert records (their pickled attributes in a dict, no code of theirs runs):
# evaluation never reads them.
_LR_TYPES = [f"torch.optim.lr_scheduler.{n}" for n in ("CosineAnnealingLR", "StepLR", "MultiStepLR", "LambdaLR",
                                                       "ExponentialLR", "_LRScheduler", "LRScheduler")]
_OPTIM_TYPES = [f"torch.optim.{m}.{n}" for m, n in (("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"),
                                                     ("rmsprop", "RMSprop"))]
DASSL_PICKLED_TYPES = tuple(_LR_TYPES + _OPTIM_TYPES)


class PickledRecord(dict):
    """What an optimizer or LR-scheduler object pickled in a Dassl checkpoint is read as: the
    attributes it pickled, under its type name (``record.type``)."""
    type = ""

    def __setstate__(self, state):
        self.update(state if isinstance(state, dict) else {"state": state})


def _record_type(name):
    return type(name.rsplit(".", 1)[1], (PickledRecord,), {"type": name})


def _allowed_globals():
    """{"module.name": object}: torch's own weights-only allow-list (tensors, storages, dtypes,
    containers), plain containers, and the Dassl types above as inert records."""
    from torch import _weights_only_unpickler
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    allowed.update({"builtins.dict": dict, "builtins.list": list, "builtins.tuple": tuple,
                    "collections.defaultdict": lambda *factory: {}, "collections.Counter": dict})
    allowed.update({name: _record_type(name) for name in DASSL_PICKLED_TYPES})
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    allowed = None

    def find_class(self, module, name):
        # protocol-2 files name Python 2's modules (__builtin__), as pickle's own find_class maps
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if _RestrictedUnpickler.allowed is None:
            _RestrictedUnpickler.allowed = _allowed_globals()
        obj = self.allowed.get(f"{module}.{name}")
        if obj is None:
            raise pickle.UnpicklingError(f"GLOBAL {module}.{name} is not allowed")
        return obj


class _RestrictedPickle:
    """The pickle module torch.load uses for checkpoints: only allowed globals are resolved."""
    Unpickler = _RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(f, **kw):
        return _RestrictedUnpickler(f, **kw).load()


def load_checkpoint(path, unreadable_hint="delete it to start over"):
    """The dict in ``path``, unpickled with only the types checkpoints of Dassl's trainers and of
    this project hold (tensors, containers, numbers, strings; optimizer and scheduler objects
    as PickledRecord). A file naming any other type is refused, since unpickling it could run
    code; one that cannot be read is a UserError ending with ``unreadable_hint``."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickle)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+) is not allowed", str(e))
        if not found:
            raise UserError(f"Cannot read checkpoint {path} (UnpicklingError: {e}). The file is corrupt or "
                            f"truncated, or not a checkpoint; {unreadable_hint}.") from None
        raise UserError(f"Refusing to load checkpoint {path}: it names the type or function {found.group(1)}, "
                        f"which checkpoints of Dassl's trainers never hold (they hold tensors, dicts, lists, "
                        f"numbers, strings and the state of their optimizer and LR scheduler). Unpickling an "
                        f"arbitrary type can run code, so the file was not loaded; use a checkpoint written by "
                        f"a Dassl trainer or by this project.") from None
    except Exception as e:  # noqa: BLE001 - any other failure means the file is unusable
        raise UserError(f"Cannot read checkpoint {path} ({type(e).__name__}: {e}). The file is corrupt or "
                        f"truncated, or not a checkpoint; {unreadable_hint}.") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UserError(f"{path} is not a checkpoint of a Dassl-style trainer (a dict with a 'state_dict' "
                        f"of tensors); {unreadable_hint}.")
    return ckpt


class PublishedFormat(NamedTuple):
    """How a method's published Dassl trainer saved its model, mapped to this project's.

    folder: the name it registered its model under (OUTPUT_DIR/<folder>/model.pth.tar-N);
    prefix: the part of its keys before our module's keys ("prompt_learner." when it
    registered the whole CLIP model; its other keys are frozen CLIP weights, not loaded);
    rename: (regex, replacement: a re.sub template or function of the match) on its full
    key, applied before the prefix is cut, for tensors it keeps elsewhere (the first rule
    that matches wins);
    drop: regexes of its keys that are frozen copies inside the prompt learner;
    not_saved: regexes of our keys its files never hold (left as built: evaluation does
    not read them)."""
    folder: str
    prefix: str = ""
    rename: Tuple[tuple, ...] = ()
    drop: Tuple[str, ...] = ()
    not_saved: Tuple[str, ...] = ()

    def our_state_dict(self, state_dict):
        """The published state_dict with our names: only the tensors our module holds."""
        out = {}
        for key, value in state_dict.items():
            for pattern, repl in self.rename:
                if re.search(pattern, key):
                    key = re.sub(pattern, repl, key)
                    break
            if any(re.search(d, key) for d in self.drop) or not key.startswith(self.prefix):
                continue
            out[key[len(self.prefix):]] = value
        return out
