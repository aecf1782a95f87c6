"""The one seeding scheme. ``set_random_seed`` seeds Python's, NumPy's and torch's global
RNGs; ``epoch_seed`` is the seed of one epoch, so a resumed run redraws exactly what the
uninterrupted run drew from that epoch on, whatever the data pipeline consumed before."""
import hashlib
import random

import numpy as np
import torch


def set_random_seed(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed, epoch, stream=None):
    """The seed for ``epoch`` of a run seeded with ``seed``.

    Without ``stream``: the global RNGs' seed at the start of each epoch (the trainer base).
    With a stream name (e.g. "mixup", "lambda"): the seed of a private generator, a hash of
    (stream, seed, epoch) so that streams, seeds and epochs never share shifted copies of
    one another's draws.
    """
    if stream is None:
        return (int(seed) * 1_000_003 + int(epoch) * 7919) % 2**31
    digest = hashlib.sha256(f"e2mim-{stream}:{int(seed)}:{int(epoch)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
