"""What a run is and what it has written.

* Identity: trainer, dataset, backbone (name and checksum), seed, shots, subsample, a hash
  of every config key that changes what is computed, and the project version. Written to
  every checkpoint, the manifest and results.json; a run restarted into a folder resumes
  only when its identity matches what the folder holds.
* The output-folder lock: one process writes a folder at a time. It is an advisory lock on
  ``OUTPUT_DIR/.e2mim.lock``, released by the OS when the process dies, so a killed run
  never leaves the folder locked.
* The checkpoint manifest ``OUTPUT_DIR/manifest.json``: written after the epoch files of
  every registered model, it names the epoch a restart resumes from. A kill at any
  instant leaves the old or the new epoch for all models together, never a mix.
"""
import hashlib
import json
import os
from collections import OrderedDict

from . import __version__
from .errors import UserError, storage_error
from .utils import makedirs, read_json, write_json

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "e2mim-checkpoint-manifest"
LOCK_FILE = ".e2mim.lock"
# Keys that say where, how verbosely or on which device a run happens, not what it computes:
# a run may resume with other values of these.
NOT_IDENTITY = ("OUTPUT_DIR", "RESUME", "VERBOSE", "USE_CUDA", "DATASET.ROOT", "DATALOADER.NUM_WORKERS",
                "TRAIN.PRINT_FREQ", "MODEL.BACKBONE.CACHE_DIR", "DATALOADER.FEATURE_CACHE.EVAL",
                "DATALOADER.FEATURE_CACHE.DIR", "MODEL.TEXT_ENCODER.CHECKPOINT")
# Keys added after runs were made, left out of the identity while they hold the value that
# computes what runs made without them computed (so those runs keep their identity).
IDENTITY_IF_NOT = {"DATALOADER.FEATURE_CACHE.TRAIN_VIEWS": 0, "DATASET.VAL_SHOTS": 4, "DATALOADER.TRAIN_X.REPEAT": 1}


def _plain(v):
    return list(_plain(x) for x in v) if isinstance(v, (list, tuple)) else v


def _flatten(cfg, prefix=""):
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if hasattr(v, "items"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = _plain(v)
    return out


def declared_keys(trainer_cls):
    """The keys a run of ``trainer_cls`` can read: the engine's tree plus what the trainer
    itself declares. Other methods' nodes are left out of its identity, so that adding a
    method (a new node for every run) does not change the identity of existing runs."""
    from .config import get_cfg_default
    scratch = get_cfg_default()
    trainer_cls.extend_cfg(scratch)
    return set(_flatten(scratch))


def config_items(cfg, keys=None):
    """{KEY: value} of every config key that belongs to the run's identity (of ``keys``, the
    keys its trainer declares, when given)."""
    return {k: v for k, v in _flatten(cfg).items() if k not in NOT_IDENTITY and (keys is None or k in keys)
            and not (k in IDENTITY_IF_NOT and v == IDENTITY_IF_NOT[k])}


def config_hash(items):
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_identity(cfg, backbone_sha256=None, keys=None):
    items = config_items(cfg, keys)
    return OrderedDict(
        trainer=cfg.TRAINER.NAME, dataset=cfg.DATASET.NAME, backbone=cfg.MODEL.BACKBONE.NAME,
        backbone_sha256=backbone_sha256, seed=cfg.SEED, shots=cfg.DATASET.NUM_SHOTS,
        subsample=cfg.DATASET.SUBSAMPLE_CLASSES, config_hash=config_hash(items), version=__version__)


def identity_differences(stored, current, stored_config=None, current_config=None):
    """Lines "key: stored -> current" for every identity field (and config key) that differs."""
    diffs = [f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in current
             if k != "config_hash" and stored.get(k) != current.get(k)]
    if stored.get("config_hash") != current.get("config_hash"):
        if stored_config is not None and current_config is not None:
            keys = sorted(set(stored_config) | set(current_config))
            diffs += [f"{k}: {stored_config.get(k)!r} -> {current_config.get(k)!r}" for k in keys
                      if stored_config.get(k) != current_config.get(k)]
        else:
            diffs.append(f"config_hash: {stored.get('config_hash')!r} -> {current.get('config_hash')!r}")
    return diffs


def check_identity(directory, stored, current, stored_config=None, current_config=None):
    diffs = identity_differences(stored, current, stored_config, current_config)
    if not diffs:
        return
    extend = [d for d in diffs if d.startswith("OPTIM.MAX_EPOCH:")]
    hint = (" Extending a run to more epochs is not supported (its learning-rate schedule was built for "
            "the old number of epochs): train into a new --output-dir." if extend else "")
    raise UserError(f"{directory} holds a run with other settings ({'; '.join(diffs)}), so this run cannot "
                    f"resume from it.{hint} Use a new --output-dir, or delete the folder to start over.")


def write_manifest(directory, epoch, files, identity, config):
    write_json(OrderedDict(format=MANIFEST_FORMAT, epoch=epoch, models=files, identity=identity, config=config),
               os.path.join(directory, MANIFEST))


def read_manifest(directory):
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        m = read_json(path)
        assert m.get("format") == MANIFEST_FORMAT and isinstance(m.get("models"), dict)
    except Exception:  # noqa: BLE001 - any failure means the file is unusable
        raise UserError(f"{path} is not a checkpoint manifest of this project (corrupt or written by "
                        f"something else). Delete the output folder to start over.") from None
    return m


class OutputLock:
    """Hold ``directory``'s lock for the life of a run (``with OutputLock(dir): ...``)."""

    def __init__(self, directory):
        self.directory = directory
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform: run unlocked
            return self
        makedirs(self.directory)
        path = os.path.join(self.directory, LOCK_FILE)
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise storage_error(path, e) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            self.fd = None
            raise UserError(f"{self.directory} is being written by another run (process {owner}). Two runs "
                            f"must not share an output folder: wait for it to finish, or use another "
                            f"--output-dir.") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None
        return False
