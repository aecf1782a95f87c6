"""Feature caches: what a frozen image function computes, computed once per image and reused.

A method whose image side is a frozen function of the image alone (a frozen encoder and
nothing learned or mixed before it; the trainer declares ``frozen_eval_features`` /
``frozen_train_features``) gives the same image features in every epoch, seed and method
on the same backbone. Those features are kept on disk, under a folder per *store*:

    <root>/<store id>/identity.json      what decides the features (readable; for e2mim-cache info)
    <root>/<store id>/shard-<...>.pt     {"keys": [n] str, "features": [n, D] float32}

The store id is a hash of the identity: the trainer's ``frozen_feature_identity()`` (backbone
name and SHA256, precision, device, torch and project version, which function of the
encoder), the transform (its repr, which names every size, interpolation, mean and std), and
for training views that they are seeded views. Within a store an image is keyed by its
absolute path, size and modification time: a changed image, or a changed transform or
backbone, is a miss and is encoded again; nothing stale is ever served.

Writes are whole shards through a temp file and a rename (``atomic_write``), each with a
name of its own, so any number of processes can fill one store at once (at worst an image
is stored twice, with the same features) and a kill leaves no half-written shard. A cache
folder that cannot be written is a logged note: the run goes on with the features in
memory. ``e2mim-cache info|clear`` (e2mim_tools.cache) reports and removes stores.

Root: DATALOADER.FEATURE_CACHE.DIR, else $E2MIM_FEATURE_CACHE, else ~/.cache/e2mim/features.

Training views (DATALOADER.FEATURE_CACHE.TRAIN_VIEWS = K): view v of an image is the train
transform under a torch seed that is a hash of the image file's bytes (``content_key``) and v,
so a view is the same whenever and wherever it is computed (and K = 8 reuses the 4 views of a K = 4 run). Each
epoch ``CachedFeatureLoader`` picks one view per image from a generator seeded by
(SEED, epoch), and batches in the order of the run's own batch sampler, so a resumed run
sees exactly what the uninterrupted run saw.
"""
import hashlib
import json
import os
import secrets
import time

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError, StorageError
from ..seeding import epoch_seed
from ..utils import TEMP_SUFFIX, atomic_write, logger, write_json
from .data_manager import read_image

ENV_DIR = "E2MIM_FEATURE_CACHE"
DEFAULT_DIR = os.path.join("~", ".cache", "e2mim", "features")
FORMAT = "e2mim-feature-cache-1"
IDENTITY_FILE = "identity.json"
SHARD_PREFIX, SHARD_SUFFIX = "shard-", ".pt"
# Images encoded per shard while filling: a killed fill keeps what it finished.
SHARD_IMAGES = 8192


def cache_root(cfg_dir=""):
    """The cache folder: DATALOADER.FEATURE_CACHE.DIR, $E2MIM_FEATURE_CACHE or ~/.cache/e2mim/features."""
    return os.path.abspath(os.path.expanduser(cfg_dir or os.environ.get(ENV_DIR) or DEFAULT_DIR))


