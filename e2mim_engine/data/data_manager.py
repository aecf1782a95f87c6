"""DataManager: dataset, transforms and loaders (Dassl's interface)."""
import torch
from tabulate import tabulate
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from ..errors import ConfigError, DataError
from ..utils import logger
from .bases import build_dataset
from .images import read_image  # noqa: F401  (the loaders' decoder, also imported from here)
from .transforms import build_transform


class DatasetWrapper(Dataset):
    """Items as Dassl gives them. ``views`` > 1 (DATALOADER.K_TRANSFORMS, training only): "img"
    is a list of that many independent draws of the transform of the same image, in order, so
    a batch's "img" is a list of ``views`` image batches."""

    def __init__(self, data_source, transform, views=1):
        self.data_source = data_source
        self.transform = transform
        self.views = views

    def __len__(self):
        return len(self.data_source)

    def __getitem__(self, idx):
        item = self.data_source[idx]
        img = read_image(item.impath)
        img = self.transform(img) if self.views == 1 else [self.transform(img) for _ in range(self.views)]
        return {"img": img, "label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}


SAMPLERS = ("RandomSampler", "SequentialSampler")


class RepeatedBatchSampler:
    """``repeat`` passes of a batch sampler per epoch. A sampler seeded per epoch (set_epoch,
    e.g. the class-wise Mixup sampler) gets its own epoch number for each pass,
    epoch * repeat + pass, so no two passes repeat each other's batches."""

    def __init__(self, inner, repeat):
        self.inner, self.repeat, self.epoch = inner, repeat, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.repeat * len(self.inner)

    def __iter__(self):
        for p in range(self.repeat):
            if hasattr(self.inner, "set_epoch"):
                self.inner.set_epoch(self.epoch * self.repeat + p)
            yield from self.inner


def build_data_loader(data_source, transform, batch_size, sampler="SequentialSampler", is_train=False,
                      num_workers=0, batch_sampler=None, pin_memory=False, repeat=1, views=1):
    """``repeat`` (training): passes over ``data_source`` per epoch, see RepeatedBatchSampler;
    ``views``: augmented views per image (DatasetWrapper)."""
    ds = DatasetWrapper(data_source, transform, views)
    common = dict(num_workers=num_workers, pin_memory=pin_memory)
    if batch_sampler is None:
        if sampler not in SAMPLERS:
            raise ConfigError(f"Unknown sampler '{sampler}'; valid: {', '.join(SAMPLERS)}.")
        smp = RandomSampler(ds) if sampler == "RandomSampler" else SequentialSampler(ds)
        # Dassl drops the last partial batch in training only when there is a full one.
        drop_last = is_train and len(data_source) >= batch_size
        if repeat == 1:
            return DataLoader(ds, batch_size=batch_size, sampler=smp, drop_last=drop_last, **common)
        batch_sampler = BatchSampler(smp, batch_size, drop_last)
    if repeat != 1:
        batch_sampler = RepeatedBatchSampler(batch_sampler, repeat)
    return DataLoader(ds, batch_sampler=batch_sampler, **common)


def check_class_count(dataset, cfg):
    """A run over fewer than two classes would report 100% accuracy by construction: refused."""
    if dataset.num_classes >= 2:
        return
    sub = str(cfg.DATASET.SUBSAMPLE_CLASSES).lower()
    which = f"the '{sub}' half of " if sub != "all" else ""
    raise DataError(f"{which}{cfg.DATASET.NAME} has {dataset.num_classes} class ({', '.join(dataset.classnames)}): "
                    f"an accuracy over fewer than two classes is 100% by construction, so no run is made. Use a "
                    f"dataset with at least two classes" + (" in each half (base-to-new needs at least four)."
                                                             if which else "."))


class DataManager:
    def __init__(self, cfg, dataset=None, tfm_train=None, tfm_test=None, train_batch_sampler=None,
                 pin_memory=False):
        self.dataset = dataset if dataset is not None else build_dataset(cfg)
        check_class_count(self.dataset, cfg)
        self.tfm_train = tfm_train or build_transform(cfg, is_train=True)
        self.tfm_test = tfm_test or build_transform(cfg, is_train=False)
        nw = cfg.DATALOADER.NUM_WORKERS
        d = self.dataset
        repeat = cfg.DATALOADER.TRAIN_X.get("REPEAT", 1)
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise ConfigError(f"DATALOADER.TRAIN_X.REPEAT must be an integer >= 1 (passes over the training "
                              f"set per epoch; 1 = one pass, as Dassl); got {repeat!r}.")
        self.train_loader_x = build_data_loader(
            d.train_x, self.tfm_train, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.DATALOADER.TRAIN_X.SAMPLER,
            is_train=True, num_workers=nw, pin_memory=pin_memory, repeat=repeat,
            views=cfg.DATALOADER.K_TRANSFORMS,
            batch_sampler=train_batch_sampler(d.train_x) if train_batch_sampler else None)
        self.val_loader = None
        if d.val:
            self.val_loader = build_data_loader(d.val, self.tfm_test, cfg.DATALOADER.TEST.BATCH_SIZE,
                                                cfg.DATALOADER.TEST.SAMPLER, num_workers=nw, pin_memory=pin_memory)
        self.test_loader = build_data_loader(d.test, self.tfm_test, cfg.DATALOADER.TEST.BATCH_SIZE,
                                             cfg.DATALOADER.TEST.SAMPLER, num_workers=nw, pin_memory=pin_memory)
        self.num_classes = d.num_classes
        self.lab2cname = d.lab2cname
        self.classnames = d.classnames
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    def show_dataset_summary(self, cfg):
        d = self.dataset
        table = [["Dataset", cfg.DATASET.NAME], ["# classes", f"{self.num_classes:,}"],
                 ["# train_x", f"{len(d.train_x):,}"]]
        if d.val:
            table.append(["# val", f"{len(d.val):,}"])
        table.append(["# test", f"{len(d.test):,}"])
        logger.info(tabulate(table))


