"""Datum, dataset base classes and the split rules of CoOp/Dassl (DESIGN.md §2).

Ordering rules: item order comes from the split file when there is one; otherwise class
folders and images are listed in sorted order so a split is the same on every disk.
Few-shot: per label in order of first appearance, ``random.sample`` K items from an RNG
seeded with cfg.SEED (train first, then val with min(K, 4)) — the same draw CoOp makes
after ``random.seed(SEED)``. The draw is cached as JSON, made before base/new subsampling.
"""
import math
import os
import random
from collections import OrderedDict

from ..errors import DataError
from ..registry import Registry
from ..utils import listdir_nohidden, logger, read_json, write_json

DATASET_REGISTRY = Registry("dataset")


def build_dataset(cfg):
    if not cfg.DATASET.NAME:
        raise DataError("DATASET.NAME is empty: pass --dataset-config-file configs/datasets/<name>.yaml "
                        f"or DATASET.NAME <name>. Valid names: {', '.join(DATASET_REGISTRY.names())}.")
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


class Datum:
    """One image: path, label, domain, class name (Dassl's Datum, without its per-item file check)."""

    __slots__ = ("_impath", "_label", "_domain", "_classname")

    def __init__(self, impath="", label=0, domain=0, classname=""):
        self._impath, self._label, self._domain, self._classname = impath, int(label), int(domain), classname

    impath = property(lambda self: self._impath)
    label = property(lambda self: self._label)
    domain = property(lambda self: self._domain)
    classname = property(lambda self: self._classname)

    def __repr__(self):
        return f"Datum({self._impath!r}, {self._label}, {self._classname!r})"

    def __eq__(self, other):
        return isinstance(other, Datum) and (self.impath, self.label, self.domain, self.classname) == (
            other.impath, other.label, other.domain, other.classname)


class DatasetBase:
    """Dassl's container: train_x / train_u / val / test lists of Datum."""

    dataset_dir = ""
    domains = []

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x, self._train_u, self._val, self._test = train_x, train_u, val, test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    train_x = property(lambda self: self._train_x)
    train_u = property(lambda self: self._train_u)
    val = property(lambda self: self._val)
    test = property(lambda self: self._test)
    lab2cname = property(lambda self: self._lab2cname)
    classnames = property(lambda self: self._classnames)
    num_classes = property(lambda self: self._num_classes)

    @staticmethod
    def get_num_classes(data_source):
        # Dassl: max label + 1 of the training items.
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source):
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping)
        return mapping, [mapping[y] for y in labels]

    @staticmethod
    def split_dataset_by_label(data_source):
        out = OrderedDict()
        for item in data_source:
            out.setdefault(item.label, []).append(item)
        return out


def read_split(filepath, path_prefix):
    """Read a CoOp split JSON ``{"train": [[rel_path, label, classname], ...], "val": ..., "test": ...}``."""
    try:
        split = read_json(filepath)
    except ValueError as e:
        raise DataError(f"The split file {filepath} is not valid JSON ({e}). Delete it to have it "
                        f"regenerated, or download the original from CoOp's DATASETS.md.") from None

    def convert(items):
        return [Datum(impath=os.path.join(path_prefix, p), label=int(y), classname=c) for p, y, c in items]

    try:
        return convert(split["train"]), convert(split["val"]), convert(split["test"])
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"The split file {filepath} does not have CoOp's format "
                        f'{{"train": [[path, label, classname], ...], "val": ..., "test": ...}} ({e!r}).') from None


def _relative(items, path_prefix):
    out = []
    for item in items:
        rel = os.path.relpath(item.impath, path_prefix)
        out.append([rel.replace(os.sep, "/"), item.label, item.classname])
    return out


def save_split(train, val, test, filepath, path_prefix):
    write_json({"train": _relative(train, path_prefix), "val": _relative(val, path_prefix),
                "test": _relative(test, path_prefix)}, filepath)
    logger.info(f"Saved split to {filepath}")


