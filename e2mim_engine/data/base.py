"""Datum, dataset base classes and the split rules of CoOp/Dassl (DESIGN.md §2).

Ordering rules: item order comes from the split file when there is one; otherwise class
folders and images are listed in sorted order so a split is the same on every disk.
Few-shot: per label in order of first appearance, ``random.sample`` K items from an RNG
seeded with cfg.SEED (train first, then val with min(K, 4)) — the same draw CoOp makes
after ``random.seed(SEED)``. The draw is cached as JSON, made before base/new subsampling.
"""
import contextlib
import difflib
import json
import math
import os
import random
from collections import OrderedDict

from ..errors import DataError
from ..registry import Registry
from ..utils import atomic_write, listdir_nohidden, logger, read_json, write_json

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
                         f"DATASET.ROOT: {self.layout or self.dataset_dir}. Source: {self.source or 'see DATASETS.md'}."
                         f"{layout_hint(path)}")

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


# ------------------------------------------------------------------------------------------
# Helpers for the benchmark zoo (datasets/) and custom image folders.
# ------------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# The file that names the ImageNet classes ("nXXXXXXXX class name" per line), shared by the variants.
CLASSNAMES_SOURCE = ("classnames.txt from CoOp's DATASETS.md (ImageNet section; the names come from "
                     "CLIP's Prompt_Engineering_for_ImageNet notebook)")
_WRITES = {"allowed": True}


