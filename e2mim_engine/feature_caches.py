"""The feature caches of one run (stores and loaders in e2mim_engine.data.feature_cache).

A ``FeatureCaches`` serves a method's frozen image function (``encode``, with the
``identity`` that decides its output) for evaluation loaders and, with training views,
replaces the training loader by one over cached features. It counts what it served and
what it encoded (``stats``) and keeps evaluation features in memory for the run.
"""
import torch

from .data.feature_cache import CachedFeatureLoader, FeatureStore, cache_root, cached_features, cached_views, image_key
from .utils import logger


class FeatureCaches:
    def __init__(self, folder, encode, identity, device, seed, num_workers=0, pin_memory=False):
        """``folder``: DATALOADER.FEATURE_CACHE.DIR ("" = the default root); ``encode``: images
        [B, 3, H, W] -> features [B, D] without autograd; ``identity``: a callable returning
        the dict of plain values that, with the transform, keys the store (called when a
        store is first needed, after the model is built)."""
        self.folder, self.encode, self.identity, self.device, self.seed = folder, encode, identity, device, seed
        self.loader_kw = dict(num_workers=num_workers, pin_memory=pin_memory)
        self._stores, self._eval = {}, {}
        # Images served from / encoded into the caches (all splits).
        self.stats = {"eval_hits": 0, "eval_encoded": 0, "train_hits": 0, "train_encoded": 0}

    def store(self, transform, views=False):
        """The store of this run's frozen function and ``transform`` (seeded training views
        with ``views``), one object per run."""
        identity = dict(self.identity(), transform=repr(transform))
        if views:
            identity["views"] = "seeded per image content and view (e2mim_engine.data.feature_cache.view_seed)"
        store = FeatureStore(cache_root(self.folder), identity)
        return self._stores.setdefault(store.id, store)

    def eval_features(self, loader, batch_size):
        """(features [N, D], labels [N]) of an evaluation loader's images, from the store where
        it has them. Kept in memory too: later calls of the run (best_val evaluates every
        epoch) re-check each image's size and time, and read nothing."""
        ds = loader.dataset
        keys = [image_key(d.impath) for d in ds.data_source]
        memo = self._eval.get(id(loader))
        if memo is not None and memo[0] == keys:
            self.stats["eval_hits"] += len(keys)
            return memo[1], memo[2]
        store = self.store(ds.transform)
        feats, hits, encoded = cached_features(store, ds.data_source, ds.transform, self.encode, self.device,
                                               batch_size, keys=keys, **self.loader_kw)
        self.stats["eval_hits"] += hits
        self.stats["eval_encoded"] += encoded
        labels = torch.as_tensor([d.label for d in ds.data_source], dtype=torch.long)
        logger.info(f"Feature cache: {hits} of {len(keys)} images from {store.folder}, {encoded} encoded"
                    + ("" if store.writable else " (not stored: the folder is not writable)"))
        self._eval[id(loader)] = (keys, feats, labels)
        return feats, labels

    def train_loader(self, loader, views, batch_size):
        """A loader over ``views`` cached augmented views per training image of ``loader``
        (one view per image and epoch), encoding the views the store lacks."""
        ds = loader.dataset
        store = self.store(ds.transform, views=True)
        feats, hits, encoded = cached_views(store, ds.data_source, ds.transform, self.encode, views, self.device,
                                            batch_size, **self.loader_kw)
        self.stats["train_hits"] += hits
        self.stats["train_encoded"] += encoded
        logger.info(f"Training on cached features: {views} augmented views of each of the {len(ds.data_source)} "
                    f"training images ({hits} from {store.folder}, {encoded} encoded); one view per image and "
                    f"epoch (DATALOADER.FEATURE_CACHE.TRAIN_VIEWS)")
        return CachedFeatureLoader(loader, feats, [d.label for d in ds.data_source], self.seed)
