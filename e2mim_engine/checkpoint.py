"""Checkpoint files in Dassl's layout, written so an interruption never leaves a broken one.

<dir>/model.pth.tar-<epoch> holds {state_dict, epoch, optimizer, scheduler, val_result}
(Dassl's keys) plus the run's identity; <dir>/checkpoint names the newest epoch file. For
resuming, the run's manifest (e2mim_engine.run) is what decides which files belong together.
"""
import os

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


def load_checkpoint(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the file is unusable
        raise UserError(f"Cannot read checkpoint {path} ({type(e).__name__}: {e}). The file is corrupt "
                        f"or was not written by a prompt-learning trainer; delete it to start over.") from None