def is_image_file(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


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


def save_generated_split(train, val, test, filepath, path_prefix):
    """save_split, unless inside no_dataset_writes()."""
    if dataset_writes_allowed():
        save_split(train, val, test, filepath, path_prefix)
    else:
        logger.info(f"Not saving the split to {filepath} (read-only check)")


def list_class_folders(path, ignored=()):
    """Visible sub-folders of ``path`` (symlinks to folders included), sorted case-sensitively."""
    with os.scandir(path) as it:
        names = [e.name for e in it if not e.name.startswith(".") and e.name not in ignored and e.is_dir()]
    names.sort()
    return names


def list_files(path, images_only=False):
    """Visible files of a folder, sorted (``images_only``: by extension, see IMAGE_EXTENSIONS)."""
    with os.scandir(path) as it:
        names = [e.name for e in it if not e.name.startswith(".") and e.is_file()
                 and (not images_only or is_image_file(e.name))]
    names.sort()
    return names


def layout_hint(path):
    """A hint for a missing path: a similarly named entry next to it, or the same name one
    level down (an archive extracted into an extra folder). Empty string if nothing found."""
    parent, name = os.path.split(os.path.normpath(path))
    if not name or not os.path.isdir(parent):
        return ""
    try:
        entries = [e for e in os.listdir(parent) if not e.startswith(".")]
    except OSError:
        return ""
    for e in entries:
        if e != name and e.lower() == name.lower():
            return f" Found '{os.path.join(parent, e)}' instead: names are case-sensitive, rename it to '{name}'."
    for e in sorted(entries)[:50]:
        deeper = os.path.join(parent, e, name)
        if os.path.isdir(os.path.join(parent, e)) and os.path.exists(deeper):
            return (f" Found '{deeper}' one level too deep: move the contents of '{os.path.join(parent, e)}' "
                    f"up into '{parent}' (the archive was extracted into an extra folder).")
    close = difflib.get_close_matches(name, entries, n=1, cutoff=0.6)
    if close:
        return f" Did you mean '{os.path.join(parent, close[0])}'?"
    return ""


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


def read_classnames(text_file):
    """ImageNet's classnames.txt: ``<folder> <class name with spaces>`` per line -> OrderedDict."""
    classnames = OrderedDict()
    with open(text_file) as f:
        for n, line in enumerate(f, 1):
            parts = line.strip().split(" ")
            if not parts[0]:
                continue
            if len(parts) < 2:
                raise DataError(f"{text_file}, line {n}: expected '<folder> <class name>', got {line.strip()!r}.")
            classnames[parts[0]] = " ".join(parts[1:])
    return classnames


def find_classnames_file(dataset_dir, root):
    """``<dataset_dir>/classnames.txt``, else the one in a sibling ``imagenet/`` folder; None if neither."""
    for path in (os.path.join(dataset_dir, "classnames.txt"), os.path.join(root, "imagenet", "classnames.txt")):
        if os.path.isfile(path):
            return path
    return None


# ---- a cached listing of class folders (ImageNet: 1.28 M files) ---------------------------
INDEX_FORMAT = "e2mim-folder-index"
INDEX_VERSION = 1


def _folder_state(split_dir):
    folders = list_class_folders(split_dir)
    return folders, [os.stat(os.path.join(split_dir, f)).st_mtime_ns for f in folders]


def index_class_folders(base_dir, splits, cache_path, progress=True):
    """List ``base_dir/<split>/<class folder>/<files>`` for each split, sorted.

    Returns {split: [(folder, [file names]), ...]}. The listing is cached as JSON in
    ``cache_path`` (file names relative to their class folder, so the cache moves with the
    data) and reused while every split has the same class folders with the same
    modification times: a later run makes one stat per class folder, not one per file.
    Adding or removing files in a class folder changes its mtime and rebuilds the index.
    """
    states = {s: _folder_state(os.path.join(base_dir, s)) for s in splits}
    cached = None
    if os.path.isfile(cache_path):
        try:
            data = read_json(cache_path)
            if data.get("format") == INDEX_FORMAT and data.get("version") == INDEX_VERSION and all(
                    data["splits"][s]["folders"] == states[s][0] and data["splits"][s]["mtime_ns"] == states[s][1]
                    for s in splits):
                cached = {s: list(zip(states[s][0], data["splits"][s]["files"])) for s in splits}
        except (ValueError, KeyError, TypeError, OSError):
            cached = None
        if cached is None:
            logger.info(f"The index {cache_path} is out of date; rebuilding it")
    if cached is not None:
        logger.info(f"Read the image index from {cache_path}")
        return cached
    from tqdm import tqdm
    total = sum(len(states[s][0]) for s in splits)
    out, payload = {}, {"format": INDEX_FORMAT, "version": INDEX_VERSION, "splits": {}}
    with tqdm(total=total, desc=f"Indexing {base_dir} (first run only)", unit="folder",
              disable=not progress) as bar:
        for s in splits:
            split_dir = os.path.join(base_dir, s)
            folders, mtimes = states[s]
            files = []
            for folder in folders:
                files.append(list_files(os.path.join(split_dir, folder)))
                bar.update(1)
            out[s] = list(zip(folders, files))
            payload["splits"][s] = {"folders": folders, "mtime_ns": mtimes, "files": files}
    try:
        atomic_write(cache_path, lambda f: json.dump(payload, f, separators=(",", ":")))
        logger.info(f"Saved the image index to {cache_path}")
    except OSError as e:
        logger.info(f"Could not save the image index to {cache_path} ({e}); it will be rebuilt next time")
    return out


def resolve_data_root(cfg, folder):
    """The absolute DATASET.ROOT, or the error for a missing one (as BenchmarkDataset does)."""
    root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT or ""))
    if not cfg.DATASET.ROOT or not os.path.isdir(root):
        raise DataError(f"The data root '{cfg.DATASET.ROOT}' is not a folder. Pass --root "
                        f"(DATASET.ROOT) pointing to the folder that holds '{folder}/'.")
    return root


