"""CoOp's split files and split rules (Dassl's read_split / save_split / read_and_split_data,
CoOp's OxfordPets.split_trainval), the few-shot draw and base/new subsampling.

Ordering rules: item order comes from the split file when there is one; otherwise class
folders and images are listed in sorted order so a split is the same on every disk.
Few-shot: per label in order of first appearance, ``random.sample`` K items from an RNG
seeded with cfg.SEED (train first, then val with min(K, 4)) — the same draw CoOp makes
after ``random.seed(SEED)``. The draw is cached as JSON, made before base/new subsampling.
"""
import contextlib
import math
import os
import random
from collections import OrderedDict

from ..errors import DataError, StorageError
from ..utils import listdir_nohidden, logger, read_json, write_json
from .datum import Datum

_WRITES = {"allowed": True}


# ---- split files ----------------------------------------------------------------------------
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


def split_entries(items, path_prefix):
    """Items as split-file rows ``[path relative to path_prefix with "/", label, classname]``."""
    out = []
    for item in items:
        rel = os.path.relpath(item.impath, path_prefix)
        out.append([rel.replace(os.sep, "/"), item.label, item.classname])
    return out


def save_split(train, val, test, filepath, path_prefix):
    write_json({"train": split_entries(train, path_prefix), "val": split_entries(val, path_prefix),
                "test": split_entries(test, path_prefix)}, filepath)
    logger.info(f"Saved split to {filepath}")


def dataset_writes_allowed():
    """False inside ``no_dataset_writes()`` (the layout checker never writes split files)."""
    return _WRITES["allowed"]


@contextlib.contextmanager
def no_dataset_writes():
    """Load datasets without writing split or few-shot files (caches of listings may still be written)."""
    old = _WRITES["allowed"]
    _WRITES["allowed"] = False
    try:
        yield
    finally:
        _WRITES["allowed"] = old


def save_dataset_file(path, write, what):
    """Run ``write()`` (which writes ``path`` into a dataset folder). A dataset folder that
    cannot be written (read-only, shared, full) does not stop the run: the file is kept in
    memory for this run and one log line says so. Returns whether it was written."""
    try:
        write()
        return True
    except StorageError as e:
        logger.info(f"Note: the {what} is kept in memory for this run, not saved ({e})")
        return False


def save_generated_split(train, val, test, filepath, path_prefix):
    """save_split, unless inside no_dataset_writes() or the folder is not writable."""
    if dataset_writes_allowed():
        save_dataset_file(filepath, lambda: save_split(train, val, test, filepath, path_prefix), "split")
    else:
        logger.info(f"Not saving the split to {filepath} (read-only check)")


# ---- split rules ----------------------------------------------------------------------------
def read_and_split_data(image_dir, p_trn=0.5, p_val=0.2, ignored=(), new_cnames=None, rng=None):
    """CoOp's split of a folder-per-class tree: per class shuffle, then round(n*p) items
    to train and val and the rest to test. Classes and images are listed sorted."""
    categories = [c for c in listdir_nohidden(image_dir) if c not in ignored]
    logger.info(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")
    groups = []
    for label, category in enumerate(categories):
        folder = os.path.join(image_dir, category)
        images = [os.path.join(folder, im) for im in listdir_nohidden(folder)]
        if not images:
            raise DataError(f"Class folder {folder} has no images (a half-extracted archive?). Re-extract "
                            f"the dataset or remove the empty folder.")
        groups.append((label, (new_cnames or {}).get(category, category), images))
    return split_per_class(groups, p_trn, p_val, rng=rng)


def split_per_class(groups, p_trn=0.5, p_val=0.2, rng=None):
    """read_and_split_data's rule on ready-made groups: ``groups`` is a list of
    (label, classname, [impaths]); each list is shuffled and cut round(n*p_trn) / round(n*p_val) / rest."""
    rng = rng or random.Random(1)
    train, val, test = [], [], []
    for label, name, images in groups:
        images = list(images)
        rng.shuffle(images)
        n = len(images)
        n_train, n_val = round(n * p_trn), round(n * p_val)
        if n_train <= 0 or n_val <= 0 or n - n_train - n_val <= 0:
            where = f" ({os.path.dirname(images[0])})" if images else ""
            raise DataError(f"Class '{name}'{where} has {n} image(s): too few to split {p_trn:.0%}/{p_val:.0%}/"
                            f"{1 - p_trn - p_val:.0%} into train/val/test (at least one each). Add images "
                            f"or remove the class folder.")
        train += [Datum(im, label, classname=name) for im in images[:n_train]]
        val += [Datum(im, label, classname=name) for im in images[n_train:n_train + n_val]]
        test += [Datum(im, label, classname=name) for im in images[n_train + n_val:]]
    return train, val, test


def split_trainval(trainval, p_val=0.2, rng=None):
    """CoOp's OxfordPets.split_trainval: per label (in order of first appearance) shuffle the
    items and put the first round(n * p_val) in val, the rest in train."""
    rng = rng or random.Random(1)
    tracker = OrderedDict()
    for idx, item in enumerate(trainval):
        tracker.setdefault(item.label, []).append(idx)
    logger.info(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val <= 0:
            raise DataError(f"Class '{trainval[idxs[0]].classname}' (label {label}) has {len(idxs)} training "
                            f"item(s): too few to hold out {p_val:.0%} for validation.")
        rng.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def split_dataset_by_label(data_source):
    """{label: [items]} with labels in order of first appearance (Dassl's rule)."""
    out = OrderedDict()
    for item in data_source:
        out.setdefault(item.label, []).append(item)
    return out


# ---- few-shot and base/new ------------------------------------------------------------------
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
        for items in split_dataset_by_label(source).values():
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
