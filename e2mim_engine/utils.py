"""Logging, meters and crash-safe file writes (no torch: the dataset layer imports this)."""
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict


logger = logging.getLogger("e2mim")


def setup_logger(output_dir=None):
    """Log plain lines (the formats CoOp parsers read) to stdout and OUTPUT_DIR/log.txt.

    Unlike Dassl this never replaces sys.stdout. An existing log.txt is kept and the new
    log goes to a timestamped file next to it, as in Dassl.
    """
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(message)s")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if not output_dir:
        return None
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "log.txt")
    if os.path.exists(path):
        path += time.strftime("-%Y-%m-%d-%H-%M-%S")
    fh = logging.FileHandler(path, encoding="utf-8")
    fh.setFormatter(fmt)
    logger.addHandler(fh)
    return path


class AverageMeter:
    def __init__(self):
        self.val = self.avg = self.sum = 0.0
        self.count = 0

    def update(self, val, n=1):
        if hasattr(val, "item"):  # a 0-d tensor or NumPy scalar
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


class MetricMeter:
    """Named running averages, printed as Dassl does: ``name v (avg)``."""

    def __init__(self, delimiter=" "):
        self.meters = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, values):
        for k, v in values.items():
            self.meters[k].update(v)

    def __str__(self):
        return self.delimiter.join(f"{k} {m.val:.4f} ({m.avg:.4f})" for k, m in self.meters.items())


def atomic_write(path, write_fn, mode="w"):
    """Write through a temp file in the same folder and rename: readers never see half a file."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(path):
    """Yield a temp folder next to ``path`` and rename it to ``path`` on success (removed on
    failure): a generated dataset is either complete or absent, never half-written."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(path) + "-")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(obj, path):
    # Dassl's split files use indent=4 with ", " / ": " separators; keep that byte format.
    atomic_write(path, lambda f: json.dump(obj, f, indent=4, separators=(",", ": ")))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def listdir_nohidden(path, sort=True):
    """Visible entries of a folder, sorted case-sensitively so splits are the same on every disk."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items