def image_key(path):
    """The key of an image file: its absolute path, size and modification time (hashed)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"Image file {path} does not exist (listed by the dataset split).") from None
    ident = f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}"
    return hashlib.sha1(ident.encode("utf-8", "surrogateescape")).hexdigest()


def content_key(path):
    """A hash of an image file's bytes. Training views are seeded by it, not by ``image_key``: the
    same image gives the same views on every machine, wherever its folder lies and whenever it was
    written (a path or a modification time in the seed made two machines train on other views)."""
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def view_key(key, view):
    return f"{key}/{view}"


def view_seed(key, view):
    """The torch seed of training view ``view`` of the image whose ``content_key`` is ``key``."""
    digest = hashlib.sha256(f"e2mim-view:{key}:{int(view)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def is_shard(name):
    return name.startswith(SHARD_PREFIX) and name.endswith(SHARD_SUFFIX)


def store_id(identity):
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class FeatureStore:
    """One folder of the cache: the features of one frozen function and one transform."""

    def __init__(self, root, identity):
        self.root = root
        self.identity = dict(identity, format=FORMAT)
        self.id = store_id(self.identity)
        self.folder = os.path.join(root, self.id)
        self._rows = {}      # key -> (features tensor of a shard, row)
        self._read = set()   # shard files already read (or found unreadable)
        self.writable = True
        self.hits = self.stored = 0

    def refresh(self):
        """Read the shards written since the last call (by this or any other process)."""
        try:
            names = sorted(os.listdir(self.folder))
        except FileNotFoundError:
            return
        except OSError as e:
            logger.warning(f"Note: cannot read the feature cache {self.folder} ({e.strerror or e}); "
                           f"features are computed without it.")
            return
        for name in names:
            if not is_shard(name) or name in self._read:
                continue
            self._read.add(name)
            path = os.path.join(self.folder, name)
            try:
                shard = torch.load(path, map_location="cpu", weights_only=True)
                keys, feats = shard["keys"], shard["features"]
                if not (torch.is_tensor(feats) and feats.dim() == 2 and len(keys) == feats.shape[0]):
                    raise ValueError("keys and features do not match")
            except Exception as e:  # noqa: BLE001 - a foreign or damaged file is skipped, never trusted
                logger.warning(f"Note: the feature cache file {path} is unreadable ({type(e).__name__}: "
                               f"{str(e)[:120]}); it is ignored (`e2mim-cache clear` removes it).")
                continue
            feats = feats.float()
            for i, k in enumerate(keys):
                self._rows.setdefault(k, (feats, i))

    def lookup(self, keys):
        """([feature row or None per key], [positions of the missing keys])."""
        if any(k not in self._rows for k in keys):
            self.refresh()
        rows, missing = [], []
        for i, k in enumerate(keys):
            hit = self._rows.get(k)
            if hit is None:
                missing.append(i)
                rows.append(None)
            else:
                rows.append(hit[0][hit[1]])
        self.hits += len(keys) - len(missing)
        return rows, missing

    def put(self, keys, feats):
        """Keep ``feats`` [n, D] for ``keys`` in memory and write them as one new shard. A
        folder that cannot be written is a note, once; the run continues without storing."""
        feats = feats.detach().to("cpu", torch.float32).contiguous().clone()
        for i, k in enumerate(keys):
            self._rows.setdefault(k, (feats, i))
        if not self.writable or not keys:
            return
        name = f"{SHARD_PREFIX}{time.time_ns()}-{os.getpid()}-{secrets.token_hex(4)}{SHARD_SUFFIX}"
        try:
            ident = os.path.join(self.folder, IDENTITY_FILE)
            if not os.path.isfile(ident):
                write_json(self.identity, ident)
            atomic_write(os.path.join(self.folder, name),
                         lambda f: torch.save({"keys": list(keys), "features": feats}, f), mode="wb")
        except StorageError as e:
            self.writable = False
            logger.warning(f"Note: the feature cache is not writable ({e}) The features are computed and "
                           f"used without storing them for the rest of this run. Set "
                           f"DATALOADER.FEATURE_CACHE.DIR (or ${ENV_DIR}) to a writable folder, or turn "
                           f"the cache off with DATALOADER.FEATURE_CACHE.EVAL False.")
            return
        self._read.add(name)
        self.stored += len(keys)


class _Images(Dataset):
    """Images ``index`` of ``items`` through ``transform``; with ``seeds``, each under its own
    torch seed (a training view that is the same whenever it is computed)."""

    def __init__(self, items, transform, index, seeds=None):
        self.items, self.transform, self.index, self.seeds = items, transform, index, seeds

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        img = read_image(self.items[self.index[i]].impath)
        if self.seeds is None:
            return self.transform(img)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seeds[i])
            return self.transform(img)


def _fill(store, keys, items, transform, encode, index, seeds, loader_kw, device):
    """Encode the missing entries (``index``: item of each, ``seeds``: view seeds or None),
    store them shard by shard and return them [n, D]."""
    out = []
    for s in range(0, len(index), SHARD_IMAGES):
        part = slice(s, s + SHARD_IMAGES)
        ds = _Images(items, transform, index[part], None if seeds is None else seeds[part])
        feats = []
        with torch.no_grad():
            for x in DataLoader(ds, shuffle=False, **loader_kw):
                feats.append(encode(x.to(device, non_blocking=True)).float().cpu())
        feats = torch.cat(feats)
        store.put(keys[part], feats)
        out.append(feats)
    return torch.cat(out)


def cached_features(store, items, transform, encode, device, batch_size, num_workers=0, pin_memory=False,
                    keys=None):
    """Features [N, D] of ``items`` through ``transform`` and ``encode``, from ``store`` where it
    has them; the rest are encoded and stored. Returns (features, hits, encoded)."""
    keys = [image_key(d.impath) for d in items] if keys is None else keys
    rows, missing = store.lookup(keys)
    if missing:
        loader_kw = dict(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory)
        new = _fill(store, [keys[i] for i in missing], items, transform, encode, missing, None, loader_kw, device)
        for j, i in enumerate(missing):
            rows[i] = new[j]
    feats = torch.stack(rows) if rows else torch.zeros(0, 0)
    return feats, len(items) - len(missing), len(missing)


def cached_views(store, items, transform, encode, views, device, batch_size, num_workers=0, pin_memory=False):
    """Features [N, views, D] of ``views`` seeded training views of each item (see the module
    docstring). Returns (features, hits, encoded)."""
    base = [image_key(d.impath) for d in items]
    keys = [view_key(k, v) for k in base for v in range(views)]
    rows, missing = store.lookup(keys)
    if missing:
        loader_kw = dict(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory)
        content = {j: content_key(items[j].impath) for j in sorted({i // views for i in missing})}
        seeds = [view_seed(content[i // views], i % views) for i in missing]
        new = _fill(store, [keys[i] for i in missing], items, transform, encode, [i // views for i in missing],
                    seeds, loader_kw, device)
        for j, i in enumerate(missing):
            rows[i] = new[j]
    feats = torch.stack(rows).view(len(items), views, -1) if rows else torch.zeros(0, views, 0)
    return feats, len(keys) - len(missing), len(missing)


class CachedFeatureLoader:
    """Stands in for the training loader: batches ``{"feat": [B, D], "label", "index"}`` of
    cached features, in the order of the run's own batch sampler (drawn from the global RNG,
    which the trainer reseeds per epoch), one view per image and epoch from a generator
    seeded by (seed, epoch)."""

    def __init__(self, loader, features, labels, seed):
        self.batch_sampler = loader.batch_sampler
        self.dataset = loader.dataset
        self.features = features                      # [N, K, D]
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def views_of_epoch(self, epoch, passes=1):
        """The view index of every image in each pass over the images in ``epoch``
        (DATALOADER.TRAIN_X.REPEAT): [passes, N]."""
        n, k = self.features.shape[:2]
        g = torch.Generator()
        seed = self.seed if self.seed >= 0 else int(torch.randint(0, 2**31 - 1, (1,)))
        g.manual_seed(epoch_seed(seed, epoch, "train-view"))
        return torch.randint(k, (passes, n), generator=g)

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        view = self.views_of_epoch(self.epoch, getattr(self.batch_sampler, "repeat", 1))
        seen = torch.zeros(view.shape[1], dtype=torch.long)   # the pass each image is in
        for idx in self.batch_sampler:
            idx = torch.as_tensor(idx, dtype=torch.long)
            v = view[seen[idx].clamp(max=view.shape[0] - 1), idx]
            seen[idx] += 1
            yield {"feat": self.features[idx, v], "label": self.labels[idx], "index": idx}


# ---- reporting and clearing (e2mim-cache) ------------------------------------------------------
def _folder_size(path):
    total = 0
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            total += entry.stat(follow_symlinks=False).st_size
    return total


def list_stores(root):
    """[{id, folder, identity, shards, entries, bytes, temp, unreadable}] of the stores under ``root``."""
    if not os.path.isdir(root):
        return []
    stores = []
    for sid in sorted(os.listdir(root)):
        folder = os.path.join(root, sid)
        if not os.path.isdir(folder):
            continue
        try:
            with open(os.path.join(folder, IDENTITY_FILE)) as f:
                identity = json.load(f)
        except (OSError, ValueError):
            identity = {}
        names = os.listdir(folder)
        shards = [n for n in names if is_shard(n)]
        entries, unreadable = 0, 0
        for n in shards:
            try:
                entries += len(torch.load(os.path.join(folder, n), map_location="cpu", weights_only=True)["keys"])
            except Exception:  # noqa: BLE001 - reported, not trusted
                unreadable += 1
        stores.append(dict(id=sid, folder=folder, identity=identity, shards=len(shards), entries=entries,
                           bytes=_folder_size(folder), temp=sum(n.endswith(TEMP_SUFFIX) for n in names),
                           unreadable=unreadable))
    return stores


def folder_bytes(root):
    """Bytes on disk of every store under ``root``."""
    if not os.path.isdir(root):
        return 0
    return sum(_folder_size(os.path.join(root, s)) for s in os.listdir(root) if os.path.isdir(os.path.join(root, s)))
