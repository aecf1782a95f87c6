"""Logging, meters and crash-safe file writes (no torch: the dataset layer imports this)."""
import contextlib
import errno
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict

from .errors import DataError, storage_error


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
    makedirs(output_dir)
    path = os.path.join(output_dir, "log.txt")
    if os.path.exists(path):
        path += time.strftime("-%Y-%m-%d-%H-%M-%S")
    try:
        fh = logging.FileHandler(path, encoding="utf-8")
    except OSError as e:
        raise storage_error(path, e) from None
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


TEMP_SUFFIX = ".tmp"


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def makedirs(path):
    """os.makedirs that reports a failure as one paragraph naming the folder."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise storage_error(path, e, "create the folder") from None


def atomic_write(path, write_fn, mode="w"):
    """Write through a temp file in the same folder, flushed to disk, then rename: readers
    (and a run restarted after a crash) never see half a file. The file gets the permissions
    of the user's umask like any other (mkstemp alone would make it private)."""
    d = os.path.dirname(os.path.abspath(path))
    makedirs(d)
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=TEMP_SUFFIX)
    except OSError as e:
        raise storage_error(path, e) from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise storage_error(path, e) from None
        raise


def remove_stale_temp_files(directory):
    """Delete temp files a killed atomic_write left in ``directory`` (``.<name>.<random>.tmp``)."""
    if not os.path.isdir(directory):
        return []
    stale = [f for f in os.listdir(directory) if f.startswith(".") and f.endswith(TEMP_SUFFIX)]
    for f in stale:
        os.remove(os.path.join(directory, f))
    return stale


@contextlib.contextmanager
def atomic_folder(path):
    """Yield a temp folder next to ``path`` and rename it to ``path`` on success (removed on
    failure): a generated dataset is either complete or absent, never half-written."""
    parent = os.path.dirname(os.path.abspath(path))
    makedirs(parent)
    tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(path) + "-")
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private
    try:
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError:
            if not os.path.isdir(path):
                raise
            # Another process generated the same folder first (two runs starting together):
            # its copy is complete, since it too was renamed into place whole.
            shutil.rmtree(tmp, ignore_errors=True)
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
    try:
        items = [f for f in os.listdir(path) if not f.startswith(".")]
    except OSError as e:
        if e.errno == errno.ELOOP:  # a symlink that loops, as a path of the dataset
            raise DataError(f"{path} is a symbolic link that loops ({e.strerror}): remove it or point it to a "
                            f"real folder.") from None
        raise
    if sort:
        items.sort()
    return items