class ZooDataset(BenchmarkDataset):
    """A benchmark whose items come from a CoOp split file when there is one, otherwise
    from the dataset's own files (``make_split``), the split then being saved as CoOp does.

    Subclasses set ``split_file``, ``image_subdir`` (the folder split paths are relative to;
    "" = the dataset folder), ``required`` (paths under the dataset folder needed in any case)
    and ``split_sources`` (paths needed only to make the split), and implement ``make_split``.
    """

    split_file = ""
    image_subdir = ""
    required = ()
    split_sources = ()

    def path(self, *parts):
        return os.path.join(self.dataset_dir, *parts)

    def require(self, *relpaths):
        for rel in relpaths:
            p = self.path(rel)
            if not os.path.exists(p):
                raise self.missing(p)

    def load_splits(self, cfg):
        self.image_dir = self.path(self.image_subdir) if self.image_subdir else self.dataset_dir
        self.require(*self.required)
        split_path = self.path(self.split_file) if self.split_file else ""
        if split_path and os.path.exists(split_path):
            logger.info(f"Reading split from {split_path}")
            return read_split(split_path, self.image_dir)
        absent = [self.path(p) for p in self.split_sources if not os.path.exists(self.path(p))]
        if absent:
            if split_path:
                raise DataError(
                    f"{type(self).__name__}: the split file {split_path} is missing, and so is {absent[0]}, "
                    f"which is needed to make it. Put {self.split_file} there (source: {self.source}).")
            raise self.missing(absent[0])
        train, val, test = self.make_split(cfg)
        if split_path:
            save_generated_split(train, val, test, split_path, self.image_dir)
        return train, val, test

    def make_split(self, cfg):
        raise NotImplementedError


class TestOnlyDataset(BenchmarkDataset):
    """An evaluation-only benchmark (the ImageNet variants): as in CoOp, train_x and test are
    the same items, there is no val, and NUM_SHOTS / SUBSAMPLE_CLASSES do not apply."""

    check_files = False

    def __init__(self, cfg):
        self.root = resolve_data_root(cfg, self.dataset_dir)
        self.dataset_dir = os.path.join(self.root, self.dataset_dir)
        if not os.path.isdir(self.dataset_dir):
            raise self.missing(self.dataset_dir)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        data = self.load_data(cfg)
        if not data:
            raise DataError(f"{type(self).__name__}: no images found under {self.dataset_dir}. "
                            f"Expected layout: {self.layout}. Source: {self.source}.")
        if cfg.DATASET.NUM_SHOTS >= 1 or str(cfg.DATASET.SUBSAMPLE_CLASSES).lower() != "all":
            logger.info(f"{type(self).__name__} is test-only: DATASET.NUM_SHOTS and DATASET.SUBSAMPLE_CLASSES "
                        f"are ignored (all items, all classes), as in CoOp")
        DatasetBase.__init__(self, train_x=data, val=None, test=data)

    def load_splits(self, cfg):
        data = self.load_data(cfg)
        return data, [], data

    def load_data(self, cfg):
        raise NotImplementedError

    def classnames_map(self):
        path = find_classnames_file(self.dataset_dir, self.root)
        if path is None:
            raise DataError(
                f"{type(self).__name__}: expected {os.path.join(self.dataset_dir, 'classnames.txt')} (or "
                f"{os.path.join(self.root, 'imagenet', 'classnames.txt')}) but neither exists. Copy ImageNet's "
                f"classnames.txt next to the images; source: {CLASSNAMES_SOURCE}.")
        return read_classnames(path)

    def read_wnid_folders(self, image_dir, ignored=("README.txt",)):
        """Sorted wnid folders, label = position, class name from classnames.txt (CoOp's rule)."""
        if not os.path.isdir(image_dir):
            raise self.missing(image_dir)
        classnames = self.classnames_map()
        folders = list_class_folders(image_dir, ignored=ignored)
        unknown = [f for f in folders if f not in classnames]
        if unknown:
            raise DataError(f"{type(self).__name__}: the folder {os.path.join(image_dir, unknown[0])} is not a "
                            f"class in classnames.txt ({len(unknown)} such folder(s)). Remove stray folders or "
                            f"use ImageNet's classnames.txt ({CLASSNAMES_SOURCE}).")
        items = []
        for label, folder in enumerate(folders):
            d = os.path.join(image_dir, folder)
            names = list_files(d)
            if not names:
                raise DataError(f"{type(self).__name__}: the class folder {d} has no images. The archive may be "
                                f"half-extracted: extract it again (source: {self.source}).")
            prefix = d + os.sep
            items += [Datum(prefix + n, label, classname=classnames[folder]) for n in names]
        return items