def read_and_split_data(image_dir, p_trn=0.5, p_val=0.2, ignored=(), new_cnames=None, rng=None):
    """CoOp's split of a folder-per-class tree: per class shuffle, then round(n*p) items
    to train and val and the rest to test. Classes and images are listed sorted."""
    rng = rng or random.Random(1)
    categories = [c for c in listdir_nohidden(image_dir) if c not in ignored]
    p_tst = 1 - p_trn - p_val
    logger.info(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {p_tst:.0%} test")
    train, val, test = [], [], []
    for label, category in enumerate(categories):
        category_dir = os.path.join(image_dir, category)
        images = [os.path.join(category_dir, im) for im in listdir_nohidden(category_dir)]
        rng.shuffle(images)
        n_total = len(images)
        n_train, n_val = round(n_total * p_trn), round(n_total * p_val)
        n_test = n_total - n_train - n_val
        if n_train <= 0 or n_val <= 0 or n_test <= 0:
            raise DataError(f"Class folder {category_dir} has {n_total} image(s): too few to split "
                            f"{p_trn:.0%}/{p_val:.0%}/{p_tst:.0%} into train/val/test (at least one each). "
                            f"Add images or remove the folder.")
        name = (new_cnames or {}).get(category, category)
        train += [Datum(im, label, classname=name) for im in images[:n_train]]
        val += [Datum(im, label, classname=name) for im in images[n_train:n_train + n_val]]
        test += [Datum(im, label, classname=name) for im in images[n_train + n_val:]]
    return train, val, test


def generate_fewshot_dataset(*data_sources, num_shots=-1, rng=None, repeat=False):
    """K items per label (all if fewer), labels in order of first appearance, drawn with
    ``rng.sample`` — the same calls Dassl makes on the global ``random`` module."""
    if num_shots < 1:
        return data_sources[0] if len(data_sources) == 1 else data_sources
    rng = rng or random
    logger.info(f"Creating a {num_shots}-shot dataset")
    output = []
    for source in data_sources:
        dataset = []
        for items in DatasetBase.split_dataset_by_label(source).values():
            if len(items) >= num_shots:
                dataset.extend(rng.sample(items, num_shots))
            else:
                dataset.extend(rng.choices(items, k=num_shots) if repeat else items)
        output.append(dataset)
    return output[0] if len(output) == 1 else output


def subsample_classes(*args, subsample="all"):
    """Base/new: sort the training labels, the first ceil(n/2) are base, the rest new;
    every split is filtered and relabelled from 0."""
    subsample = subsample.lower()
    if subsample not in ("all", "base", "new"):
        raise DataError(f"DATASET.SUBSAMPLE_CLASSES must be all, base or new; got '{subsample}'.")
    if subsample == "all":
        return args
    labels = sorted({item.label for item in args[0]})
    m = math.ceil(len(labels) / 2)
    logger.info(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabel = {y: i for i, y in enumerate(selected)}
    return tuple(
        [Datum(item.impath, relabel[item.label], item.domain, item.classname)
         for item in data if item.label in relabel]
        for data in args
    )


class BenchmarkDataset(DatasetBase):
    """Template for the benchmark datasets: a subclass names its folder and fills in
    ``load_splits``; this class checks the folder, applies the few-shot draw (cached as
    JSON under <dataset dir>/split_fewshot/) and base/new subsampling.
    """

    dataset_dir = ""      # folder under DATASET.ROOT
    template = "a photo of a {}."   # CoOp's hand-crafted zero-shot template
    layout = ""           # expected files, shown when something is missing
    source = ""           # where the data comes from
    check_files = True    # check that every listed image exists (cheap except for ImageNet)
    generated = False     # True for datasets that write their own files on first use

    def __init__(self, cfg):
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT or ""))
        if cfg.DATASET.ROOT and self.generated:
            os.makedirs(root, exist_ok=True)
        if not cfg.DATASET.ROOT or not os.path.isdir(root):
            raise DataError(f"The data root '{cfg.DATASET.ROOT}' is not a folder. Pass --root "
                            f"(DATASET.ROOT) pointing to the folder that holds '{self.dataset_dir}/'.")
        self.root = root
        self.dataset_dir = os.path.join(root, self.dataset_dir)
        self.prepare(cfg)
        if not os.path.isdir(self.dataset_dir):
            raise self.missing(self.dataset_dir)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        train, val, test = self.load_splits(cfg)
        if self.check_files:
            self.check_exists(train, val, test)
        train, val = self.few_shot(cfg, train, val)
        train, val, test = subsample_classes(train, val, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=train, val=val, test=test)

    def prepare(self, cfg):
        """Hook for datasets that build their own files (the generated demo)."""

    def load_splits(self, cfg):
        raise NotImplementedError

    def missing(self, path):
        """The error for an expected file or folder that is not there."""
        return DataError(f"{type(self).__name__}: expected {path} but it does not exist. Expected layout under "
                         f"DATASET.ROOT: {self.layout or self.dataset_dir}. Source: {self.source or 'see DATASETS.md'}.")

    def check_exists(self, *splits):
        missing = [d.impath for s in splits for d in s if not os.path.isfile(d.impath)]
        if missing:
            raise DataError(f"{type(self).__name__}: {len(missing)} image(s) listed in the split are missing, "
                            f"e.g. {missing[0]}. The archive may be half-extracted or the split file may "
                            f"belong to another version of the data; re-extract it under {self.dataset_dir}.")

    def few_shot(self, cfg, train, val):
        k = cfg.DATASET.NUM_SHOTS
        if k < 1:
            return train, val
        seed = cfg.SEED
        if seed < 0:
            logger.info("SEED < 0: the few-shot draw is random and not cached")
            rng = random.Random()
            return generate_fewshot_dataset(train, num_shots=k, rng=rng), \
                generate_fewshot_dataset(val, num_shots=min(k, 4), rng=rng)
        path = os.path.join(self.split_fewshot_dir, f"shot_{k}-seed_{seed}.json")
        if os.path.exists(path):
            logger.info(f"Loading preprocessed few-shot data from {path}")
            try:
                data = read_json(path)
                by_path = {d.impath: d for d in train + val}
                prefix = self.image_prefix()
                return ([by_path[os.path.join(prefix, p)] for p, _, _ in data["train"]],
                        [by_path[os.path.join(prefix, p)] for p, _, _ in data["val"]])
            except (ValueError, KeyError, TypeError):
                logger.info(f"The few-shot cache {path} does not match the split; drawing again")
        # CoOp's cache of the same draw is a pickle of Dassl objects: never unpickled here.
        rng = random.Random(seed)
        train = generate_fewshot_dataset(train, num_shots=k, rng=rng)
        val = generate_fewshot_dataset(val, num_shots=min(k, 4), rng=rng)
        prefix = self.image_prefix()
        write_json({"train": _relative(train, prefix), "val": _relative(val, prefix)}, path)
        logger.info(f"Saving preprocessed few-shot data to {path}")
        return train, val

    def image_prefix(self):
        """Folder the few-shot cache stores paths relative to (portable across machines)."""
        return getattr(self, "image_dir", self.dataset_dir)
