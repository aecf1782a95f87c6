"""Checkpoint files in Dassl's layout, written so an interruption never leaves a broken one.

<dir>/model.pth.tar-<epoch> holds {state_dict, epoch, optimizer, scheduler, val_result};
<dir>/checkpoint names the newest epoch file (the one a restarted run resumes from).
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


def save_checkpoint(state, directory, is_best=False, model_name="", keep=None):
    epoch = state["epoch"]
    fname = model_name or f"model.pth.tar-{epoch}"
    path = os.path.join(directory, fname)
    atomic_write(path, lambda f: torch.save(state, f), mode="wb")
    logger.info(f"Checkpoint saved to {path}")
    if model_name:
        return path
    previous = read_checkpoint_file(directory)
    atomic_write(os.path.join(directory, "checkpoint"), lambda f: f.write(fname + "\n"))
    # The previous epoch file existed only so an interrupted run could resume.
    if previous and previous != fname and previous.startswith("model.pth.tar-") and keep is not None:
        prev_epoch = int(previous.rsplit("-", 1)[1])
        if not keep(prev_epoch):
            os.remove(os.path.join(directory, previous))
    if is_best:
        best = os.path.join(directory, "model-best.pth.tar")
        atomic_write(best, lambda f: torch.save(state, f), mode="wb")
        logger.info(f'Best checkpoint saved to "{best}"')
    return path


def load_checkpoint(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means the file is unusable
        raise UserError(f"Cannot read checkpoint {path} ({type(e).__name__}: {e}). The file is corrupt "
                        f"or was not written by a prompt-learning trainer; delete it to start over.") from None
